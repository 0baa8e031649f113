// plot.h — PNG pictures with stb_image_write: line charts, heatmaps, bars, with a small built-in
// font for titles, axes, ticks and legends. Shared by train.c (loss curves), prune.c (survivor maps)
// and profile.c (heatmaps). Everything is drawn into an RGB Image and written atomically.
//
//   Image image_new(int w, int h);                         white canvas, 3 bytes (R,G,B) per pixel
//   void  image_free(Image *im);
//   void  image_save_png(const Image *im, const char *path);   to "<path>.tmp.<pid>", then renamed
//   void  draw_text(Image *im, int x, int y, const char *s, unsigned rgb, int scale);   5x7 font, top-left at x,y
//   void  plot_lines(path, title, xlabel, ylabel, const Series *s, int ns);
//   void  plot_heatmap(path, title, xlabel, ylabel, v[rows*cols], rows, cols, vmin, vmax, row_labels, row_full);
//   void  plot_bars(path, title, ylabel, v[n], n, labels, highlight);
// The *_ex variants take an options struct (zero it, then set what you need): column labels, colour-bar
// label, legend texts, a note under the title, marker lines, shaded columns, log y, integer x.
// Colours are 0xRRGGBB. NaN values are drawn as "no data" (grey in heatmaps, gaps in lines, no bar).
// Canvas sizes: line charts 900x560; bar charts (80 + max(780, n*bar) + 30) x 514 (528 with a note),
// bars 3..60 px wide; heatmaps grow with rows x cols (cells 2..56 px wide, 4..28 px high) plus margins.
// Heatmap vmin >= vmax means "the data's range". row_full marks each row full attention (red) or sliding
// window (grey) in a strip beside the row labels, with a legend under the title.
#pragma once
#include "util.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

// ------------------------------------------------------------------------------------------------
// canvas

typedef struct {
    int w, h;
    unsigned char *px;  // [h, w, 3] row-major, top row first
} Image;

static Image image_new(int w, int h) {
    if (w < 1 || h < 1 || w > 16384 || h > 16384) fail("image_new: size %dx%d is out of range [1, 16384]", w, h);
    Image im = {w, h, (unsigned char *)mallocCheck((size_t)w * h * 3)};
    memset(im.px, 255, (size_t)w * h * 3);
    return im;
}

static void image_free(Image *im) {
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

typedef struct {
    unsigned char *p;
    size_t n, cap;
} PngBuf;

static void png_buf_write(void *ctx, void *data, int size) {
    PngBuf *b = (PngBuf *)ctx;
    if (b->n + (size_t)size > b->cap) {
        b->cap = 2 * (b->n + (size_t)size);
        b->p = (unsigned char *)realloc(b->p, b->cap);
        if (!b->p) fail("out of memory encoding a PNG");
    }
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

// encode in memory, then one atomic write: a crash never leaves half a PNG under the final name
static void image_save_png(const Image *im, const char *path) {
    PngBuf b = {NULL, 0, 0};
    if (!stbi_write_png_to_func(png_buf_write, &b, im->w, im->h, 3, im->px, im->w * 3))
        fail("%s: PNG encoding failed (%dx%d)", path, im->w, im->h);
    AtomicFile f = atomic_open(path);
    atomic_write(&f, b.p, b.n);
    atomic_commit(&f);
    free(b.p);
}

static inline void put_px(Image *im, int x, int y, unsigned rgb) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    unsigned char *p = im->px + ((size_t)y * im->w + x) * 3;
    p[0] = (unsigned char)(rgb >> 16), p[1] = (unsigned char)(rgb >> 8), p[2] = (unsigned char)rgb;
}

static void fill_rect(Image *im, int x, int y, int w, int h, unsigned rgb) {
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) put_px(im, i, j, rgb);
}

static void draw_rect(Image *im, int x, int y, int w, int h, unsigned rgb) {  // 1-pixel outline
    fill_rect(im, x, y, w, 1, rgb);
    fill_rect(im, x, y + h - 1, w, 1, rgb);
    fill_rect(im, x, y, 1, h, rgb);
    fill_rect(im, x + w - 1, y, 1, h, rgb);
}

// Bresenham, `thick` pixels wide (a square brush)
static void draw_line(Image *im, int x0, int y0, int x1, int y1, unsigned rgb, int thick) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1, err = dx + dy;
    int lo = -(thick - 1) / 2;
    for (;;) {
        fill_rect(im, x0 + lo, y0 + lo, thick, thick, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

// ------------------------------------------------------------------------------------------------
// font: the classic 5x7 LCD glyphs for ASCII 32..126, one byte per column, bit 0 = top row.
// A glyph cell is 6x8 (one column and one row of spacing).

static const unsigned char font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},  //   ! "
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},  // # $ %
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},  // & ' (
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x14, 0x08, 0x3E, 0x08, 0x14}, {0x08, 0x08, 0x3E, 0x08, 0x08},  // ) * +
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},  // , - .
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},  // / 0 1
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},  // 2 3 4
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},  // 5 6 7
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},  // 8 9 :
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},  // ; < =
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},  // > ? @
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},  // A B C
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},  // D E F
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},  // G H I
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},  // J K L
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},  // M N O
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},  // P Q R
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},  // S T U
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},  // V W X
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},  // Y Z [
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},  // \ ] ^
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},  // _ ` a
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},  // b c d
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x0C, 0x52, 0x52, 0x52, 0x3E},  // e f g
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x44, 0x3D, 0x00},  // h i j
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},  // k l m
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0x7C, 0x14, 0x14, 0x14, 0x08},  // n o p
    {0x08, 0x14, 0x14, 0x18, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},  // q r s
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},  // t u v
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C},  // w x y
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},  // z { |
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08},                                  // } ~
};

static int text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (6 * n - 1) * scale : 0;
}
static int text_height(int scale) { return 7 * scale; }

// dir 0: left to right with the glyph top at y; dir 1: bottom to top (rotated 90° counter-clockwise),
// the text starting at (x, y) = its bottom-left corner and the glyph tops facing left
static void draw_text_dir(Image *im, int x, int y, const char *s, unsigned rgb, int scale, int dir) {
    if (scale < 1) scale = 1;
    for (int k = 0; s[k]; k++) {
        int ch = (unsigned char)s[k];
        const unsigned char *g = font5x7[(ch < 32 || ch > 126) ? '?' - 32 : ch - 32];
        for (int col = 0; col < 5; col++)
            for (int row = 0; row < 7; row++) {
                if (!(g[col] >> row & 1)) continue;
                int u = k * 6 + col;  // along the text
                if (dir == 0) fill_rect(im, x + u * scale, y + row * scale, scale, scale, rgb);
                else fill_rect(im, x + row * scale, y - (u + 1) * scale, scale, scale, rgb);
            }
    }
}

static void draw_text(Image *im, int x, int y, const char *s, unsigned rgb, int scale) {
    draw_text_dir(im, x, y, s, rgb, scale, 0);
}
static void draw_text_up(Image *im, int x, int y, const char *s, unsigned rgb, int scale) {
    draw_text_dir(im, x, y, s, rgb, scale, 1);
}
static void draw_text_centered(Image *im, int cx, int y, const char *s, unsigned rgb, int scale) {
    draw_text(im, cx - text_width(s, scale) / 2, y, s, rgb, scale);
}

// ------------------------------------------------------------------------------------------------
// colours: viridis (perceptually uniform, readable in greyscale and by most colour-blind readers),
// matplotlib's table sampled at 11 points and interpolated linearly; and a categorical palette
// (matplotlib's tab10) for series.

static unsigned colormap_viridis(double t) {
    static const unsigned char v[11][3] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
                                           {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
                                           {122, 209, 81}, {189, 223, 38}, {253, 231, 37}};
    if (!(t > 0)) t = 0;  // NaN too
    if (t > 1) t = 1;
    double f = t * 10;
    int i = (int)f;
    if (i > 9) i = 9;
    f -= i;
    unsigned rgb = 0;
    for (int c = 0; c < 3; c++) rgb = rgb << 8 | (unsigned)(v[i][c] + f * (v[i + 1][c] - v[i][c]) + 0.5);
    return rgb;
}

static const unsigned plot_palette[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                          0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
enum { COL_TEXT = 0x222222, COL_AXIS = 0x444444, COL_GRID = 0xe6e6e6, COL_NODATA = 0xd0d0d0,
       COL_BAR = 0x4c78a8, COL_FULL = 0xe45756, COL_SLIDING = 0xbab0ac, COL_BAND = 0xfbe4e4, COL_BAND_KEY = 0xf4b6b6 };

// ------------------------------------------------------------------------------------------------
// axes: "nice" ticks (1, 2, 5 x 10^k) and tick labels with as many decimals as the step needs

static double nice_step(double range, int target) {
    if (!(range > 0)) return 1;
    double raw = range / (target > 0 ? target : 5), p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(char *buf, size_t cap, double v, double step) {
    double a = fabs(v);
    if (fabs(v) < step * 1e-9) v = 0, a = 0;
    if (a >= 1e6 || (a > 0 && a < 1e-3 && step < 1e-3)) snprintf(buf, cap, "%.2g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (dec > 6) dec = 6;
        snprintf(buf, cap, "%.*f", dec, v);
    }
}

// the data range [lo, hi] of n values, NaN skipped; a flat or empty range gets padded
static void data_range(const double *v, int n, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (v[i] == v[i]) *lo = fmin(*lo, v[i]), *hi = fmax(*hi, v[i]);
    if (*lo > *hi) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12 * fmax(1, fabs(*hi))) {
        double pad = fabs(*hi) > 0 ? 0.05 * fabs(*hi) : 0.5;
        *lo -= pad, *hi += pad;
    }
}

// A frame maps data coordinates to the plot rectangle [px, px+pw) x [py, py+ph).
typedef struct {
    int px, py, pw, ph;
    double x0, x1, y0, y1;
} Frame;

static int frame_x(const Frame *f, double x) { return f->px + (int)lround((x - f->x0) / (f->x1 - f->x0) * (f->pw - 1)); }
static int frame_y(const Frame *f, double y) {
    return f->py + f->ph - 1 - (int)lround((y - f->y0) / (f->y1 - f->y0) * (f->ph - 1));
}

// y axis: grid lines, ticks and labels on the left; the range widens to the enclosing ticks
static void frame_y_axis(Image *im, Frame *f, const char *ylabel) {
    double step = nice_step(f->y1 - f->y0, 6);
    f->y0 = floor(f->y0 / step + 1e-9) * step, f->y1 = ceil(f->y1 / step - 1e-9) * step;
    if (f->y1 <= f->y0) f->y1 = f->y0 + step;
    for (double t = f->y0; t <= f->y1 + step * 1e-6; t += step) {
        int y = frame_y(f, t);
        fill_rect(im, f->px, y, f->pw, 1, COL_GRID);
        fill_rect(im, f->px - 5, y, 5, 1, COL_AXIS);
        char buf[32];
        fmt_tick(buf, sizeof buf, t, step);
        draw_text(im, f->px - 8 - text_width(buf, 1), y - 3, buf, COL_TEXT, 1);
    }
    if (ylabel) draw_text_up(im, 8, f->py + f->ph / 2 + text_width(ylabel, 2) / 2, ylabel, COL_TEXT, 2);
}

static void frame_x_axis_numeric(Image *im, Frame *f, const char *xlabel, int integer) {
    double step = nice_step(f->x1 - f->x0, 8);
    if (integer && step < 1) step = 1;
    for (double t = ceil(f->x0 / step - 1e-9) * step; t <= f->x1 + step * 1e-6; t += step) {
        int x = frame_x(f, t);
        fill_rect(im, x, f->py, 1, f->ph, COL_GRID);
        fill_rect(im, x, f->py + f->ph, 1, 5, COL_AXIS);
        char buf[32];
        fmt_tick(buf, sizeof buf, t, step);
        draw_text_centered(im, x, f->py + f->ph + 8, buf, COL_TEXT, 1);
    }
    if (xlabel) draw_text_centered(im, f->px + f->pw / 2, f->py + f->ph + 24, xlabel, COL_TEXT, 2);
}

static void frame_box(Image *im, const Frame *f) { draw_rect(im, f->px - 1, f->py - 1, f->pw + 2, f->ph + 2, COL_AXIS); }

static void draw_title(Image *im, const char *title) {
    if (title) draw_text_centered(im, im->w / 2, 10, title, COL_TEXT, 2);
}

// a legend box: n entries of (colour swatch, label); kind 0 = line swatch, 1 = filled square
static void draw_legend(Image *im, int x_right, int y_top, const char *const *labels, const unsigned *colors, int n,
                        int kind) {
    int wmax = 0;
    for (int i = 0; i < n; i++) wmax = labels[i] && text_width(labels[i], 1) > wmax ? text_width(labels[i], 1) : wmax;
    int w = wmax + 34, h = n * 14 + 8, x = x_right - w;
    fill_rect(im, x, y_top, w, h, 0xffffff);
    draw_rect(im, x, y_top, w, h, 0xb0b0b0);
    for (int i = 0; i < n; i++) {
        int y = y_top + 6 + i * 14;
        if (kind == 0) fill_rect(im, x + 6, y + 3, 18, 2, colors[i]);
        else fill_rect(im, x + 10, y, 9, 9, colors[i]);
        draw_text(im, x + 28, y + 1, labels[i] ? labels[i] : "", COL_TEXT, 1);
    }
}

// ------------------------------------------------------------------------------------------------
// line charts

typedef struct {
    const char *label;
    const double *x, *y;
    int n;
} Series;

typedef struct {
    int logy;                     // log10 y axis (values <= 0 are skipped)
    double ymin, ymax;            // fixed y range when ymin < ymax
    const double *vx;             // vertical marker lines at these x (e.g. the sliding window)
    const char *const *vx_labels; // one label per marker (may be NULL)
    int nvx;
    int integer_x;                // x is an index (layers): integer ticks, the range padded by 1/2
    const double *bands;          // shaded columns [x - 1/2, x + 1/2] (e.g. full-attention layers)
    int nbands;
    const char *band_label;       // their legend entry (default "full attention")
} LinesOpts;

static void plot_lines_ex(const char *path, const char *title, const char *xlabel, const char *ylabel, const Series *s,
                          int ns, const LinesOpts *o) {
    LinesOpts def = {0};
    if (!o) o = &def;
    Image im = image_new(900, 560);
    Frame f = {80, 44, 790, 450, INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double y = s[k].y[i];
            if (o->logy) y = y > 0 ? log10(y) : NAN;
            if (s[k].x[i] != s[k].x[i] || y != y) continue;
            f.x0 = fmin(f.x0, s[k].x[i]), f.x1 = fmax(f.x1, s[k].x[i]);
            f.y0 = fmin(f.y0, y), f.y1 = fmax(f.y1, y);
        }
    double xr[2] = {f.x0, f.x1}, yr[2] = {f.y0, f.y1};
    data_range(xr, 2, &f.x0, &f.x1);
    data_range(yr, 2, &f.y0, &f.y1);
    if (o->integer_x) f.x0 = floor(f.x0 + 1e-9) - 0.5, f.x1 = ceil(f.x1 - 1e-9) + 0.5;
    if (o->ymin < o->ymax) f.y0 = o->logy ? log10(o->ymin) : o->ymin, f.y1 = o->logy ? log10(o->ymax) : o->ymax;
    else {
        double pad = 0.04 * (f.y1 - f.y0);
        f.y0 -= pad, f.y1 += pad;
    }
    draw_title(&im, title);
    for (int k = 0; k < o->nbands; k++) {  // under the grid and the lines
        int xa = frame_x(&f, fmax(o->bands[k] - 0.5, f.x0)), xb = frame_x(&f, fmin(o->bands[k] + 0.5, f.x1));
        fill_rect(&im, xa, f.py, xb - xa + 1, f.ph, COL_BAND);
    }
    frame_y_axis(&im, &f, o->logy && ylabel ? NULL : ylabel);
    if (o->logy && ylabel) {
        char buf[160];
        snprintf(buf, sizeof buf, "log10 %s", ylabel);
        draw_text_up(&im, 8, f.py + f.ph / 2 + text_width(buf, 2) / 2, buf, COL_TEXT, 2);
    }
    frame_x_axis_numeric(&im, &f, xlabel, o->integer_x);
    for (int k = 0; k < o->nvx; k++) {
        if (o->vx[k] < f.x0 || o->vx[k] > f.x1) continue;
        int x = frame_x(&f, o->vx[k]);
        for (int y = f.py; y < f.py + f.ph; y += 6) fill_rect(&im, x, y, 1, 3, COL_AXIS);
        if (o->vx_labels && o->vx_labels[k]) {  // beside the line, on the side with room
            int tw = text_width(o->vx_labels[k], 1), tx = x + 4 + tw < f.px + f.pw - 4 ? x + 4 : x - 4 - tw;
            draw_text(&im, tx, f.py + 4 + 12 * (k % 4), o->vx_labels[k], COL_AXIS, 1);
        }
    }
    for (int k = 0; k < ns; k++) {
        unsigned col = plot_palette[k % 10];
        int have = 0, px = 0, py = 0;
        for (int i = 0; i < s[k].n; i++) {
            double y = s[k].y[i];
            if (o->logy) y = y > 0 ? log10(y) : NAN;
            if (s[k].x[i] != s[k].x[i] || y != y) { have = 0; continue; }  // NaN breaks the line
            if (y < f.y0) y = f.y0;
            if (y > f.y1) y = f.y1;
            int x1 = frame_x(&f, s[k].x[i]), y1 = frame_y(&f, y);
            if (have) draw_line(&im, px, py, x1, y1, col, 2);
            if (!have || s[k].n <= 60) fill_rect(&im, x1 - 2, y1 - 2, 5, 5, col);  // few points: show each
            px = x1, py = y1, have = 1;
        }
    }
    frame_box(&im, &f);
    if (ns > 0) {
        const char **labels = (const char **)mallocCheck(sizeof(char *) * (size_t)ns);
        unsigned *cols = (unsigned *)mallocCheck(sizeof(unsigned) * (size_t)ns);
        for (int k = 0; k < ns; k++) labels[k] = s[k].label, cols[k] = plot_palette[k % 10];
        draw_legend(&im, f.px + f.pw - 8, f.py + 8, labels, cols, ns, 0);
        if (o->nbands) {
            const char *bl[1] = {o->band_label ? o->band_label : "full attention"};
            unsigned bc[1] = {COL_BAND_KEY};
            draw_legend(&im, f.px + f.pw - 8, f.py + 8 + ns * 14 + 12, bl, bc, 1, 1);
        }
        free(labels);
        free(cols);
    }
    image_save_png(&im, path);
    image_free(&im);
}

static void plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel, const Series *s,
                       int ns) {
    plot_lines_ex(path, title, xlabel, ylabel, s, ns, NULL);
}

// the i-th label, or i itself when there are no labels
static const char *label_at(const char *const *labels, int i, char *buf, size_t cap) {
    if (labels) snprintf(buf, cap, "%s", labels[i] ? labels[i] : "");
    else snprintf(buf, cap, "%d", i);
    return buf;
}

// ------------------------------------------------------------------------------------------------
// heatmaps: rows (e.g. layers, top = row 0) x columns (heads, channel groups, matrices), viridis,
// a colour bar with ticks on the right, and, when row_full is given, a strip marking each row as
// full attention (red) or sliding window (grey) with its legend under the title.

typedef struct {
    const char *const *col_labels;  // NULL: column indices
    const char *cbar_label;         // text beside the colour bar
    const char *full_label;         // legend for rows with row_full set (default "full attention")
    const char *other_label;        // legend for the other rows (default "sliding window")
    const char *note;               // one line under the title (e.g. what the colour means)
} HeatmapOpts;

static void plot_heatmap_ex(const char *path, const char *title, const char *xlabel, const char *ylabel,
                            const float *v, int rows, int cols, float vmin, float vmax, const char *const *row_labels,
                            const int *row_full, const HeatmapOpts *o) {
    HeatmapOpts def = {0};
    if (!o) o = &def;
    if (rows < 1 || cols < 1) fail("plot_heatmap %s: empty matrix (%d x %d)", path, rows, cols);
    if (!(vmin < vmax)) {  // auto range from the data
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < (size_t)rows * cols; i++)
            if (v[i] == v[i]) lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
        double r[2] = {lo, hi};
        data_range(r, 2, &lo, &hi);
        vmin = (float)lo, vmax = (float)hi;
    }
    int cw = 720 / cols, ch = 600 / rows;
    cw = cw < 2 ? 2 : cw > 56 ? 56 : cw;
    ch = ch < 4 ? 4 : ch > 28 ? 28 : ch;
    // left margin: y label, row labels, the full/sliding strip
    int lw = 0;
    char buf[64];
    for (int r = 0; r < rows; r++) {
        label_at(row_labels, r, buf, sizeof buf);
        lw = text_width(buf, 1) > lw ? text_width(buf, 1) : lw;
    }
    int strip = row_full ? 10 : 0;
    int top = 44 + (o->note ? 14 : 0) + (row_full ? 16 : 0);
    Frame f = {30 + lw + 8 + strip + 4, top, cols * cw, rows * ch, 0, cols, 0, rows};
    int cmax = 0;
    for (int c = 0; c < cols; c++) {
        label_at(o->col_labels, c, buf, sizeof buf);
        cmax = text_width(buf, 1) > cmax ? text_width(buf, 1) : cmax;
    }
    int rotate = cmax + 6 > cw && cw >= 10, lab_h = rotate ? cmax : 7;
    int W = f.px + f.pw + 30 + 96, Hh = f.py + (f.ph < 120 ? 120 : f.ph) + 53 + lab_h;  // colour bar: >= 120 high
    int tw = text_width(title ? title : "", 2) + 40;
    if (W < tw) W = tw;
    if (W < 420) W = 420;
    Image im = image_new(W, Hh);
    draw_title(&im, title);
    int yy = 32;
    if (o->note) draw_text_centered(&im, im.w / 2, yy + 2, o->note, COL_AXIS, 1), yy += 14;
    if (row_full) {
        const char *lab[2] = {o->full_label ? o->full_label : "full attention",
                              o->other_label ? o->other_label : "sliding window"};
        int x = im.w / 2 - (text_width(lab[0], 1) + text_width(lab[1], 1) + 50) / 2;
        fill_rect(&im, x, yy + 2, 9, 9, COL_FULL);
        draw_text(&im, x + 13, yy + 3, lab[0], COL_TEXT, 1);
        x += 13 + text_width(lab[0], 1) + 16;
        fill_rect(&im, x, yy + 2, 9, 9, COL_SLIDING);
        draw_text(&im, x + 13, yy + 3, lab[1], COL_TEXT, 1);
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float x = v[(size_t)r * cols + c];
            unsigned col = x == x ? colormap_viridis((x - vmin) / (vmax - vmin)) : COL_NODATA;
            fill_rect(&im, f.px + c * cw, f.py + r * ch, cw, ch, col);
        }
    // row labels: as many as fit (at least 9 pixels apart), always the first
    int rstride = (9 + ch - 1) / ch;
    for (int r = 0; r < rows; r++) {
        int y = f.py + r * ch;
        if (row_full) fill_rect(&im, f.px - strip - 3, y + (ch > 4), strip, ch - (ch > 4), row_full[r] ? COL_FULL : COL_SLIDING);
        if (r % rstride) continue;
        label_at(row_labels, r, buf, sizeof buf);
        draw_text(&im, f.px - strip - 7 - text_width(buf, 1), y + ch / 2 - 3, buf, COL_TEXT, 1);
    }
    // column labels: as many as fit
    // column labels: across when they fit, else upright (reading upwards) when a column is wide
    // enough for one, else every cstride-th across
    int cstride = rotate ? 1 : (cmax + 6 + cw - 1) / cw;
    for (int c = 0; c < cols; c += cstride) {
        label_at(o->col_labels, c, buf, sizeof buf);
        if (rotate) draw_text_up(&im, f.px + c * cw + cw / 2 - 3, f.py + f.ph + 6 + text_width(buf, 1), buf, COL_TEXT, 1);
        else draw_text_centered(&im, f.px + c * cw + cw / 2, f.py + f.ph + 6, buf, COL_TEXT, 1);
    }
    frame_box(&im, &f);
    if (xlabel) draw_text_centered(&im, f.px + f.pw / 2, f.py + f.ph + 14 + lab_h, xlabel, COL_TEXT, 2);
    if (ylabel) draw_text_up(&im, 8, f.py + f.ph / 2 + text_width(ylabel, 2) / 2, ylabel, COL_TEXT, 2);
    // colour bar: bottom = vmin, top = vmax
    Frame cb = {f.px + f.pw + 30, f.py, 16, f.ph < 120 ? 120 : f.ph, 0, 1, vmin, vmax};
    for (int y = 0; y < cb.ph; y++) fill_rect(&im, cb.px, cb.py + y, cb.pw, 1, colormap_viridis(1.0 - (double)y / (cb.ph - 1)));
    draw_rect(&im, cb.px - 1, cb.py - 1, cb.pw + 2, cb.ph + 2, COL_AXIS);
    double step = nice_step(vmax - vmin, 5);
    int tickw = 0;
    for (double t = ceil(vmin / step - 1e-9) * step; t <= vmax + step * 1e-6; t += step) {
        int y = frame_y(&cb, t);
        fill_rect(&im, cb.px + cb.pw, y, 4, 1, COL_AXIS);
        fmt_tick(buf, sizeof buf, t, step);
        draw_text(&im, cb.px + cb.pw + 6, y - 3, buf, COL_TEXT, 1);
        tickw = text_width(buf, 1) > tickw ? text_width(buf, 1) : tickw;
    }
    if (o->cbar_label)  // reads bottom to top beside the tick labels
        draw_text_up(&im, cb.px + cb.pw + 6 + tickw + 6, cb.py + cb.ph / 2 + text_width(o->cbar_label, 1) / 2,
                     o->cbar_label, COL_TEXT, 1);
    image_save_png(&im, path);
    image_free(&im);
}

static void plot_heatmap(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *v,
                         int rows, int cols, float vmin, float vmax, const char *const *row_labels,
                         const int *row_full) {
    plot_heatmap_ex(path, title, xlabel, ylabel, v, rows, cols, vmin, vmax, row_labels, row_full, NULL);
}

// ------------------------------------------------------------------------------------------------
// bar charts: one bar per item (e.g. per layer) from zero, negative values below the zero line;
// highlighted bars (e.g. full-attention layers) in red with a legend.

typedef struct {
    const char *highlight_label;  // legend for highlighted bars (default "full attention")
    const char *other_label;      // legend for the others (default "sliding window")
    const char *xlabel;           // under the bar labels (default none)
    const char *note;             // one line under the title
} BarsOpts;

static void plot_bars_ex(const char *path, const char *title, const char *ylabel, const double *v, int n,
                         const char *const *labels, const int *highlight, const BarsOpts *o) {
    BarsOpts def = {0};
    if (!o) o = &def;
    if (n < 1) fail("plot_bars %s: no bars", path);
    int bw = 780 / n;
    bw = bw < 3 ? 3 : bw > 60 ? 60 : bw;
    int top = 44 + (o->note ? 14 : 0);
    Frame f = {80, top, n * bw, 400, -0.5, n - 0.5, 0, 0};
    int W = f.px + (f.pw > 780 ? f.pw : 780) + 30;
    Image im = image_new(W, f.py + f.ph + 70);
    if (f.pw < 780) f.px += (780 - f.pw) / 2;
    data_range(v, n, &f.y0, &f.y1);
    if (f.y0 > 0) f.y0 = 0;  // bars start at zero
    if (f.y1 < 0) f.y1 = 0;
    f.y1 += 0.04 * (f.y1 - f.y0);
    draw_title(&im, title);
    if (o->note) draw_text_centered(&im, im.w / 2, 34, o->note, COL_AXIS, 1);
    Frame axis = f;
    axis.px = 80, axis.pw = im.w - 110;
    frame_y_axis(&im, &axis, ylabel);  // grid across the full width; f shares its widened range
    f.y0 = axis.y0, f.y1 = axis.y1;
    int y0 = frame_y(&f, 0);
    for (int i = 0; i < n; i++) {
        if (v[i] != v[i]) continue;
        int yv = frame_y(&f, v[i]), x = f.px + i * bw + (bw > 4 ? 1 : 0);
        unsigned col = highlight && highlight[i] ? COL_FULL : COL_BAR;
        if (yv <= y0) fill_rect(&im, x, yv, bw - (bw > 4 ? 2 : 1), y0 - yv + 1, col);
        else fill_rect(&im, x, y0, bw - (bw > 4 ? 2 : 1), yv - y0 + 1, col);
    }
    fill_rect(&im, axis.px, y0, axis.pw, 1, COL_AXIS);  // the zero line
    char buf[64];
    int lmax = 0;
    for (int i = 0; i < n; i++) {
        label_at(labels, i, buf, sizeof buf);
        lmax = text_width(buf, 1) > lmax ? text_width(buf, 1) : lmax;
    }
    int stride = (lmax + 6 + bw - 1) / bw;
    for (int i = 0; i < n; i += stride) {
        label_at(labels, i, buf, sizeof buf);
        draw_text_centered(&im, f.px + i * bw + bw / 2, f.py + f.ph + 8, buf, COL_TEXT, 1);
    }
    frame_box(&im, &axis);
    if (o->xlabel) draw_text_centered(&im, axis.px + axis.pw / 2, f.py + f.ph + 26, o->xlabel, COL_TEXT, 2);
    if (highlight) {
        const char *lab[2] = {o->highlight_label ? o->highlight_label : "full attention",
                              o->other_label ? o->other_label : "sliding window"};
        unsigned cols[2] = {COL_FULL, COL_BAR};
        draw_legend(&im, axis.px + axis.pw - 8, axis.py + 8, lab, cols, 2, 1);
    }
    image_save_png(&im, path);
    image_free(&im);
}

static void plot_bars(const char *path, const char *title, const char *ylabel, const double *v, int n,
                      const char *const *labels, const int *highlight) {
    plot_bars_ex(path, title, ylabel, v, n, labels, highlight, NULL);
}

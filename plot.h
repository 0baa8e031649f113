// plot.h — PNG pictures with stb_image_write: line charts, heatmaps, bars, with a small built-in
// font for labels, axes and legends. Shared by train.c (loss curves), prune.c (survivor maps) and
// profile.c (heatmaps). (Filled in with the profile issue.)
#pragma once
#include "util.h"

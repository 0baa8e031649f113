# data/brown.awk — Brown corpus texts (form C: word/TAG tokens, one sentence per line, blank lines between
# paragraphs) back to plain text: tags dropped, `` and '' turned into ", punctuation attached to its word,
# the lines of a paragraph joined by spaces, paragraphs separated by a blank line, headlines (all tags
# ending in -hl) on a line of their own. Each input file becomes one document, started by a line holding
# the byte 0x1E and the file name (the document format of data/text/*.txt, see data/README.md).
#   awk -f data/brown.awk ca01 ca02 ... > press.txt

function flush() {
    if (para != "") printf "%s%s\n", (npara++ ? "\n" : ""), para
    para = ""
    glue = 1                                   # no space before the next word
    prev = ""
}

# appends one word to the paragraph, spaced like printed English
function add(w) {
    if (w == "``") { para = para (glue ? "" : " ") "\""; glue = 1; prev = w; return }
    if (w == "''") w = "\""
    if (w ~ /^[;?!.]$/ && (prev == w || (w == "." && para ~ /\.$/))) return  # "?/. ?/.", "Jr./np ./."
    if (w ~ /^[,.;:?!)\]}"']/ && w !~ /^'?[A-Za-z0-9]/) glue = 1
    para = para (glue ? "" : " ") w
    glue = (w == "(" || w == "[" || w == "{")
    prev = w
}

FNR == 1 {
    flush()
    n = split(FILENAME, parts, "/")
    printf "\036%s\n", parts[n]
    npara = 0
}

/^[ \t]*$/ { flush(); next }

{
    heading = 1
    for (i = 1; i <= NF; i++) {
        k = match($i, /\/[^\/]*$/)             # the tag follows the last slash
        word[i] = k ? substr($i, 1, k - 1) : $i
        if (!k || substr($i, k + 1) !~ /-hl$/) heading = 0
    }
    if (heading) flush()
    for (i = 1; i <= NF; i++) add(word[i])
    if (heading) flush()
}

END { flush() }

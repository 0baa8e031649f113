# data/foldoc.awk — the Free On-line Dictionary of Computing (Debian dict-foldoc, dictd text once
# decompressed) to documents: one entry (headword lines at column 0, then the indented definition) is one
# document, started by a line holding the byte 0x1E and the headword (see data/README.md). Every keep-th
# entry is kept (keep=2: every other one, to hold the domain near 3 MB); the 00-database-* entries are dropped.
#   gzip -dc /usr/share/dictd/foldoc.dict.dz | awk -v keep=2 -f data/foldoc.awk > dict.txt

function emit() {
    if (n > 0 && name !~ /^00-database/ && (count++ % keep) == 0) {
        while (n > 0 && lines[n] == "") n--      # no trailing blank lines
        printf "\036%s\n", name
        for (i = 1; i <= n; i++) print lines[i]
    }
    n = 0
}

BEGIN { if (keep < 1) keep = 1 }

/^[^ \t]/ && indented {                        # a headword after a definition starts the next entry
    emit()
    indented = 0
}

n == 0 && /^[ \t]*$/ { next }                  # blank lines before an entry

{
    if (n == 0) name = $0
    lines[++n] = $0
    if ($0 ~ /^[ \t]/) indented = 1
}

END { emit() }

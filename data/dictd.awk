# data/dictd.awk — a dictd dictionary (Debian dict-*, the .dict.dz text once decompressed) to documents: one
# entry (headword lines at column 0, then the indented definition) is one document, started by a line holding
# the byte 0x1E and the headword (see data/README.md). The 00-database-* entries are dropped, and so are
#   head=RE   entries whose first line does not match RE (GCIDE's licence text: headwords are \word\)
#   drop=RE   entries with a line matching RE (GCIDE's WordNet 1.5 entries, which dict-wn holds already)
# and of the entries left every keep-th is kept (keep=2: every other one).
#   gzip -dc /usr/share/dictd/foldoc.dict.dz | awk -v keep=2 -f data/dictd.awk > dict.txt
#   gzip -dc /usr/share/dictd/gcide.dict.dz | awk -v head='\\\\' -v drop='\\[WordNet' -f data/dictd.awk

function emit(    i, bad) {
    if (n > 0 && name !~ /^00-database/ && (head == "" || lines[1] ~ head)) {
        for (i = 1; i <= n && drop != ""; i++)
            if (lines[i] ~ drop) bad = 1
        if (!bad && (count++ % keep) == 0) {
            while (n > 0 && lines[n] == "") n--      # no trailing blank lines
            printf "\036%s\n", name
            for (i = 1; i <= n; i++) print lines[i]
        }
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

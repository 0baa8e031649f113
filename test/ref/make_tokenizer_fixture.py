#!/usr/bin/env python3
"""Reference ids for data/tokenizer.h, made by Hugging Face `tokenizers` (the library transformers uses).

    python3 test/ref/make_tokenizer_fixture.py PATH/tokenizer.json [--out test/fixtures/tokenizer/gemma3_ids.json]

Runs on a machine where `pip install tokenizers` works (not on the C dev boxes). For every text below it writes
    ids                  encode(text, add_special_tokens=False).ids
    ids_special          encode(text, add_special_tokens=True).ids      (Gemma's post-processor adds <bos>)
    decoded              decode(ids, skip_special_tokens=False)
    decoded_skip_special decode(ids, skip_special_tokens=True)
test/test_data.c compares data/tokenizer.h with every case exactly. `--texts-only` writes just the texts
(no `tokenizers` needed), for comparing other implementations while developing.
Invalid UTF-8 cannot reach HF (Python str), so it is tested in C for "no crash + round trip" only.
No text may contain U+0000: cJSON, which reads the fixture in C, stops a string there.
"""
import argparse
import hashlib
import json
import os
import sys

SENTENCES = [
    "The history of the printing press begins with Johannes Gutenberg, who around 1440 combined movable metal type,",
    "oil-based inks and a wooden press adapted from those used for wine and olives.",
    "Within fifty years, presses were at work in more than two hundred European cities, and by 1500 they had",
    "produced something like twenty million volumes: bibles, grammars, almanacs, indulgences and pamphlets.",
    "Historians still argue about how much the new machines changed the way people thought; some say it merely",
    "sped up what scribes had done for centuries, while others credit it with the Reformation, modern science",
    "and the idea of an author who owns the words on a page.",
    "What is not in doubt is the arithmetic: a scribe might copy two or three books a year, and a single",
    "press with a crew of three could print 3,600 pages in a working day.",
    "Prices fell, literacy rose, and the spelling of English, which had wandered freely for centuries,",
    "began to settle into the forms that dictionaries later recorded (not always sensibly: \"debt\" acquired",
    "its silent b from the Latin debitum).",
]
# about 3.5 KB of prose in one line: HF sees it as one BPE word, so this also exercises long merge chains
LONG_PARAGRAPH = " ".join(SENTENCES * 3)

CODE = '''def tokenize(text: str, vocab: dict[str, int]) -> list[int]:
    """Greedy longest match; for tests only."""
    out = []
\ti = 0  # a tab-indented line inside space-indented code
    while i < len(text):
        for j in range(len(text), i, -1):
            if text[i:j] in vocab:
                out.append(vocab[text[i:j]])
                i = j
                break
        else:
            raise ValueError(f"no token at {i}: {text[i]!r}")
    return out


int main(int argc, char **argv) {
\tfor (int i = 0; i < argc; i++) printf("%s\\n", argv[i]);
\treturn argc > 1 ? 0 : 1;
}
'''

CASES = [
    ("empty", ""),
    ("single_space", " "),
    ("only_spaces", "     "),
    ("hello", "Hello world"),
    ("english", "The quick brown fox jumps over the lazy dog."),
    ("multiple_spaces", "two  spaces,   three,    four     five      six"),
    ("leading_trailing_spaces", "  leading and trailing  "),
    ("tabs", "a\tb\t\tc\t\t\t\td \t e"),
    ("newlines", "line one\nline two\n\nparagraph\n\n\n\nfour newlines\r\nwindows line end\n"),
    ("blank_lines_with_spaces", "x\n \n  \n\t\n\n  indented\n"),
    ("many_newlines_and_tabs", "\n" * 40 + "x" + "\t" * 35 + "y" + " " * 33 + "z"),
    ("digits", "0 1 12 123 1234 12345 3.14159 1,000,000 2024-11-23 0x1F 1e-9 -42 +7 50%"),
    ("long_number", "31415926535897932384626433832795028841971693993751058209749445923078164062862"),
    ("punctuation", "Wait... what?! (yes) [no] {maybe} \"quoted\" 'single' \u2014 em-dash \u2013 en-dash; "
                    "colon: a/b\\c @#$%^&*_+=|~`"),
    ("repeats", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!! ........ ---------- ________ ===="),
    ("accents", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 se\u00f1or ma\u00f1ana \u00fcber M\u00fcller "
                "\u00c5ngstr\u00f6m fa\u00e7ade co\u00f6perate"),
    ("combining_marks", "e\u0301 (e + combining acute) vs \u00e9, n\u0303 vs \u00f1"),
    ("cjk", "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002\u6211\u7231\u5317\u4eac"
            "\u5929\u5b89\u95e8\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8"),
    ("emoji", "I \u2764\ufe0f \U0001F355! \U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467"
              "\u200d\U0001F466 \U0001F3F3\ufe0f\u200d\U0001F308 \U0001F1EB\U0001F1F7 \U0001F600\U0001F603"),
    ("arabic_hebrew", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u2014 "
                      "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"),
    ("other_scripts", "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440. \u0393\u03b5\u03b9\u03ac "
                      "\u03c3\u03bf\u03c5 \u03ba\u03cc\u03c3\u03bc\u03b5. \u0928\u092e\u0938\u094d\u0924\u0947 "
                      "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35"),
    ("rare_chars_byte_fallback", "\U00013000\U00013050 \U00012000 \ue000\uf8ff \U000E0041 \U0010FFFD \u0378"),
    ("control_chars", "\x01\x02\x7f \x1b[31mred\x1b[0m \x0b\x0c end"),
    ("unicode_spaces", "nbsp\u00a0here, thin\u2009space, ideographic\u3000space, zero\u200bwidth, \ufeffbom"),
    ("math", "\u2211_{i=1}^{n} x_i\u00b2 \u2264 \u221e \u00b1 \u221a2 \u2248 1.414 \u2192 \u03bb \u03b1 \u03b2"),
    ("chat_turns", "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"),
    ("bos_eos_literal", "<bos>text<eos> <pad><unk>"),
    ("unused_tokens", "<unused12> and <unused0><unused6241> x<unused5>y"),
    ("other_added_tokens", "<mask> [multimodal] <start_of_image><end_of_image><image_soft_token>"),
    ("near_misses", "<start_of_turn <bos <unused> <unused999999> <BOS> < bos> <s> </s> <start_of_turn>>"),
    ("html_tokens", "<table><tr><td>1</td></tr></table> <b>bold</b> <h1>Title</h1> <div class=\"x\">"),
    ("literal_meta_space", "a\u2581b \u2581\u2581 c\u2581\u2581\u2581d \u2581"),
    ("mixed", "Mr. O'Neil's e-mail: john.doe+test@example.com, URL https://example.org/a?b=c&d=e#f"),
    ("json", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}"),
    ("code", CODE),
    ("long_paragraph", LONG_PARAGRAPH),
    ("paragraphs", "\n\n".join(SENTENCES[:6]) + "\n"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer_json", nargs="?", help="path of Gemma 3's tokenizer.json")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokenizer",
                                                  "gemma3_ids.json"))
    ap.add_argument("--texts-only", action="store_true", help="write only the texts (no tokenizers library needed)")
    args = ap.parse_args()
    for name, text in CASES:
        assert "\x00" not in text, name
    if args.texts_only:
        json.dump([{"name": n, "text": t} for n, t in CASES], sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
        return
    if not args.tokenizer_json:
        ap.error("give the path of tokenizer.json")
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(args.tokenizer_json)
    with open(args.tokenizer_json, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    cases = []
    for name, text in CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        cases.append({
            "name": name,
            "text": text,
            "ids": ids,
            "ids_special": ids_special,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    out = {
        "generator": "test/ref/make_tokenizer_fixture.py",
        "tokenizers_version": tokenizers.__version__,
        "tokenizer_json_sha256": sha,
        "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # one case per line: readable diffs, no page per id array
    with open(args.out, "w", encoding="utf-8") as f:
        head = json.dumps({k: v for k, v in out.items() if k != "cases"}, ensure_ascii=False)[:-1]
        f.write(head + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {args.out}: {len(cases)} cases, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()

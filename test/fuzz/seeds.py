#!/usr/bin/env python3
# test/fuzz/seeds.py — writes the committed seed corpora test/fuzz/corpus/<target>/ (run from the repository root;
# rerun only to change them). Small valid inputs of every form each reader accepts, so the fuzzer starts from
# inside the format rather than from random bytes. Standard library only.
import json, os, shutil, struct

OUT = "test/fuzz/corpus"


def put(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    open(os.path.join(OUT, target, name), "wb").write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, meta=None, extra_pad=0):
    """tensors: [(name, dtype, shape, raw bytes)] -> a valid file (data in the given order)"""
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    hb = json.dumps(h, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8 + extra_pad)
    return struct.pack("<Q", len(hb)) + hb + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    # config: the fixtures' configs (Gemma 3 and 4, both config forms, E2B extras, multimodal wrapper)
    for root, _, files in sorted(os.walk("test/fixtures")):
        if "config.json" in files:
            name = root.replace("test/fixtures/", "").replace("/", "_")
            text = json.dumps(json.load(open(os.path.join(root, "config.json"))), separators=(",", ":"))
            put("config", name + ".json", text)
            put("gguf", name + ".bin", text.encode() + b"\0" + f32(0.5, -1.0, 0.25, 3.0, -0.0, 1e-3, 7.5, -2.0))
    # weights whose largest value is denormal: the q8_0 / q4_0 scale has no finite inverse (the byte after the
    # NUL picks the type: 9 = q8_0, 12 = q4_0, both with an f32 checkpoint)
    mqa = json.dumps(json.load(open("test/fixtures/g3_mqa/config.json")), separators=(",", ":")).encode()
    tiny = struct.pack("<f", 1e-39)
    put("gguf", "denormal_q8_0.bin", mqa + b"\0" + bytes([9]) + tiny[1:] + tiny * 2)
    put("gguf", "denormal_q4_0.bin", mqa + b"\0" + bytes([12]) + tiny[1:] + tiny * 2)
    put("config", "tiny_defaults.json", '{"model_type":"gemma3_text","vocab_size":8,"hidden_size":8,'
        '"intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,'
        '"sliding_window":2,"max_position_embeddings":16,"sliding_window_pattern":2,"eos_token_id":[1,2]}')
    put("config", "wrapped_gemma4.json", '{"model_type":"gemma4","text_config":{"vocab_size":8,"hidden_size":8,'
        '"intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,'
        '"global_head_dim":8,"attention_k_eq_v":true,"num_global_key_value_heads":1,"sliding_window":2,'
        '"max_position_embeddings":16,"layer_types":["sliding_attention","full_attention"],'
        '"rope_parameters":{"full_attention":{"rope_type":"proportional","partial_rotary_factor":0.25,'
        '"rope_theta":1000000.0},"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}}}')
    # safetensors: each dtype the stages read, metadata, an empty tensor, a scalar, unaligned data, shards' names
    put("safetensors", "f32.st", safetensors([("model.norm.weight", "F32", [4], f32(1, 2, 3, 4))], {"format": "pt"}))
    put("safetensors", "mixed.st", safetensors([
        ("model.embed_tokens.weight", "BF16", [2, 3], struct.pack("<6H", 0x3f80, 0xbf80, 0, 0x4000, 0x3f00, 0x7f7f)),
        ("model.layers.0.input_layernorm.weight", "F16", [3], struct.pack("<3H", 0x3c00, 0xbc00, 0x0001)),
        ("ids", "I32", [2], struct.pack("<2i", 7, -1)),
        ("empty", "F32", [0, 5], b""),
        ("scalar", "F32", [], f32(0.5)),
        ("opt.q8", "I8", [4], b"\x01\x80\x7f\x00")], {"format": "pt", "optimizer": "adamw8"}))
    put("safetensors", "odd_offsets.st", safetensors([("a", "U8", [1], b"\x05"), ("b", "F32", [2], f32(1.5, -2.5))],
                                                     None, extra_pad=1))
    put("safetensors", "no_tensors.st", safetensors([], {"format": "pt"}))
    put("safetensors", "f64_kept.st", safetensors([("x", "F64", [1], struct.pack("<d", 1.0)),
                                                   ("y", "F32", [1], f32(2.0))]))
    # shards (data/shard.h): 2- and 4-byte tokens, empty
    def shard(vocab, nbytes, toks, ndocs):
        h = b"GSHD" + struct.pack("<IIIQQ", 1, vocab, nbytes, len(toks), ndocs)
        return h + b"\0" * (64 - len(h)) + struct.pack("<%d%s" % (len(toks), "H" if nbytes == 2 else "I"), *toks)
    put("shard", "u16.bin", shard(261, 2, [2, 104, 105, 260, 2, 50], 2))
    put("shard", "u32.bin", shard(262144, 4, [2, 9259, 1902, 2, 100000], 2))
    put("shard", "empty.bin", shard(261, 2, [], 0))
    # tokenizer.json: Gemma-style pipeline, a few pieces, byte fallback, merges in both forms, added tokens
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "\u2581": 4, "a": 5, "b": 6, "ab": 7, "\u2581a": 8,
             "<0x0A>": 9, "<0xFF>": 10, "H": 11, "e": 12, "He": 13}
    tok = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for c, i in
                         [("<pad>", 0), ("<eos>", 1), ("<bos>", 2), ("<unk>", 3)]] +
                        [{"id": 14, "content": "<unused0>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": False}],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [["a", "b"], "\u2581 a", ["H", "e"]]},
    }
    put("tokenizer", "tiny.json", json.dumps(tok, ensure_ascii=False))
    tok["normalizer"] = None
    tok["pre_tokenizer"] = None
    put("tokenizer", "no_normalizer.json", json.dumps(tok))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference fixtures for model.h, made with Hugging Face transformers (run on the GPU machine,
where transformers 5.17 + torch 2.11 are installed; the math runs on its CPU in float64).

Each fixture is a directory test/fixtures/<name>/ with
  config.json, model.safetensors (or shards)  -- the model, written by transformers' save_pretrained
  ref.safetensors  -- tokens [B,T] (I32), logits [B,T,V], loss [1], and grad.<param> for every
                      parameter, all computed by transformers in float64 and stored as F32
  fixture.json     -- what the fixture covers, and the AdamW settings where there is a training check
Fixtures that reuse another's reference say so in fixture.json ("ref": "<other>").

Usage: python3 test/ref/make_fixtures.py OUTDIR [NAME ...]
  With names, only those fixtures are made. The first fixtures share one generator (their committed
  bytes reproduce only from a full run); fixtures added later seed their own generator.
"""
import json, math, os, shutil, struct, sys, traceback

import torch
import transformers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

torch.backends.cuda.matmul.allow_tf32 = False
OUT = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures"
os.makedirs(OUT, exist_ok=True)
print("transformers", transformers.__version__, "torch", torch.__version__, flush=True)


def save_ref(path, tensors):
    """Minimal safetensors writer (F32/I32), so the fixture does not depend on the safetensors package."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
            t, dt = t.to(torch.float32), "F32"
        else:
            t, dt = t.to(torch.int32), "I32"
        b = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def randomize(model, gen, std=0.15, norm_std=0.3):
    """Random weights everywhere, norms included (an all-zero norm weight would hide a 1+w bug)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * norm_std)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        for name, b in model.named_buffers():  # Gemma 4's layer_scalar is a buffer, saved with the weights
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


def reference(model, tokens, embed_scale=None):
    """float64 forward + backward; returns logits, loss and every parameter's gradient."""
    model = model.to(torch.float64)
    if embed_scale is not None:  # what the checkpoint's dtype makes of sqrt(d)
        emb = model.model.embed_tokens
        assert hasattr(emb, "embed_scale"), "transformers moved embed_scale: " + str(dict(emb.named_buffers()))
        emb.embed_scale.fill_(embed_scale)
    model.zero_grad()
    out = model(input_ids=tokens, labels=tokens)
    out.loss.backward()
    grads = {f"grad.{n}": p.grad for n, p in model.named_parameters()}
    return {"tokens": tokens, "logits": out.logits, "loss": out.loss.reshape(1), **grads}


def adamw_losses(model, batches, lr, betas, eps, wd, clip):
    """torch.optim.AdamW: decay on matrices only (not norms, not the embedding), grad clip, float64."""
    model = model.to(torch.float64)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps)
    losses = []
    for tokens in batches:
        opt.zero_grad()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses)


def g3_config(**kw):
    base = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, sliding_window=6,
                max_position_embeddings=512, rms_norm_eps=1e-6, attn_implementation="eager")
    base.update(kw)
    return Gemma3TextConfig(**base)


def write(name, model, refs, info, **save_kw):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, **save_kw)
    if refs is not None:
        save_ref(os.path.join(d, "ref.safetensors"), refs)
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(info, f, indent=1)
    print("wrote", d, sorted(os.listdir(d)), flush=True)
    return d


ONLY = set(sys.argv[2:])


def run(name, fn):
    if ONLY and name not in ONLY:
        return
    try:
        fn()
    except Exception:
        print(f"FIXTURE {name} FAILED", flush=True)
        traceback.print_exc()


gen = torch.Generator().manual_seed(1234)


# 1. GQA 4:1, head_dim != d/H, query_pre_attn_scalar != head_dim, window 6 < T = 20, a layer_types
#    list that is not the default period, final softcapping, linear RoPE scaling on full layers.
def g3_gqa():
    cfg = g3_config(layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
                    final_logit_softcapping=3.0,
                    rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    model = Gemma3ForCausalLM(cfg)
    randomize(model, gen)
    model = model.to(torch.float32)
    tokens = torch.randint(0, cfg.vocab_size, (2, 20), generator=gen)
    refs = reference(model.to(torch.float64), tokens)
    model = model.to(torch.float32)
    write("g3_gqa", model, refs, {"covers": "GQA 4:1, D != d/H, qscalar != D, T > window, irregular layer_types, "
                                            "final softcap 3, linear rope x4 on full layers, random norms"})
    # the same model sharded into several files
    write("g3_sharded", model, None, {"ref": "g3_gqa", "covers": "sharded checkpoint with index"},
          max_shard_size="40KB")
    # 10 AdamW steps on fresh batches: the losses torch.optim.AdamW gives
    batches = [torch.randint(0, cfg.vocab_size, (2, 20), generator=gen) for _ in range(10)]
    # lr 1e-3: at 1e-2 Adam's first step sends every near-zero gradient element a full +-lr update whose
    # sign is set by rounding, and the next loss moves by ~3e-5 between two float64 implementations
    # (curvature x lr^2); at 1e-3 that noise is 100x smaller while a formula error still shows. wd 1.0
    # makes a weight-decay mistake visible within 10 steps.
    hp = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, wd=1.0, clip=1.0)
    m2 = Gemma3ForCausalLM(cfg)
    m2.load_state_dict(model.state_dict())
    losses = adamw_losses(m2, batches, **hp)
    d = os.path.join(OUT, "g3_gqa")
    save_ref(os.path.join(d, "adamw.safetensors"), {"tokens": torch.stack(batches), "losses": losses})
    info = json.load(open(os.path.join(d, "fixture.json")))
    info["adamw"] = {"lr": hp["lr"], "beta1": hp["betas"][0], "beta2": hp["betas"][1], "eps": hp["eps"],
                     "weight_decay": hp["wd"], "grad_clip": hp["clip"], "steps": 10,
                     "decay_on": "2-D weights except the embedding"}
    json.dump(info, open(os.path.join(d, "fixture.json"), "w"), indent=1)
    print("adamw losses", losses.tolist(), flush=True)


# 2. one kv head, no softcap, no rope scaling, d = 48 (sqrt not representable in bf16), written with the
#    older config keys (sliding_window_pattern, rope_theta, rope_local_base_freq) the way released
#    Gemma 3 checkpoints wrote them; then the same model as a bf16 checkpoint.
def g3_mqa():
    cfg = g3_config(hidden_size=48, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                    query_pre_attn_scalar=16, sliding_window=5, num_hidden_layers=3, intermediate_size=80,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    model = Gemma3ForCausalLM(cfg)
    randomize(model, gen)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
    refs = reference(model.to(torch.float64), tokens)
    d = write("g3_mqa", model.to(torch.float32), refs, {"covers": "MQA (1 kv head), no softcap, legacy config keys "
                                                                  "(sliding_window_pattern=3, rope_theta, rope_local_base_freq)"})
    c = json.load(open(os.path.join(d, "config.json")))
    for k in ("layer_types", "rope_parameters"):
        c.pop(k, None)
    c.update(sliding_window_pattern=3, rope_theta=1e6, rope_local_base_freq=1e4, rope_scaling=None)
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
    # check transformers reads the legacy keys back to the same model
    again = Gemma3ForCausalLM.from_pretrained(d, attn_implementation="eager").to(torch.float64)
    lt = again.config.layer_types
    print("legacy config reloads as layer_types", lt, flush=True)
    with torch.no_grad():
        diff = (again(input_ids=tokens).logits - refs["logits"]).abs().max().item()
    print("legacy config reload max |dlogits|", diff, flush=True)
    assert diff < 1e-9, "the legacy config does not describe the same model"
    # bf16 checkpoint: weights rounded to bf16; the reference runs them in float64 with sqrt(d) rounded
    # to bf16, which is what transformers does when it runs the checkpoint in its own dtype
    mb = model.to(torch.bfloat16)
    scale_bf16 = float(torch.tensor(math.sqrt(cfg.hidden_size)).to(torch.bfloat16))
    m64 = Gemma3ForCausalLM(cfg)
    m64.load_state_dict({k: v.to(torch.float32) for k, v in mb.state_dict().items()})
    refs_b = reference(m64, tokens, embed_scale=scale_bf16)
    write("g3_bf16", mb, refs_b, {"covers": "bf16 checkpoint; sqrt(48)=6.9282 rounds to %.6f in bf16" % scale_bf16,
                                  "embed_scale": scale_bf16})


# 3. multimodal checkpoint names (model.language_model.*) from Gemma3ForConditionalGeneration
def g3_multimodal():
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig
    src = Gemma3ForCausalLM.from_pretrained(os.path.join(OUT, "g3_gqa"), attn_implementation="eager")
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8)
    cfg = Gemma3Config(text_config=src.config.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4)
    mm = Gemma3ForConditionalGeneration(cfg)
    sd = {}
    for k, v in src.state_dict().items():
        sd[k.replace("model.", "model.language_model.", 1) if k.startswith("model.") else k] = v
    missing, unexpected = mm.load_state_dict(sd, strict=False)
    print("multimodal load: missing (vision etc.)", len(missing), "unexpected", unexpected, flush=True)
    write("g3_multimodal", mm, None, {"ref": "g3_gqa", "covers": "Gemma3ForConditionalGeneration names"})


# 4. Gemma 4 dense text: K == V on full layers, global head_dim != sliding head_dim, own kv heads on
#    full layers, proportional RoPE, layer_scalar, final softcap.
def g4(name, k_eq_v):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig
    cfg = Gemma4TextConfig(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
                           num_global_key_value_heads=1, attention_k_eq_v=k_eq_v, sliding_window=6,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                           final_logit_softcapping=5.0, hidden_size_per_layer_input=0, num_kv_shared_layers=0,
                           max_position_embeddings=512, attn_implementation="eager",
                           rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                                            "full_attention": {"rope_type": "proportional",
                                                               "partial_rotary_factor": 0.25, "rope_theta": 1e6}})
    print(name, "config", cfg.to_dict(), flush=True)
    model = Gemma4ForCausalLM(cfg)
    print(name, "params", [(n, tuple(p.shape)) for n, p in model.named_parameters()], flush=True)
    randomize(model, gen)
    tokens = torch.randint(0, cfg.vocab_size, (2, 20), generator=gen)
    refs = reference(model.to(torch.float64), tokens)
    write(name, model.to(torch.float32), refs, {"covers": f"Gemma 4 dense, attention_k_eq_v={k_eq_v}, D=16, Dg=32, "
                                                           "K=2, Kg=1, proportional rope 0.25, softcap 5"})


# 4b. Gemma 4 E2B's extras on a tiny model: per-layer input embeddings (PLE), the last two layers sharing
#     the K/V of the last earlier layer of their type (no k/v projections there), double-wide MLPs on them.
def g4_e2b():
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig
    g = torch.Generator().manual_seed(4242)  # its own generator: independent of the fixtures above
    s, f = "sliding_attention", "full_attention"
    cfg = Gemma4TextConfig(vocab_size=256, hidden_size=64, intermediate_size=48, num_hidden_layers=6,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
                           attention_k_eq_v=False, sliding_window=6, layer_types=[s, f, s, f, s, f],
                           final_logit_softcapping=5.0, hidden_size_per_layer_input=8, vocab_size_per_layer_input=256,
                           num_kv_shared_layers=2, use_double_wide_mlp=True, max_position_embeddings=512,
                           attn_implementation="eager",
                           rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                                            "full_attention": {"rope_type": "proportional",
                                                               "partial_rotary_factor": 0.25, "rope_theta": 1e6}})
    print("g4_e2b config", cfg.to_dict(), flush=True)
    model = Gemma4ForCausalLM(cfg)
    print("g4_e2b params", [(n, tuple(p.shape)) for n, p in model.named_parameters()], flush=True)
    print("g4_e2b buffers", [(n, tuple(b.shape)) for n, b in model.named_buffers()], flush=True)
    randomize(model, g)
    tokens = torch.randint(0, cfg.vocab_size, (2, 20), generator=g)
    refs = reference(model.to(torch.float64), tokens)
    write("g4_e2b", model.to(torch.float32), refs, {"covers": "Gemma 4 E2B extras: per-layer inputs P=8, 2 KV-shared "
                                                            "layers (s and f), double-wide MLP on them; D=16, Dg=32"})


# 5. C-written checkpoints must load in transformers: logits of each directory under test/ref/c_written
def c_written():  # noqa: C901
    base = os.path.join(os.path.dirname(__file__), "c_written")
    if not os.path.isdir(base):
        print("no C-written checkpoints to check", flush=True)
        return
    res = {}
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        # load as a user would (the checkpoint's own dtype), then run in float64 with sqrt(d) as that
        # dtype rounds it -- what transformers computes when it runs the checkpoint as stored
        m = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype="auto")
        emb = m.model.embed_tokens
        scale = float(emb.embed_scale.to(emb.weight.dtype))
        print("C-written", name, "dtype", emb.weight.dtype, "embed_scale", scale, flush=True)
        tokens = torch.tensor(json.load(open(os.path.join(d, "tokens.json"))))
        m = m.to(torch.float64)
        emb.embed_scale.fill_(scale)
        with torch.no_grad():
            out = m(input_ids=tokens, labels=tokens)
        save_ref(os.path.join(OUT, f"c_written_{name}.safetensors"), {"logits": out.logits, "loss": out.loss.reshape(1)})
        res[name] = out.loss.item()
        print("C-written", name, "loads in transformers as", type(m).__name__, "loss", out.loss.item(), flush=True)


run("g3_gqa", g3_gqa)
run("g3_mqa", g3_mqa)
run("g3_multimodal", g3_multimodal)
run("g4_kv", lambda: g4("g4_kv", False))
run("g4_keqv", lambda: g4("g4_keqv", True))
run("g4_e2b", g4_e2b)
run("c_written", c_written)
print("done", flush=True)

#!/usr/bin/env python3
# hip/dev/torch_bench.py — the PyTorch side of the GPU benchmark (run beside hip/build/bench in the same
# machine session): transformers' Gemma3ForCausalLM with random weights, fp32 parameters, bf16 autocast,
# fused AdamW (betas 0.9/0.95, weight decay 0.1), gradient clipping at 1.0, B·T tokens per step — the same
# step hip/bench.c times. Eager and torch.compile. Prints one line per step and a summary per variant:
# median tok/s and peak memory (torch.cuda.max_memory_allocated, and reserved). --ckpt 1: transformers'
# gradient checkpointing (each decoder layer's input kept, the layer run again in the backward).
#   python3 hip/dev/torch_bench.py [--model 270m,1b,4b,7b,12b] [--mode eager,compile] [--ckpt 0|1] [--batch 8]
#                                  [--seq 2048] [--steps 8] [--warmup 3]
import argparse
import statistics
import time

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

SMALL = dict(vocab_size=262144, num_attention_heads=4, num_key_value_heads=1, sliding_window=512)
LARGE = dict(vocab_size=262208, sliding_window=1024, max_position_embeddings=131072,
             rope_scaling={"rope_type": "linear", "factor": 8.0})
SHAPES = {  # the Gemma 3 shapes of hip/bench.c (published configs; 7b: the scale-up between the 4B and the 12B)
    "270m": dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, **SMALL),
    "1b": dict(hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, **SMALL),
    "4b": dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
               num_key_value_heads=4, **LARGE),
    "7b": dict(hidden_size=3072, intermediate_size=12288, num_hidden_layers=44, num_attention_heads=12,
               num_key_value_heads=6, **LARGE),
    "12b": dict(hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
                num_key_value_heads=8, **LARGE),
}


def run(name, mode, B, T, steps, warmup, ckpt):
    s = {"max_position_embeddings": 32768, **SHAPES[name]}
    L = s["num_hidden_layers"]
    cfg = Gemma3TextConfig(head_dim=256, query_pre_attn_scalar=256,
                           layer_types=["full_attention" if (l + 1) % 6 == 0 else "sliding_attention" for l in range(L)],
                           final_logit_softcapping=None, attn_logit_softcapping=None, **s)
    torch.manual_seed(0)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):  # initialised on the card: a 12B in fp32 would take minutes on the host
        model = Gemma3ForCausalLM(cfg).train()
    if ckpt:
        model.gradient_checkpointing_enable()
        mode += "-ckpt"
    nparam = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    print(f"torch {torch.__version__} | {torch.cuda.get_device_name()} | model {name} ({nparam / 1e6:.1f}M) | "
          f"{mode} | attn {model.config._attn_implementation} | B={B} T={T}", flush=True)
    times = []
    for i in range(warmup + steps):
        x = torch.randint(0, cfg.vocab_size, (B, T), device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(input_ids=x, labels=x).loss  # labels are shifted inside: next-token loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        print(f"torch {mode} step {i + 1}/{warmup + steps} | loss {lv:.4f} | {dt * 1e3:.1f} ms | {B * T / dt:.0f} tok/s"
              f"{' (warm-up)' if i < warmup else ''}", flush=True)
    med = statistics.median(times)
    print(f"summary torch-{mode} | model {name} | B={B} T={T} | median step {med * 1e3:.1f} ms | {B * T / med:.0f} tok/s | "
          f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB | peak reserved "
          f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB", flush=True)
    del model, opt, fwd
    torch._dynamo.reset()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="270m,1b")
    ap.add_argument("--mode", default="eager,compile")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ckpt", type=int, default=0, choices=[0, 1])
    a = ap.parse_args()
    for name in a.model.split(","):
        for mode in a.mode.split(","):
            try:
                run(name, mode, a.batch, a.seq, a.steps, a.warmup, a.ckpt)
            except torch.OutOfMemoryError as e:
                print(f"summary torch-{mode}{'-ckpt' if a.ckpt else ''} | model {name} | B={a.batch} T={a.seq} | out of "
                      f"memory: {str(e)[:120]}", flush=True)
                torch.cuda.empty_cache()

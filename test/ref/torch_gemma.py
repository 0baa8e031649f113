#!/usr/bin/env python3
"""A minimal, faithful PyTorch Gemma 3 (text) for the CPU benchmark and for quick local checks.

It is NOT the reference the tests trust (fixtures come from transformers, test/ref/make_fixtures.py);
it exists so `make bench` can time PyTorch on the same model and the same system BLAS (Debian's
python3-torch), next to our C. Math as transformers' modeling_gemma3.py; for torch >= 1.13 (no fused attention).

  python3 test/ref/torch_gemma.py bench --config S|M|G|270M [--steps N]   training-step throughput
  python3 test/ref/torch_gemma.py check DIR TOKENS.json            logits/loss/grads of an HF dir (float64)
"""
import json, math, os, struct, sys, time

import numpy as np
import torch
import torch.nn.functional as Fn


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = data[b:e]
        if v["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        elif v["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] == "I32":
            a = np.frombuffer(raw, dtype=np.int32)
        else:
            raise ValueError(v["dtype"])
        out[k] = torch.from_numpy(a.copy().reshape(v["shape"]))
    return out


class Gemma3(torch.nn.Module):
    def __init__(self, V, d, L, H, K, D, F, window, full, qscalar=None, eps=1e-6, theta_local=1e4, theta_global=1e6,
                 rope_scale=1.0, softcap=0.0):
        super().__init__()
        self.V, self.d, self.L, self.H, self.K, self.D, self.F = V, d, L, H, K, D, F
        self.window, self.full, self.eps, self.softcap = window, full, eps, softcap
        self.scale = (qscalar or D) ** -0.5
        P = torch.nn.Parameter
        z = lambda *s: P(torch.zeros(*s))
        self.embed = P(torch.randn(V, d) * 0.02)
        self.layers = torch.nn.ModuleList()
        for l in range(L):
            m = torch.nn.Module()
            m.in_norm, m.q_norm, m.k_norm = z(d), z(D), z(D)
            m.post_attn, m.pre_ffn, m.post_ffn = z(d), z(d), z(d)
            m.wq, m.wk, m.wv = P(torch.randn(H * D, d) * .02), P(torch.randn(K * D, d) * .02), P(torch.randn(K * D, d) * .02)
            m.wo = P(torch.randn(d, H * D) * .02)
            m.wg, m.wu, m.wd = P(torch.randn(F, d) * .02), P(torch.randn(F, d) * .02), P(torch.randn(d, F) * .02)
            self.layers.append(m)
        self.final_norm = z(d)
        inv = lambda theta, s: 1.0 / (theta ** (torch.arange(0, D, 2).float() / D)) / s
        self.inv_local, self.inv_global = inv(theta_local, 1.0), inv(theta_global, rope_scale)

    def norm(self, x, w):
        xf = x.float() if x.dtype != torch.float64 else x
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + w)).to(x.dtype)

    def rope(self, x, inv):
        T = x.shape[1]
        ang = torch.arange(T).float()[:, None] * inv[None, :]
        emb = torch.cat([ang, ang], -1)
        cos, sin = emb.cos().to(x.dtype)[None, :, None], emb.sin().to(x.dtype)[None, :, None]
        x1, x2 = x[..., : self.D // 2], x[..., self.D // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def forward(self, tok, tgt=None):
        B, T = tok.shape
        x = self.embed[tok] * torch.tensor(math.sqrt(self.d), dtype=self.embed.dtype)
        i = torch.arange(T)
        causal = i[None, :] <= i[:, None]
        sliding = causal & (i[:, None] - i[None, :] < self.window)
        for l, m in enumerate(self.layers):
            a = self.norm(x, m.in_norm)
            q = (a @ m.wq.t()).view(B, T, self.H, self.D)
            k = (a @ m.wk.t()).view(B, T, self.K, self.D)
            v = (a @ m.wv.t()).view(B, T, self.K, self.D)
            q, k = self.norm(q, m.q_norm), self.norm(k, m.k_norm)
            inv = self.inv_global if self.full[l] else self.inv_local
            q, k = self.rope(q, inv), self.rope(k, inv)
            G = self.H // self.K
            k = k.repeat_interleave(G, dim=2)
            v = v.repeat_interleave(G, dim=2)
            s = torch.einsum("bthd,bshd->bhts", q, k) * self.scale
            s = s.masked_fill(~(causal if self.full[l] else sliding), float("-inf"))
            att = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, self.H * self.D)
            x = x + self.norm(att @ m.wo.t(), m.post_attn)
            h = self.norm(x, m.pre_ffn)
            h = Fn.gelu(h @ m.wg.t(), approximate="tanh") * (h @ m.wu.t())
            x = x + self.norm(h @ m.wd.t(), m.post_ffn)
        logits = self.norm(x, self.final_norm) @ self.embed.t()
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        loss = None if tgt is None else Fn.cross_entropy(logits.view(-1, self.V).float(), tgt.reshape(-1),
                                                         ignore_index=-1)
        return logits, loss


CONFIGS = {  # the benchmark shapes (test/bench_model.c has the same table)
    "S": dict(V=260, d=256, L=6, H=4, K=1, D=64, F=1024, window=64, T=256, B=8),
    "M": dict(V=260, d=512, L=12, H=8, K=2, D=64, F=2048, window=128, T=256, B=4),
    "G": dict(V=262144, d=128, L=6, H=4, K=2, D=32, F=384, window=512, T=256, B=8),  # Gemma's vocabulary
    "270M": dict(V=262144, d=640, L=18, H=4, K=1, D=256, F=2048, window=512, T=256, B=4),  # Gemma 3 270M
}


def bench(name, steps):
    c = dict(CONFIGS[name])
    T, B = c.pop("T"), c.pop("B")
    full = [(l + 1) % 6 == 0 for l in range(c["L"])]
    torch.manual_seed(0)
    model = Gemma3(full=full, **c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tok = torch.randint(0, c["V"], (B, T + 1))
    times = []
    for s in range(steps + 2):
        t0 = time.time()
        opt.zero_grad()
        _, loss = model(tok[:, :-1], tok[:, 1:])
        loss.backward()
        opt.step()
        times.append(time.time() - t0)
    dt = sorted(times[2:])[len(times[2:]) // 2]
    print(f"torch {torch.__version__} config {name}: {B*T/dt:.0f} tok/s (median step {dt*1000:.1f} ms, "
          f"{torch.get_num_threads()} threads)")


def from_hf(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg = cfg.get("text_config", cfg)
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    L = cfg["num_hidden_layers"]
    if "layer_types" in cfg:
        full = [t == "full_attention" for t in cfg["layer_types"]]
    else:
        full = [(l + 1) % cfg.get("sliding_window_pattern", 6) == 0 for l in range(L)]
    rp = cfg.get("rope_parameters") or {}
    fa, sa = rp.get("full_attention", {}), rp.get("sliding_attention", {})
    m = Gemma3(V=cfg["vocab_size"], d=cfg["hidden_size"], L=L, H=cfg["num_attention_heads"],
               K=cfg["num_key_value_heads"], D=cfg["head_dim"], F=cfg["intermediate_size"],
               window=cfg["sliding_window"], full=full, qscalar=cfg.get("query_pre_attn_scalar"),
               eps=cfg.get("rms_norm_eps", 1e-6), theta_local=sa.get("rope_theta", cfg.get("rope_local_base_freq", 1e4)),
               theta_global=fa.get("rope_theta", cfg.get("rope_theta", 1e6)),
               rope_scale=fa.get("factor", 1.0) if fa.get("rope_type") == "linear" else 1.0,
               softcap=cfg.get("final_logit_softcapping") or 0.0)
    names = {"in_norm": "input_layernorm", "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
             "post_attn": "post_attention_layernorm", "pre_ffn": "pre_feedforward_layernorm",
             "post_ffn": "post_feedforward_layernorm", "wq": "self_attn.q_proj", "wk": "self_attn.k_proj",
             "wv": "self_attn.v_proj", "wo": "self_attn.o_proj", "wg": "mlp.gate_proj", "wu": "mlp.up_proj",
             "wd": "mlp.down_proj"}
    with torch.no_grad():
        m.embed.copy_(w["model.embed_tokens.weight"])
        m.final_norm.copy_(w["model.norm.weight"])
        for l, layer in enumerate(m.layers):
            for ours, hf in names.items():
                getattr(layer, ours).copy_(w[f"model.layers.{l}.{hf}.weight"])
    return m, names


if __name__ == "__main__":
    if sys.argv[1] == "bench":
        name = sys.argv[sys.argv.index("--config") + 1] if "--config" in sys.argv else "S"
        steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 5
        bench(name, steps)
    elif sys.argv[1] == "fixture":  # local debugging only: a fixture-format ref from THIS model
        sys.path.insert(0, os.path.dirname(__file__))
        m, names = from_hf(sys.argv[2])
        m = m.double()
        tok = torch.tensor(json.load(open(os.path.join(sys.argv[2], "tokens.json"))))
        tgt = torch.cat([tok[:, 1:], torch.full((tok.shape[0], 1), -1)], 1)
        logits, loss = m(tok, tgt)
        loss.backward()
        refs = {"tokens": tok, "logits": logits, "loss": loss.reshape(1),
                "grad.model.embed_tokens.weight": m.embed.grad, "grad.model.norm.weight": m.final_norm.grad}
        for l, layer in enumerate(m.layers):
            for ours, hf in names.items():
                refs[f"grad.model.layers.{l}.{hf}.weight"] = getattr(layer, ours).grad
        header, blobs, off = {}, [], 0
        for k, t in refs.items():
            t = t.detach().contiguous()
            t, dt = (t.float(), "F32") if t.is_floating_point() else (t.int(), "I32")
            b = t.numpy().tobytes()
            header[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b); off += len(b)
        h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
        with open(os.path.join(sys.argv[2], "ref.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]
        print("loss", loss.item())
    elif sys.argv[1] == "check":
        m, names = from_hf(sys.argv[2])
        m = m.double()
        tok = torch.tensor(json.load(open(sys.argv[3])))
        tgt = torch.cat([tok[:, 1:], torch.full((tok.shape[0], 1), -1)], 1)
        logits, loss = m(tok, tgt)
        loss.backward()
        print("loss", loss.item())
        print("logits[0,0,:4]", logits[0, 0, :4].tolist())
        print("grad embed[0,:4]", m.embed.grad[tok[0, 0]][:4].tolist())
        print("grad L0 wq[0,:4]", m.layers[0].wq.grad[0, :4].tolist())
        print("grad L0 q_norm[:4]", m.layers[0].q_norm.grad[:4].tolist())
        print("grad final_norm[:4]", m.final_norm.grad[:4].tolist())

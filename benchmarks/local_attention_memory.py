"""Peak memory and step time of one stage-1 SASA layer of sasa_r50: one-unfold, offset loop, bands.

Shape: 64 -> 64 channels, 56x56, span 7, 8 heads, forward+backward, CPU. Each variant runs in its
own subprocess; its peak is ``ru_maxrss`` after the steps minus ``ru_maxrss`` once the input and
module exist (torch's own footprint removed). Step time: median of ``--steps`` steps after one
warm-up. Variants: ``unfold`` (``chunk_rows=0``), ``shifted`` (auto: the offset loop past
``CHUNK_BYTES``), ``banded`` (bands of 5 rows). The whole set runs ``--rounds`` times,
interleaved, and the ratios are per-round then medians (the machine is shared and noisy).
Also compares PyTorch's ``scaled_dot_product_attention`` with a band mask (every pixel against
every pixel, neighbourhood masked) at a small shape; ``local_attention_peers.py`` does it fully.

    python benchmarks/local_attention_memory.py [--batch 8] [--steps 3] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sdpa_band(x: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
    """SASA (content term only, no relative positions) as masked dense attention."""
    n, _, hh, ww = x.shape
    heads, span = m.heads, m.span
    q, k, v = (
        F.conv2d(x, t[:, :, None, None]).reshape(n, heads, -1, hh * ww).transpose(2, 3) for t in (m.wq, m.wk, m.wv)
    )
    i = torch.arange(hh).repeat_interleave(ww)
    j = torch.arange(ww).repeat(hh)
    band = ((i[:, None] - i[None]).abs() <= span // 2) & ((j[:, None] - j[None]).abs() <= span // 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=band, scale=1.0)
    return out.transpose(2, 3).reshape(n, -1, hh, ww)


def child(variant: str, batch: int, size: int, channels: int, steps: int, threads: int) -> None:
    from trionet_dsl.nn.ops import LocalAttention2d

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    chunk = {"unfold": 0, "shifted": None, "banded": 5, "sdpa": 0}[variant]
    m = LocalAttention2d(channels, channels, 8, 7, chunk_rows=chunk)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    fn = (lambda: sdpa_band(x, m)) if variant == "sdpa" else (lambda: m(x))
    base = _maxrss_mb()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - t0)
        x.grad = None
        m.zero_grad(set_to_none=True)
    print(json.dumps({"ms": 1000 * statistics.median(times[1:]), "peak_mb": _maxrss_mb() - base}))


def run(variant: str, batch: int, size: int, channels: int, steps: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", variant, "--batch", str(batch), "--size", str(size)]
    cmd += ["--channels", str(channels), "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.batch, a.size, a.channels, a.steps, a.threads)
        return
    print(f"stage-1 SASA layer, batch {a.batch}, {a.size}x{a.size}, {a.channels} ch, span 7, 8 heads, fwd+bwd")
    variants = ("unfold", "shifted", "banded")
    rounds = [{v: run(v, a.batch, a.size, a.channels, a.steps, a.threads) for v in variants} for _ in range(a.rounds)]
    for i, res in enumerate(rounds):
        cells = "  ".join(f"{v} {r['ms']:7.0f} ms {r['peak_mb']:6.0f} MB" for v, r in res.items())
        print(f"round {i + 1}: {cells}")
    for v in variants[1:]:
        t = statistics.median(r[v]["ms"] / r["unfold"]["ms"] for r in rounds)
        p = statistics.median(r[v]["peak_mb"] / r["unfold"]["peak_mb"] for r in rounds)
        print(f"{v}/unfold (median of {a.rounds} rounds): time {t:.2f}  peak {p:.2f}")
    print("small shape (batch 2, 16x16, 32 ch): SASA unfold vs SDPA with a band mask")
    small = {v: run(v, 2, 16, 32, 20, a.threads) for v in ("unfold", "sdpa")}
    for v, r in small.items():
        print(f"{v:8} {r['ms']:9.1f} ms  peak {r['peak_mb']:7.1f} MB")


if __name__ == "__main__":
    main()

"""Our local attention (one-unfold and offset-loop paths) against outside formulations, same shapes.

Peers: (b) a straightforward ``F.unfold`` SASA as Ramachandran et al. 2019 describe it (keys of the
K x K neighbourhood plus a relative embedding ``r_{a-i,b-j}`` = concat(row half, column half),
logits ``q . (k + r)``, softmax, weighted sum of values; our own code, written from the paper) and
(c) PyTorch's ``scaled_dot_product_attention`` over all HW x HW pairs with the neighbourhood as
a mask and the relative term as an additive bias (dense: its logits grow as (HW)^2). (a) NATTEN is
not compared: ``pip download --no-deps --only-binary=:all: natten`` finds no wheel for this set-up
(it builds only from source), see README.

All peers share one module's weights; the max abs difference of each output against our unfold
path is printed. Each variant runs in its own subprocess (peak = ``ru_maxrss`` growth after
set-up; the output check too runs in a subprocess, since a forked child inherits its parent's
``ru_maxrss``); rounds are interleaved and ratios are medians over rounds.

    python benchmarks/local_attention_peers.py [--rounds 3] [--steps 3] [--threads 2] [--batch 2]
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

from trionet_dsl.nn.ops import LocalAttention2d

VARIANTS = ("ours_unfold", "ours_shifted", "sasa_unfold", "sdpa_band")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _qkv(x: torch.Tensor, m: LocalAttention2d) -> tuple[torch.Tensor, ...]:
    return tuple(F.conv2d(x, t[:, :, None, None]) for t in (m.wq, m.wk, m.wv))


def _rel_table(m: LocalAttention2d) -> torch.Tensor:
    """r[h, :, a, b] = concat(rel_row[h, :, a], rel_col[h, :, b]): (h, d, K, K)."""
    k = m.span
    row = m.rel_row[:, :, :, None].expand(-1, -1, k, k)
    col = m.rel_col[:, :, None, :].expand(-1, -1, k, k)
    return torch.cat([row, col], 1)


def sasa_unfold(x: torch.Tensor, m: LocalAttention2d) -> torch.Tensor:
    """SASA as the paper writes it: y_ij = sum_ab softmax_ab(q_ij . (k_ab + r_{a-i,b-j})) v_ab."""
    n, _, hh, ww = x.shape
    heads, k = m.heads, m.span
    q, key, val = _qkv(x, m)
    d = q.shape[1] // heads
    q = q.reshape(n, heads, d, 1, hh * ww)
    key = F.unfold(key, k, padding=k // 2).reshape(n, heads, d, k * k, hh * ww)
    val = F.unfold(val, k, padding=k // 2).reshape(n, heads, d, k * k, hh * ww)
    r = _rel_table(m).reshape(1, heads, d, k * k, 1)
    logits = (q * (key + r)).sum(2)
    inside = F.unfold(torch.ones(1, 1, hh, ww), k, padding=k // 2).reshape(1, 1, k * k, hh * ww) > 0.5
    attn = logits.masked_fill(~inside, float("-inf")).softmax(2)
    return (attn[:, :, None] * val).sum(3).reshape(n, heads * d, hh, ww)


def sdpa_band(x: torch.Tensor, m: LocalAttention2d) -> torch.Tensor:
    """Dense attention over all pixel pairs: band mask (-inf) plus the relative logits as a bias."""
    n, _, hh, ww = x.shape
    heads, pad = m.heads, m.span // 2
    q, key, val = (t.reshape(n, heads, -1, hh * ww) for t in _qkv(x, m))
    dr = m.rel_row.shape[1]
    i = torch.arange(hh).repeat_interleave(ww)
    j = torch.arange(ww).repeat(hh)
    di, dj = i[None] - i[:, None], j[None] - j[:, None]  # (query, key) offsets
    band = (di.abs() <= pad) & (dj.abs() <= pad)
    row = torch.einsum("nhdl,hda->nhla", q[:, :, :dr], m.rel_row)  # (N, h, L, K)
    col = torch.einsum("nhdl,hdb->nhlb", q[:, :, dr:], m.rel_col)
    idx_r = (di.clamp(-pad, pad) + pad).expand(n, heads, -1, -1)
    idx_c = (dj.clamp(-pad, pad) + pad).expand(n, heads, -1, -1)
    bias = (row.gather(3, idx_r) + col.gather(3, idx_c)).masked_fill(~band, float("-inf"))
    qt, kt, vt = (t.transpose(2, 3) for t in (q, key, val))
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=1.0)
    return out.transpose(2, 3).reshape(n, -1, hh, ww)


def _module(channels: int) -> LocalAttention2d:
    torch.manual_seed(0)
    return LocalAttention2d(channels, channels, 8, 7, chunk_rows=0)


def _fn(variant: str, m: LocalAttention2d, x: torch.Tensor) -> torch.Tensor:
    if variant == "ours_unfold":
        m.chunk_rows = 0
        return m(x)
    if variant == "ours_shifted":
        m.chunk_rows = -1
        return m(x)
    return {"sasa_unfold": sasa_unfold, "sdpa_band": sdpa_band}[variant](x, m)


def child(variant: str, batch: int, size: int, channels: int, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    m = _module(channels)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    base = _maxrss_mb()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        _fn(variant, m, x).sum().backward()
        times.append(time.perf_counter() - t0)
        x.grad = None
        m.zero_grad(set_to_none=True)
    print(json.dumps({"ms": 1000 * statistics.median(times[1:]), "peak_mb": _maxrss_mb() - base}))


def max_diffs(batch: int, size: int, channels: int) -> dict[str, float]:
    """Max abs difference of every variant's output against ours_unfold (one image batch)."""
    m = _module(channels)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _fn("ours_unfold", m, x)
        return {v: (_fn(v, m, x) - ref).abs().max().item() for v in VARIANTS}


def run(variant: str, batch: int, size: int, channels: int, steps: int, threads: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", variant, "--batch", str(batch), "--size", str(size)]
    cmd += ["--channels", str(channels), "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def compare(batch: int, size: int, channels: int, steps: int, threads: int, rounds: int) -> None:
    print(f"\nbatch {batch}, {size}x{size}, {channels} ch, span 7, 8 heads, fwd+bwd, {threads} threads")
    diffs = run("diffs", 1, size, channels, steps, threads)
    res = [{v: run(v, batch, size, channels, steps, threads) for v in VARIANTS} for _ in range(rounds)]
    print(f"{'variant':14} {'max|diff|':>10} {'ms (runs)':>28} {'peak MB':>9} {'time/ours':>10} {'peak/ours':>10}")
    for v in VARIANTS:
        ms = " ".join(f"{r[v]['ms']:.0f}" for r in res)
        t = statistics.median(r[v]["ms"] / r["ours_unfold"]["ms"] for r in res)
        p = statistics.median(r[v]["peak_mb"] / max(r["ours_unfold"]["peak_mb"], 1e-9) for r in res)
        peak = statistics.median(r[v]["peak_mb"] for r in res)
        print(f"{v:14} {diffs[v]:10.1e} {ms:>28} {peak:9.0f} {t:10.2f} {p:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2, help="batch of the stage-1 shape")
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child == "diffs":  # in a subprocess: the parent's peak RSS would pass to every child it forks
        print(json.dumps(max_diffs(a.batch, a.size, a.channels)))
        return
    if a.child:
        child(a.child, a.batch, a.size, a.channels, a.steps, a.threads)
        return
    print("ratios: median over interleaved rounds, against ours_unfold (chunk_rows=0)")
    compare(2, 16, 32, 10, a.threads, a.rounds)
    compare(a.batch, a.size, a.channels, a.steps, a.threads, a.rounds)


if __name__ == "__main__":
    main()

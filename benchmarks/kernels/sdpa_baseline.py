#!/usr/bin/env python3
"""PyTorch SDPA baselines for the kernels_bench attention shapes (run on the same device).

prefill: bf16 causal, d=128, 32 q / 8 kv heads, seq 1k..16k, single sequence and a batch of
16k tokens, FLASH_ATTENTION and CUDNN_ATTENTION backends, TFLOP/s = 4*S^2*D*H/2 per sequence.
decode: one query token against a contiguous KV of length ctx (SDPA has no paged layout), bytes/s
counted like kernels_bench (K+V+q+out).
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

H, HKV, D = 32, 8, 128


def timeit(fn, iters):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def sdpa_gqa(q, k, v, causal):
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    except (TypeError, RuntimeError):
        g = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), is_causal=causal)


def prefill():
    print("## SDPA prefill (bf16, causal, d=128, 32/8 heads)")
    print(f"{'backend':>8} {'seqs':>5} {'seqlen':>6} {'ms':>9} {'TFLOP/s':>8}")
    for backend, name in ((SDPBackend.FLASH_ATTENTION, "flash"), (SDPBackend.CUDNN_ATTENTION, "cudnn")):
        for batch_mode in (0, 1):
            for s in (1024, 2048, 4096, 8192, 16384):
                b = 16384 // s if batch_mode else 1
                if batch_mode and b == 1:
                    continue
                q = torch.randn(b, H, s, D, device="cuda", dtype=torch.bfloat16)
                k = torch.randn(b, HKV, s, D, device="cuda", dtype=torch.bfloat16)
                v = torch.randn_like(k)
                flops = b * 4.0 * s * s * D * H / 2
                try:
                    with sdpa_kernel(backend):
                        ms = timeit(lambda: sdpa_gqa(q, k, v, True), max(3, min(100, int(2e13 / flops))))
                    print(f"{name:>8} {b:5d} {s:6d} {ms:9.3f} {flops / ms / 1e9:8.1f}")
                except RuntimeError as e:
                    print(f"{name:>8} {b:5d} {s:6d} unavailable: {str(e).splitlines()[0][:80]}")
                del q, k, v
                torch.cuda.empty_cache()


def decode():
    print("\n## SDPA decode (bf16, d=128, 32/8 heads, contiguous KV, one query token)")
    print(f"{'batch':>6} {'ctx':>6} {'us':>9} {'GB/s':>8}")
    for b in (1, 8, 32, 64, 128, 256):
        for ctx in (512, 2048, 8192, 32768):
            kv_bytes = b * ctx * HKV * D * 2 * 2
            if kv_bytes > 40 * 2**30:
                continue
            q = torch.randn(b, H, 1, D, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(b, HKV, ctx, D, device="cuda", dtype=torch.bfloat16)
            v = torch.randn_like(k)
            try:
                ms = timeit(lambda: sdpa_gqa(q, k, v, False), max(5, min(200, int(2e10 / kv_bytes))))
                print(f"{b:6d} {ctx:6d} {ms * 1e3:9.1f} {(kv_bytes + 2 * q.numel() * 2) / ms / 1e6:8.1f}")
            except RuntimeError as e:
                print(f"{b:6d} {ctx:6d} unavailable: {str(e).splitlines()[0][:80]}")
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("sdpa_baseline: no CUDA device")
        sys.exit(0)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name()}")
    prefill()
    decode()

"""The CUDA path at the paper's sizes, or ``--tiny`` on any device (CPU in the test suite).

    python benchmarks/gpu_check.py [--tiny] [--device cuda] [--out gpu_check.json]

Measures, on one device: spherical k-means (N x D, K clusters, 10 iterations: seconds, and the share of
the bare matmul rate of the same shape on the same device); one ``kmeans-repr`` draw for 256 anchors;
SimCLR ECAPA-TDNN (C = 1024) at batch 256 and DINO at batch 128, each in float32 and bf16 autocast
(utt/s of a full optimizer step, peak memory); the SSPS queues' memory at N = 1,092,009.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _matmul import matmul_gflops  # noqa: E402

from ssps.config import SSPSConfig, load_config  # noqa: E402
from ssps.methods import build_method  # noqa: E402
from ssps.sampling.kmeans import spherical_kmeans  # noqa: E402
from ssps.sampling.ssps import SSPSSampler  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "voxceleb"


@dataclass(frozen=True)
class Sizes:
    n: int = 1_092_009  # VoxCeleb2 dev utterances
    dim: int = 512
    k: int = 25_000
    iterations: int = 10
    queue: int = 25_000
    anchors: int = 256
    channels: int = 1024  # ECAPA-TDNN width
    simclr_batch: int = 256
    dino_batch: int = 128
    head_out: int = 65_536
    seconds: float = 1.0  # crop-length scale: 1.0 = the configs' 2 s (SimCLR) and 4 s + 2 s (DINO)
    steps: int = 5


TINY = Sizes(2_000, 32, 20, 2, 500, 16, 16, 4, 2, 128, 0.25, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def check_kmeans(s: Sizes, device: torch.device) -> dict:
    x = F.normalize(torch.randn(s.n, s.dim, device=device), dim=1)
    sync(device)
    t0 = time.perf_counter()
    res = spherical_kmeans(x, s.k, iterations=s.iterations, seed=0, device=device)
    sync(device)
    seconds = time.perf_counter() - t0
    rate = 2.0 * s.n * s.k * s.dim * s.iterations / seconds / 1e9
    bare = matmul_gflops(min(s.n, 65_536), s.dim, s.k, device=device, clock="wall")
    used = int((torch.bincount(res.assignments, minlength=s.k) > 0).sum())
    return {
        "seconds": seconds,
        "gflops": rate,
        "matmul_gflops": bare,
        "share": rate / bare,
        "non_empty": used,
    }


def check_draw(s: Sizes, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    cfg = SSPSConfig(num_clusters=s.k, positive_queue_size=s.queue, nearest_clusters=1)
    sampler = SSPSSampler(cfg, s.n, s.dim, (s.dim,)).to(device)
    sampler.assignments.copy_(torch.randint(s.k, (s.n,), generator=g))
    sampler.centroids = F.normalize(torch.randn(s.k, s.dim, generator=g), dim=1).to(device)
    sampler.neighbours = ((torch.arange(s.k) + torch.randint(1, s.k, (s.k,), generator=g)) % s.k)[:, None].to(
        device
    )
    sampler.write_positive(
        torch.randint(s.n, (s.queue,), generator=g), torch.randn(s.queue, s.dim, generator=g)
    )
    anchors = torch.randint(s.n, (s.anchors,), generator=g).to(device)
    sampler.sample(anchors, step=0)
    sync(device)
    t0 = time.perf_counter()
    res = sampler.sample(anchors, step=1)
    sync(device)
    return {"ms": 1e3 * (time.perf_counter() - t0), "coverage": float(res.found.float().mean())}


def check_training(s: Sizes, device: torch.device, method: str, dtype: str) -> dict:
    batch = s.simclr_batch if method == "simclr" else s.dino_batch
    overrides = [f"encoder.channels={s.channels}", f"method.dino.head_out={s.head_out}"]
    cfg = load_config(CONFIGS / f"{method}_ecapa1024.yaml", overrides)
    model = build_method(cfg).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    sr = cfg.features.sample_rate
    if method == "simclr":
        lengths = [cfg.method.simclr.crop_seconds] * 2
    else:
        d = cfg.method.dino
        lengths = [d.global_seconds] * d.global_crops + [d.local_seconds] * d.local_crops
    views = [torch.randn(batch, int(sec * s.seconds * sr), device=device) for sec in lengths]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with autocast:
            if method == "simclr":
                a, p = model.embed(views)
                loss = model.loss(a, p)
            else:
                g = cfg.method.dino.global_crops
                out = model.student_forward(views[:g], views[g:])
                loss = model.loss(
                    out, model.teacher_forward(views[:g])[0], cfg.method.dino.teacher_temperature
                )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: kernels, allocator
    sync(device)
    t0 = time.perf_counter()
    for _ in range(s.steps):
        step()
    sync(device)
    return {
        "batch": batch,
        "utt_per_s": s.steps * batch / (time.perf_counter() - t0),
        "peak_mib": peak_mib(device),
    }


def queue_memory() -> dict:
    out = {}
    for name, shape in (
        ("simclr_512", (512,)),
        ("dino_logits_2x65536", (2, 65_536)),
        ("dino_2x256", (2, 256)),
    ):
        with torch.device("meta"):  # sizes only: nothing is allocated
            s = SSPSSampler(SSPSConfig(queue_dtype="float16"), 1_092_009, 512, shape)
        out[name] = s.memory_bytes() / 2**20
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes (any device; CPU in the tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the figures as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --tiny --device cpu)")
    s = TINY if args.tiny else Sizes()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results: dict = {"device": name, "torch": torch.__version__, "tiny": args.tiny}
    results["kmeans"] = check_kmeans(s, device)
    k = results["kmeans"]
    print(
        f"k-means {s.n:,} x {s.dim}, K = {s.k:,}, {s.iterations} iterations: {k['seconds']:.2f} s, "
        f"{k['gflops']:.0f} GFLOP/s = {100 * k['share']:.0f} % of the bare matmul ({k['matmul_gflops']:.0f})"
    )
    results["draw"] = check_draw(s, device)
    print(f"kmeans-repr draw, {s.anchors} anchors: {results['draw']['ms']:.2f} ms")
    print("| method | dtype | batch | utt/s | peak MiB |\n|---|---|---|---|---|")
    for method in ("simclr", "dino"):
        for dtype in ("fp32", "bf16"):
            r = check_training(s, device, method, dtype)
            results[f"{method}_{dtype}"] = r
            print(
                f"| {method} ECAPA-TDNN {s.channels} | {dtype} | {r['batch']} | {r['utt_per_s']:.1f} "
                f"| {r['peak_mib']:.0f} |"
            )
    results["queues_mib"] = queue_memory()
    print(
        "SSPS queues at N = 1,092,009 (float16): "
        + ", ".join(f"{k} {v:,.0f} MiB" for k, v in results["queues_mib"].items())
    )
    print(f"device: {name}, torch {torch.__version__}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

"""The demo encoder's convolutions by CPU code path: is there a faster one that keeps the results?

Per frame-level layer of the small TDNN (``configs/simclr.yaml``: 128 channels, 256 crops of 2 s), the
milliseconds of forward and of forward + backward for oneDNN's convolution (what torch uses), the native
kernel (``torch.backends.mkldnn`` off) and im2col + one matmul; then the whole TDNN run as channels-last
``conv2d`` against the shipped model, with the largest difference of the embeddings.

    OMP_NUM_THREADS=1 python benchmarks/bench_conv_paths.py [--batch 256] [--frames 201] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssps.encoders.tdnn import LAYERS, tdnn
from ssps.utils.memory import keep_freed_memory


def timed(fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def im2col_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dilation: int) -> torch.Tensor:
    out_ch, in_ch, k = w.shape
    frames = x.shape[-1] - (k - 1) * dilation
    cols = torch.stack([x[:, :, i * dilation : i * dilation + frames] for i in range(k)], 2)
    return (
        torch.matmul(w.reshape(out_ch, in_ch * k), cols.reshape(x.shape[0], in_ch * k, frames)) + b[:, None]
    )


def conv_paths(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, d: int) -> list:
    """(name, forward function, oneDNN enabled) for each path."""
    return [
        ("oneDNN (torch's)", lambda: F.conv1d(x, w, b, dilation=d), True),
        ("native kernel", lambda: F.conv1d(x, w, b, dilation=d), False),
        ("im2col + matmul", lambda: im2col_conv(x, w, b, d), True),
    ]


def layer_table(batch: int, frames: int, n_mels: int, channels: int, repeats: int) -> None:
    print(
        "| layer (in, out, kernel, dilation) | path | forward ms | forward + backward ms |\n|---|---|---|---|"
    )
    in_ch = n_mels
    for k, d in LAYERS:
        x = torch.randn(batch, in_ch, frames, requires_grad=in_ch != n_mels)  # features need no gradient
        w = torch.randn(channels, in_ch, k, requires_grad=True)
        b = torch.randn(channels, requires_grad=True)
        for name, fn, mkldnn in conv_paths(x, w, b, d):
            with torch.backends.mkldnn.flags(enabled=mkldnn):
                fwd = timed(fn, repeats)
                both = timed(lambda fn=fn: fn().sum().backward(), repeats)
            print(f"| {in_ch}, {channels}, {k}, {d} | {name} | {fwd:.1f} | {both:.1f} |")
        in_ch, frames = channels, frames - (k - 1) * d


def channels_last_forward(model: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """The TDNN's own layers as ``conv2d`` on (B, C, 1, T) tensors in channels-last memory order."""
    h = feats.transpose(1, 2).unsqueeze(2)  # the front end's (B, T, F) is already channels-last
    for layer in model.frames:
        if isinstance(layer, nn.Conv1d):
            h = F.conv2d(h, layer.weight.unsqueeze(2), layer.bias, dilation=(1, layer.dilation[0]))
        elif isinstance(layer, nn.BatchNorm1d):
            h = F.batch_norm(
                h, layer.running_mean, layer.running_var, layer.weight, layer.bias, True, 0.1, layer.eps
            )
        else:
            h = layer(h)
    return model.embed(model.pool_norm(model.pool(h.squeeze(2))))


def model_table(batch: int, frames: int, n_mels: int, channels: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = tdnn(n_mels, 256, channels)
    feats = torch.randn(batch, frames, n_mels)
    state = copy.deepcopy(model.state_dict())

    def step(forward):
        model.zero_grad()
        z = forward(feats)
        z.square().sum().backward()
        return z

    shipped = timed(lambda: step(model), repeats)
    model.load_state_dict(state)
    z_shipped = step(model)
    last = timed(lambda: step(lambda f: channels_last_forward(model, f)), repeats)
    model.load_state_dict(state)
    z_last = step(lambda f: channels_last_forward(model, f))
    diff = (z_shipped - z_last).abs().max().item()
    print(f"\nTDNN forward + backward, {batch} x {frames} frames: shipped (conv1d) {shipped:.0f} ms, "
          f"channels-last conv2d {last:.0f} ms ({1 - last / shipped:+.0%} time saved); "
          f"embeddings bit-equal: {torch.equal(z_shipped, z_last)} (max |diff| {diff:.2g})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="crops per step (2 views of 128)")
    parser.add_argument("--frames", type=int, default=201, help="frames per crop (2 s at 10 ms)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    warnings.filterwarnings("ignore", message="TF32 acceleration")  # printed when oneDNN is toggled
    layer_table(args.batch, args.frames, 40, 128, args.repeats)
    model_table(args.batch, args.frames, 40, 128, args.repeats)


if __name__ == "__main__":
    main()

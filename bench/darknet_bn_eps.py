"""How much BatchNorm's eps changes a darknet network's outputs.

    python bench/darknet_bn_eps.py [--cfg ../shared/reference/darknet/yolov3.cfg] [--size 416]

Imports the cfg (BatchNorm eps 1e-5, darknet's), gives it random weights whose BatchNorm variances
are small, as trained weights' often are (each convolution's kernel scaled down, the running
statistics then set from one batch), saves them as darknet .weights, and loads that file into the
import and into the same spec with eps 0.001 (ultralytics', what `netdsl import` wrote before).
Prints the largest output difference between the two on a random image.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

import netdsl
from netdsl.importers import import_file

ROOT = Path(__file__).resolve().parents[1]


def small_variance_weights(model: nn.Module, size: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                scale = 10 ** (-2 * torch.rand(1, generator=g).item() - 0.5)  # 0.3 .. 0.003
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * scale / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.momentum = 1.0  # one batch's statistics become the running ones
        model.train()
        model(torch.rand(2, 3, size, size, generator=g))
        model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default=str(ROOT.parent / "shared/reference/darknet/yolov3.cfg"))
    ap.add_argument("--size", type=int, default=416)
    args = ap.parse_args()
    spec = import_file(args.cfg) + "\n"
    assert "eps=1e-5" in spec
    darknet = netdsl.build(spec, H=args.size, W=args.size)
    other = netdsl.build(spec.replace("eps=1e-5", "eps=0.001"), H=args.size, W=args.size)
    small_variance_weights(darknet, args.size, 0)
    var = torch.cat([m.running_var for m in darknet.modules() if isinstance(m, nn.BatchNorm2d)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.weights"
        netdsl.save_weights(darknet, path)
        netdsl.load_weights(darknet, path)
        netdsl.load_weights(other, path)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (a, raw_a), (b, raw_b) = darknet.eval()(x), other.eval()(x)
    raw = max((u - v).abs().max().item() for u, v in zip(raw_a, raw_b))
    print(f"{Path(args.cfg).name} at {args.size}x{args.size}: {var.numel()} BatchNorm channels, running variance "
          f"median {var.median().item():.2e}, {(var < 1e-3).float().mean().item():.0%} below 1e-3")
    print(f"raw maps: max |eps 1e-3 - eps 1e-5| = {raw:.4g} (largest |value| {max(r.abs().max().item() for r in raw_a):.4g})")
    print(f"decoded boxes and scores: max difference {(a - b).abs().max().item():.4g}; objectness scores "
          f"{(a[..., 4] - b[..., 4]).abs().max().item():.4g}")


if __name__ == "__main__":
    main()

"""By hand, against ultralytics 8.x itself: `netdsl.yolo_v8_loss` and ultralytics' `v8DetectionLoss`
on the same random raw head outputs and targets give the same box, cls and dfl terms and gradients.

Runs in ultralytics' venv with this checkout on sys.path (netdsl's loss needs only torch):

    YOLO_OFFLINE=1 /path/to/ultralytics-venv/bin/python bench/ultralytics8_loss.py [cases]

ultralytics' loss wants a model; a stand-in gives it what it reads (`args` with the gains, the
last layer's `stride`, `nc`, `reg_max`, and a parameter for the device). Each case draws a batch,
levels of strides 8/16/32 on a 64..160 pixel image, logits of a few units (or of tenths, as a
fresh head gives), and 0..12 boxes per image (none in every fifth case; some tiny, so the
assigner's widening of small boxes runs), then prints the largest relative differences of the
three gained terms and the total, and of the first level's gradient (to its largest value).
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdsl.tasks.detect.loss_v8 import yolo_v8_loss  # noqa: E402


class _Head(torch.nn.Module):
    def __init__(self, nc: int, reg_max: int, strides: list[int]) -> None:
        super().__init__()
        self.nc, self.reg_max = nc, reg_max
        self.stride = torch.tensor(strides, dtype=torch.float32)
        self.w = torch.nn.Parameter(torch.zeros(1))


class _Model(torch.nn.Module):
    def __init__(self, nc: int, reg_max: int, strides: list[int]) -> None:
        super().__init__()
        self.model = torch.nn.ModuleList([_Head(nc, reg_max, strides)])
        self.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)


def case(seed: int) -> tuple[float, float, float, float, float]:
    from ultralytics.utils.loss import v8DetectionLoss

    g = torch.Generator().manual_seed(seed)
    nc = int(torch.randint(1, 6, (1,), generator=g))
    reg_max = 16 if seed % 2 == 0 else 8
    strides = [8, 16, 32]
    size = 32 * int(torch.randint(2, 6, (1,), generator=g))
    batch = int(torch.randint(1, 4, (1,), generator=g))
    scale = 0.1 if seed % 3 == 0 else 3.0  # near a fresh head's outputs, or far from them
    maps = [(torch.randn(batch, 4 * reg_max + nc, size // s, size // s, generator=g) * scale).requires_grad_()
            for s in strides]
    rows = []
    for i in range(batch):
        for _ in range(int(torch.randint(0, 13, (1,), generator=g)) * (seed % 5 != 4)):  # some batches empty
            wh = torch.rand(2, generator=g) * 0.6 + 0.01
            xy = wh / 2 + torch.rand(2, generator=g) * (1 - wh)
            rows.append([i, float(torch.randint(0, nc, (1,), generator=g)), *xy.tolist(), *wh.tolist()])
    targets = torch.tensor(rows, dtype=torch.float32).view(-1, 6)

    ours, items = yolo_v8_loss(maps, targets, strides, nc, reg_max)
    (g_ours,) = torch.autograd.grad(ours.sum(), maps[0])
    crit = v8DetectionLoss(_Model(nc, reg_max, strides))
    preds = {"boxes": torch.cat([m[:, :4 * reg_max].flatten(2) for m in maps], 2),
             "scores": torch.cat([m[:, 4 * reg_max:].flatten(2) for m in maps], 2), "feats": maps}
    batch_d = {"batch_idx": targets[:, 0], "cls": targets[:, 1:2], "bboxes": targets[:, 2:]}
    theirs, _ = crit.loss(preds, batch_d)  # [3] gained terms times the batch size
    (g_theirs,) = torch.autograd.grad(theirs.sum(), maps[0])
    theirs = theirs.detach()
    # relative differences: the cls term runs to thousands when nothing is assigned yet
    diff = ((items - theirs / batch).abs() / (theirs / batch).abs().clamp(min=1e-6)).tolist()
    total = float((ours.detach().sum() - theirs.sum()).abs() / theirs.sum().abs())
    return (*diff, total, float((g_ours - g_theirs).abs().max() / g_theirs.abs().max()))


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    worst = [0.0] * 5
    for seed in range(cases):
        d = case(seed)
        worst = [max(a, b) for a, b in zip(worst, d)]
    names = ("box", "cls", "dfl", "total", "grad")
    print(f"{cases} cases; max |ours - ultralytics| / |ultralytics|: " + ", ".join(f"{n} {w:.3g}" for n, w in zip(names, worst)))


if __name__ == "__main__":
    main()

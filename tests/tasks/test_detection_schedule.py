"""The detection schedule and the validation numbers of the course's
detector, ultralytics/yolov3 v9.6.0.

The expected values are transcriptions of v9.6.0's train.py (warmup, accumulation, step rule,
`one_cycle` / `--linear-lr`), datasets.py (rectangular validation batches), general.py
(multi-label NMS) and val.py / metrics.py (matching, AP, best-F1 precision and recall), or are
derived by hand in the comments; none is read from netdsl's own output.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.tasks.detect.metrics import ap_per_class, compute_ap, evaluate, match_detections, val_scores

TINY = """\
net TinyDet(NCLS = 2)
input x: [3, H = 64, W = 64] where H % 32 == 0, W % 32 == 0
block cba(c, s = 1) = conv(c, 3, stride=s, padding=1, bias=false) -> batchnorm(eps=0.001, momentum=0.03) -> leaky_relu(0.1)
b0 = x |> cba(4, 2)
b1 = b0 |> cba(8, 2)
b2 = b1 |> cba(8, 2)
b3 = b2 |> cba(8, 2)
b4 = b3 |> cba(8, 2)
output = detect(b2, b4, classes=NCLS, strides=[8, 32], anchors=[[8, 8, 16, 16], [16, 16, 24, 24]])
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


def make_folder(root: Path, n_train: int, n_val: int, shape: tuple[int, int] = (64, 64)) -> Path:
    """A YOLO folder of `shape` (h, w) images with one bright square each (class i % 2)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = shape
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            im = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
            s = min(h, w) // 2
            y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            im[y0:y0 + s, x0:x0 + s] = 220
            Image.fromarray(im).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text(
                f"{i % 2} {(x0 + s / 2) / w:.6f} {(y0 + s / 2) / h:.6f} {s / w:.6f} {s / h:.6f}\n")
    return root


# ------------------------------------------------------------------------------------ item 3

def v960_schedule(nb: int, epochs: int, batch: int, hyp: dict[str, float], linear: bool) -> list[dict]:
    """Per iteration, what v9.6.0's train.py uses: group lrs (bn, weights, biases), momentum,
    accumulate, and whether the optimizer steps. Transcribed from train.py: nw = max(round(
    warmup_epochs * nb), 1000); while ni <= nw, accumulate = max(1, round(interp(ni, [0, nw],
    [1, 64 / batch]))), lr_j = interp(ni, [0, nw], [warmup_bias_lr if j == 2 else 0, lr0 * lf(epoch)]),
    momentum = interp(ni, [0, nw], [warmup_momentum, momentum]); a step when ni - last_opt_step
    >= accumulate (last_opt_step starts at -1); after each epoch lr = lr0 * lf(epoch + 1)."""
    lrf, lr0 = hyp["lrf"], hyp["lr0"]
    if linear:
        def lf(x: float) -> float:
            return (1 - x / (epochs - 1)) * (1.0 - lrf) + lrf
    else:
        def lf(x: float) -> float:
            return ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    nw = max(round(hyp["warmup_epochs"] * nb), 1000)
    accumulate = max(round(64 / batch), 1)
    lrs, momentum = [lr0 * lf(0)] * 3, hyp["momentum"]
    last, rows = -1, []
    for epoch in range(epochs):
        for i in range(nb):
            ni = i + nb * epoch
            if ni <= nw:
                xi = [0, nw]
                accumulate = max(1, np.interp(ni, xi, [1, 64 / batch]).round())
                lrs = [np.interp(ni, xi, [hyp["warmup_bias_lr"] if j == 2 else 0.0, lr0 * lf(epoch)])
                       for j in range(3)]
                momentum = np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]])
            step = ni - last >= accumulate
            if step:
                last = ni
            rows.append({"ni": ni, "lrs": list(lrs), "momentum": float(momentum), "accumulate": int(accumulate),
                         "step": step})
        lrs = [lr0 * lf(epoch + 1)] * 3
    return rows


def test_schedule_is_v960_per_iteration(tmp_path: Path) -> None:
    """1040 iterations (4 batches of 1 image an epoch, 260 epochs): through the whole 1000-
    iteration warmup (accumulate ramps 1 -> 64) and past it, each iteration's lrs, momentum,
    accumulate and optimizer step are v9.6.0's; an epoch starts with no gradient left over.
    Before the schedule was fixed, warmup lasted 3 epochs (12 iterations) and steps came at multiples of
    accumulate."""
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetTrainer

    torch.manual_seed(0)
    data = load_detection_data(str(make_folder(tmp_path / "d", 4, 1)), 64, nc=2, cache=True)
    data.train.augment = False
    hyp = read_hyp(None)[0]
    epochs, nb = 260, 4
    t = DetTrainer(netdsl.build(TINY), data, DetHyper(epochs=epochs, batch_size=1, img=64), hyp)
    assert t.batches_per_epoch() == nb and [g["kind"] for g in t.optimizer.param_groups] == ["bn", "weight", "bias"]
    seen: list[dict] = []
    steps: list[int] = []
    t.optimizer.register_step_post_hook(lambda *_: steps.append(len(seen) - 1))
    inner = t.step

    def record(images: torch.Tensor, targets: torch.Tensor, ni: int) -> torch.Tensor:
        seen.append({"ni": ni, "lrs": [g["lr"] for g in t.optimizer.param_groups],
                     "momentum": t.optimizer.param_groups[0]["momentum"], "accumulate": t.accumulate,
                     "clean": all(p.grad is None for p in t.params)})
        return inner(images, targets, ni)

    t.step = record  # type: ignore[method-assign]
    for e in range(epochs):
        t.train_epoch()
        t.scheduler_step(e)
        t.history.rows.append(None)  # type: ignore[arg-type]  # advance the epoch counter
    want = v960_schedule(nb, epochs, 1, hyp, linear=False)
    assert [r["ni"] for r in seen] == [r["ni"] for r in want]
    assert [r["accumulate"] for r in seen] == [r["accumulate"] for r in want]
    assert max(r["accumulate"] for r in want) == 64
    assert steps == [r["ni"] for r in want if r["step"]]
    assert [r["momentum"] for r in seen] == pytest.approx([r["momentum"] for r in want], rel=1e-12)
    for got, w in zip(seen, want):
        assert got["lrs"] == pytest.approx(w["lrs"], rel=1e-12, abs=1e-15), got["ni"]
    assert all(r["clean"] for r in seen if r["ni"] % nb == 0)  # v9.6.0 zeroes gradients at an epoch's start


def test_warmup_and_steps_on_a_small_set(tmp_path: Path) -> None:
    """The issue's case, 16 batches an epoch (batch 16, nominal 64) for 3 epochs: v9.6.0 warms up
    1000 iterations, so accumulate stays 1 and all 48 iterations step; the old 48-iteration
    warmup (accumulate ramping 1 -> 4, steps at its multiples) stepped 24 times."""
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetTrainer

    data = load_detection_data(str(make_folder(tmp_path / "d", 16 * 16, 1, (8, 8))), 64, nc=2)
    hyp = read_hyp(None)[0]
    t = DetTrainer(netdsl.build(TINY), data, DetHyper(epochs=3, batch_size=16, img=64), hyp)
    assert t.batches_per_epoch() == 16 and t.warmup_iters() == 1000
    assert sum(r["step"] for r in v960_schedule(16, 3, 16, hyp, linear=False)) == 48
    old = [max(1, float(np.interp(ni, [0, 48], [1, 4]).round())) for ni in range(48)]
    assert sum(ni % a == 0 for ni, a in enumerate(old)) == 24


def test_lr_decay_cosine_by_default_linear_on_request(tmp_path: Path) -> None:
    """v9.6.0's default `one_cycle(1, lrf, epochs)` and its `--linear-lr`, for every epoch."""
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetTrainer

    data = load_detection_data(str(make_folder(tmp_path / "d", 2, 1)), 64, nc=2)
    hyp = {**read_hyp(None)[0], "lrf": 0.2}
    for linear in (False, True):
        t = DetTrainer(netdsl.build(TINY), data, DetHyper(epochs=7, img=64, linear_lr=linear), hyp)
        for x in range(8):
            want = ((1 - x / 6) * 0.8 + 0.2) if linear else ((1 - math.cos(x * math.pi / 7)) / 2) * (0.2 - 1) + 1
            assert t.lf(x) == pytest.approx(want, rel=1e-12)
    assert DetHyper().linear_lr is False


def test_linear_lr_flag_reaches_the_trainer() -> None:
    import argparse

    from netdsl.commands.train import add_arguments
    from netdsl.tasks.detect.prepare import _options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv, want in ((["x.net"], False), (["x.net", "--linear-lr"], True)):
        assert _options(parser.parse_args(argv))[0].linear_lr is want


# ------------------------------------------------------------------------------------ item 4

def test_rect_plan_is_v960s() -> None:
    """datasets.py with rect=True, pad=0.5: images sorted by h/w, per batch (s * img / stride +
    0.5) rounded up to strides. The coins set's 80x160 crops at --img 128 validate at 96x160
    (the issue's figure)."""
    from netdsl.tasks.detect.validate import rect_plan

    order, shapes = rect_plan([(80, 160)] * 32, 32, 128, 32)
    assert shapes == [(96, 160)] and order.tolist() == list(range(32))
    sizes = [(300, 200), (100, 200), (200, 200), (150, 300), (400, 100)]  # h/w: 1.5, .5, 1, .5, 4
    order, shapes = rect_plan(sizes, 2, 640, 32)
    assert order.tolist() == [1, 3, 2, 0, 4]
    # batch 1 (.5, .5): [.5, 1] -> ceil(10.5), ceil(20.5) strides; batch 2 (1, 1.5): square;
    # batch 3 (4): [1, 1/4] -> ceil(20.5), ceil(5.5)
    assert shapes == [(11 * 32, 21 * 32), (21 * 32, 21 * 32), (21 * 32, 6 * 32)]


def test_placing_an_image_moves_labels_by_half_the_padding() -> None:
    from netdsl.tasks.detect.validate import place

    resized = np.zeros((63, 128, 3), np.uint8)
    labels = np.array([[1, 0.5, 0.5, 0.25, 0.5]], np.float32)
    im, lb, where = place(resized, labels, (79, 160), (96, 160))
    # dh = 33 / 2 = 16.5: the image sits at row round(16.4) = 16, labels move by 16.5 (val.py's)
    assert im.shape == (96, 160, 3) and im[15, 20, 0] == 114 and im[16, 20, 0] == 0 and im[78, 20, 0] == 0
    assert im[79, 20, 0] == 114 and im[40, 15, 0] == 114 and im[40, 16, 0] == 0  # rows 16-78, columns 16-143
    assert lb[0].tolist() == pytest.approx([1, (64 + 16) / 160, (31.5 + 16.5) / 96, 32 / 160, 31.5 / 96])
    assert where.pad == (16.0, 16.5) and where.gain == pytest.approx(63 / 79)
    back = where.to_original(torch.tensor([[0.0, 0.0, 200.0, 48.0]]))
    assert back[0].tolist() == pytest.approx([0.0, 0.0, 160.0, (48 - 16.5) * 79 / 63])  # clipped to 160 wide


def test_nms_multi_label_keeps_every_class_over_the_threshold() -> None:
    from netdsl.tasks.detect.nms import non_max_suppression

    d = torch.tensor([[[50.0, 50, 20, 20, 0.9, 0.5, 0.8], [10, 10, 4, 4, 0.5, 0.001, 0.004]]])
    single = non_max_suppression(d, 0.001, 0.6)[0]
    multi = non_max_suppression(d, 0.001, 0.6, multi_label=True)[0]
    assert single[:, 4:].flatten().tolist() == pytest.approx([0.72, 1, 0.002, 1])
    # 0.9 * 0.8 and 0.9 * 0.5 for the first box; the second box's class 0 (0.0005) is under 0.001
    assert multi[:, 4:].flatten().tolist() == pytest.approx([0.72, 1, 0.45, 0, 0.002, 1])
    one_class = d[..., :6]
    assert non_max_suppression(one_class, 0.001, 0.6, multi_label=True)[0].tolist() == \
        non_max_suppression(one_class, 0.001, 0.6)[0].tolist()


def test_match_keeps_a_truths_earliest_detection() -> None:
    """val.py's process_batch: pairs over 0.5 by IoU, each detection keeps its best truth, then
    each truth its earliest detection (not its best-IoU one). Detection 0 (IoU 0.6) takes the
    truth; detection 1 (IoU 0.9) is a false positive at every threshold. COCOeval instead lets
    detection 1 match at 0.65 and above."""
    truth = [[0, 0, 0, 10, 10]]
    dets = [[0, 0, 10, 6, 0.9, 0], [0, 0, 10, 9, 0.8, 0]]  # IoU 0.6 and 0.9
    c = match_detections(dets, truth)
    assert c[0].tolist() == [True, True, True] + [False] * 7  # 0.5, 0.55, 0.6
    assert not c[1].any()
    # a detection of another class never matches; two truths each take their detection
    assert not match_detections([[0, 0, 10, 10, 0.9, 1]], truth).any()
    two = match_detections([[0, 0, 10, 10, .9, 0], [20, 20, 30, 30, .8, 0]], [[0, 20, 20, 30, 30], [0, 0, 0, 10, 10]])
    assert two.all()


def test_ap_falls_linearly_to_recall_one() -> None:
    """One true positive of two truths: the curve is (recall .5, precision 1). val.py's envelope
    runs 1 to recall .5, then falls linearly to 0 at recall 1: AP = .5 + .25 = .75 (the grid
    holds .5 and 1, so the trapezoids are exact). COCOeval reads precision 0 past recall .5:
    51 of 101 points at 1."""
    assert compute_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(0.75)
    gt = [{"height": 100, "width": 100, "boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "classes": [0, 0]}]
    assert evaluate([[[0, 0, 10, 10, 0.9, 0]]], gt, nc=1)["map50"] == pytest.approx(51 / 101)
    stats = [(match_detections([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 0, 10, 10], [0, 50, 50, 60, 60]]),
              np.array([0.9]), np.array([0.0]), np.array([0.0, 0.0]))]
    assert val_scores(stats)["map50"] == pytest.approx(0.75)


def test_precision_recall_at_the_best_mean_f1() -> None:
    """One class, truths 2, detections at conf .9 (TP), .6 (FP), .3 (TP). On the 1000-point
    confidence grid, conf above .9 reads precision 1 (left) and recall 0: F1 0; in (.6, .9]
    precision 1, recall .5: F1 2/3; in (.3, .6) both interpolated between the points (F1 under
    .8); at conf <= .3 precision 2/3, recall 1: F1 .8, the best (first at conf 0): P 2/3, R 1."""
    tp = np.array([[1], [0], [1]], dtype=float).repeat(10, 1)
    p, r, ap, classes = ap_per_class(tp, np.array([0.9, 0.6, 0.3]), np.zeros(3), np.zeros(2))
    assert classes.tolist() == [0]
    assert (p[0], r[0]) == pytest.approx((2 / 3, 1.0), abs=1e-9)
    # AP: the envelope reads 1 up to recall .49, 2/3 from .5 (np.interp takes the last of equal
    # recalls) to .99, and 0 at 1 (the sentinel): trapezoids .49 + (1 + 2/3) / 2 * .01 +
    # .49 * 2/3 + 2/3 / 2 * .01
    assert ap[0, 0] == pytest.approx(0.49 + (1 + 2 / 3) / 2 * 0.01 + 0.49 * 2 / 3 + 2 / 3 / 2 * 0.01)


def test_no_true_positive_scores_zero() -> None:
    """val.py reports 0 for every number unless some detection is a true positive."""
    stats = [(np.zeros((1, 10), bool), np.array([0.9]), np.array([0.0]), np.array([0.0]))]
    assert val_scores(stats) == {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0}
    assert val_scores([]) == {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0}


def test_training_validates_on_rectangles_and_records_both_maps(tmp_path: Path) -> None:
    """The trainer validates 32x64 images at --img 64 as 64x96 rectangles (long side 64, then
    ceil(s * 64 / 32 + 0.5) strides: (2, 3); a 64x64 square before), in batches of twice the
    training batch, and its rows carry val.py's and COCOeval's mAPs."""
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetRow, DetTrainer

    torch.manual_seed(0)
    spec = TINY
    data = load_detection_data(str(make_folder(tmp_path / "d", 2, 5, (32, 64))), 64, nc=2)
    t = DetTrainer(netdsl.build(spec), data, DetHyper(epochs=1, batch_size=2, img=64), read_hyp(None)[0])
    shapes: list[tuple[int, ...]] = []
    t.eval_model.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)) if not m.training else None)
    row = t.run_epoch()
    assert shapes == [(4, 3, 64, 96), (1, 3, 64, 96)]
    fields = DetRow.__dataclass_fields__
    assert "coco_map50" in fields and "coco_map50_95" in fields
    assert 0 <= row.map50 <= 1 and 0 <= row.coco_map50 <= 1 and math.isfinite(row.val_box)


def test_docstring_examples_of_the_evaluation_modules() -> None:
    import doctest

    import netdsl.tasks.detect.metrics
    import netdsl.tasks.detect.nms
    import netdsl.tasks.detect.validate

    for module in (netdsl.tasks.detect.metrics, netdsl.tasks.detect.nms, netdsl.tasks.detect.validate):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 1 and result.failed == 0, module.__name__

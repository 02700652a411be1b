"""YOLOv8's loss (netdsl.tasks.detect.loss_v8.yolo_v8_loss) and its task-aligned assigner:
hand-computed cases, invariants, and errors.

Against ultralytics itself: `bench/ultralytics8_loss.py` runs ultralytics 8.4.190's
v8DetectionLoss (gains 7.5/0.5/1.5, topk 10) and ours on the same random raw maps and targets
(strides 8/16/32, 64..160 pixel images, reg_max 16 or 8, 1..5 classes, 0..12 boxes per image, some
batches empty). On 2026-12-04, `YOLO_OFFLINE=1 /tmp/tv/bin/python bench/ultralytics8_loss.py 60`
printed: max relative differences box 1.5e-07, cls 1.83e-07, dfl 2.37e-07, total 2.32e-07, and
4.66e-07 of the first level's gradient (relative to its largest value): float rounding only.
"""
from __future__ import annotations

import math

import pytest
import torch

import netdsl
from netdsl.tasks.detect.assign_v8 import Candidates, task_aligned_assign
from netdsl.tasks.detect.loss_v8 import distribution_focal_loss, expected_distances, yolo_v8_loss

LN2, LN4 = math.log(2.0), math.log(4.0)


def one_cell_case() -> tuple[float, float]:
    """The box, by hand: one level of 4x4 cells of 8 pixels (a 32-pixel image), reg_max 4, every
    logit 0. The target's box is the pixels [8, 16] x [8, 16] (normalised centre 12/32 = 0.375,
    side 8/32 = 0.25): only the anchor point (12, 12) lies strictly inside (the points are at
    4, 12, 20, 28), and a side of 8 is not below the only stride, so the box is not widened.
    Uniform bins: each distance is (0+1+2+3)/4 = 1.5 cells, so that anchor predicts the cells
    [0, 3] x [0, 3] = pixels [0, 24]^2. Its CIoU with the target: same centre, both square, so
    the IoU 64/576 = 1/9. The metric m = sigmoid(0)^0.5 * (1/9)^6; its class target
    t = m * (1/9) / (m + 1e-9) (the box's best CIoU times its metric over its best metric + eps).
    Returns (CIoU, t)."""
    iou = 1 / 9
    m = 0.5**0.5 * iou**6  # 1.3305e-06, so the eps shaves 7.5e-4 off
    return iou, iou * m / (m + 1e-9)


@pytest.mark.parametrize("batch,image", [(1, 0), (2, 1)])
def test_one_anchor_by_hand(batch: int, image: int) -> None:
    raw = [torch.zeros(batch, 4 * 4 + 2, 4, 4)]
    targets = torch.tensor([[image, 1, 0.375, 0.375, 0.25, 0.25]])
    loss, items = yolo_v8_loss(raw, targets, strides=[8], classes=2, reg_max=4)
    iou, t = one_cell_case()
    # cls: every logit 0, so each of the batch*16 anchors' 2 classes costs ln 2 whatever its
    # target; the sum of the targets t < 1 is clamped to 1
    cls = batch * 16 * 2 * LN2
    # box: (1 - CIoU) weighted by t, over 1
    box = (1 - iou) * t
    # dfl: from the point (1.5, 1.5) to the box [1, 2]^2 (cells) every side is 0.5: half on bin 0,
    # half on bin 1, each of probability 1/4, so ln 4 per side; weighted by t
    dfl = LN4 * t
    # batch 1: [0.7401844, 11.0903549, 0.2308755]; ultralytics 8.4.190's v8DetectionLoss on the same
    # input (the bench's stand-in model) gave [0.7401845, 11.0903549, 0.2308756]
    expected = [7.5 * box, 0.5 * cls, 1.5 * dfl]
    assert items.tolist() == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(sum(expected) * batch, rel=1e-5)


def test_dfl_by_hand_with_the_clamp() -> None:
    # one side's bins [0, 0, 0, ln 3]: softmax 1/6, 1/6, 1/6, 1/2. A target 5 is clamped to
    # reg_max - 1.01 = 2.99: 0.01 on bin 2, 0.99 on bin 3 -> 0.01*ln 6 + 0.99*ln 2 = 0.7041333
    side = [0.0, 0.0, 0.0, math.log(3.0)]
    logits = torch.tensor([side * 4])
    loss = distribution_focal_loss(logits, torch.full((1, 4), 5.0), 4)
    assert loss.item() == pytest.approx(0.01 * math.log(6.0) + 0.99 * LN2, rel=1e-6)
    # an exact integer target puts everything on one bin: 2 -> -ln(1/6)
    assert distribution_focal_loss(logits, torch.full((1, 4), 2.0), 4).item() == pytest.approx(math.log(6.0), rel=1e-6)


def test_expected_distances_by_hand() -> None:
    # bins [0, ln 3] -> probabilities 1/4, 3/4 -> distance 3/4; sides are consecutive groups of reg_max
    logits = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, math.log(3.0), 0.0, 0.0, 0.0]])
    assert expected_distances(logits, 2).tolist()[0] == pytest.approx([0.75, 0.5, 0.25, 0.5])


def grid_points(n: int = 4, stride: float = 8.0) -> torch.Tensor:
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack((gx.reshape(-1), gy.reshape(-1)), 1)


def test_tiny_box_is_widened_to_reach_an_anchor() -> None:
    # every anchor predicts the 8-pixel square about itself. The box [8.5, 10.5] x [11, 13] holds
    # no anchor point (x = 12 is outside); widened to 8 about its centre (9.5, 12) it is
    # [5.5, 13.5] x [8, 16], which holds (12, 12), anchor 5. Its CIoU with that anchor's box
    # [8, 16]^2: IoU 4/64, centre distance^2 2.5^2 over the enclosing diagonal^2 8^2 + 8^2, squares
    # -> 0.0625 - 6.25/128 = 0.013671875 > 0, so the anchor's metric is positive.
    points = grid_points()
    pred = torch.cat((points - 4, points + 4), 1)[None]
    gt = Candidates(torch.tensor([[0]]), torch.tensor([[[8.5, 11.0, 10.5, 13.0]]]), torch.tensor([[True]]))
    probs = torch.full((1, 16, 1), 0.5)
    a = task_aligned_assign(probs, pred, points, gt, min_side=8)
    assert a.foreground[0].nonzero().view(-1).tolist() == [5]
    ciou = 0.0625 - 6.25 / 128
    m = 0.5**0.5 * ciou**6
    assert a.scores[0, 5, 0].item() == pytest.approx(ciou * m / (m + 1e-9), rel=1e-4)
    unwidened = task_aligned_assign(probs, pred, points, gt, min_side=0)
    assert not unwidened.foreground.any()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_anchor_of_two_boxes_goes_to_the_closer(order: tuple[int, int]) -> None:
    # both boxes hold only the point (12, 12) (anchor 5), whose predicted box is [8, 16]^2: box A
    # (class 1) is exactly that (CIoU 1), box B (class 0) [6, 18]^2 overlaps it 64/144. The anchor
    # goes to A; its target: metric over A's best metric (1) times A's best CIoU (1) = 1.
    points = grid_points()
    pred = torch.cat((points - 4, points + 4), 1)[None]
    boxes = [[8.0, 8.0, 16.0, 16.0], [6.0, 6.0, 18.0, 18.0]]
    gt = Candidates(torch.tensor([[[1, 0][i] for i in order]]), torch.tensor([[boxes[i] for i in order]]),
                    torch.tensor([[True, True]]))
    a = task_aligned_assign(torch.full((1, 16, 2), 0.5), pred, points, gt, min_side=8)
    assert a.foreground[0].nonzero().view(-1).tolist() == [5]
    assert a.scores[0, 5].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert a.boxes[0, 5].tolist() == boxes[0]


def test_perfect_prediction_has_no_box_or_dfl_loss() -> None:
    # the box [4, 20]^2 pixels = cells [0.5, 2.5]^2 holds only the point (1.5, 1.5) (anchor 5; the
    # points at 0.5 and 2.5 lie on its edges); that anchor puts all its mass (logit 50) on bin 1,
    # a distance of exactly 1 cell each side: the box itself
    raw = torch.zeros(1, 4 * 4 + 3, 4, 4)
    raw[0, [1, 5, 9, 13], 1, 1] = 50.0
    targets = torch.tensor([[0, 2, 0.375, 0.375, 0.5, 0.5]])
    _, items = yolo_v8_loss([raw], targets, strides=[8], classes=3, reg_max=4)
    assert items[0].item() == pytest.approx(0.0, abs=1e-5)
    assert items[2].item() == pytest.approx(0.0, abs=1e-5)
    assert items[1].item() > 0


def test_no_targets_only_pushes_the_classes_down() -> None:
    torch.manual_seed(0)
    raw = [torch.randn(2, 4 * 16 + 3, 8, 8, requires_grad=True), torch.randn(2, 4 * 16 + 3, 4, 4, requires_grad=True)]
    loss, items = yolo_v8_loss(raw, torch.zeros(0, 6), strides=[8, 16], classes=3)
    # BCE against 0 is softplus(logit); the target sum 0 is clamped to 1
    cls = sum(torch.nn.functional.softplus(x[:, 64:]).sum().item() for x in raw)
    assert items.tolist() == pytest.approx([0.0, 0.5 * cls, 0.0], rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * cls * 2, rel=1e-5)
    loss.backward()
    for x in raw:
        assert x.grad is not None
        assert (x.grad[:, :64] == 0).all()       # nothing to say about boxes
        assert (x.grad[:, 64:] > 0).all()        # every class logit goes down


def random_case(seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = [torch.randn(3, 4 * 8 + 4, 64 // s, 64 // s, generator=g).requires_grad_() for s in (8, 16, 32)]
    wh = torch.rand(9, 2, generator=g) * 0.5 + 0.05
    xy = wh / 2 + torch.rand(9, 2, generator=g) * (1 - wh)
    image = torch.tensor([0, 2, 0, 1, 2, 0, 1, 0, 2], dtype=torch.float32)
    cls = torch.randint(0, 4, (9,), generator=g).float()
    return raw, torch.cat((image[:, None], cls[:, None], xy, wh), 1)


def test_permuting_targets_changes_nothing() -> None:
    raw, targets = random_case(1)
    _, items = yolo_v8_loss(raw, targets, strides=[8, 16, 32], classes=4, reg_max=8)
    for seed in range(3):
        perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
        _, again = yolo_v8_loss(raw, targets[perm], strides=[8, 16, 32], classes=4, reg_max=8)
        assert again.tolist() == pytest.approx(items.tolist(), rel=1e-6)


def test_gradients_flow_to_every_level_and_branch() -> None:
    raw, targets = random_case(2)
    loss, items = yolo_v8_loss(raw, targets, strides=[8, 16, 32], classes=4, reg_max=8)
    assert (items > 0).all()
    loss.backward()
    grads = [x.grad for x in raw]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    box = sum(float(g[:, :32].abs().sum()) for g in grads if g is not None)
    assert box > 0
    assert all(g is not None and g[:, 32:].abs().sum() > 0 for g in grads)


def test_public_and_lazy() -> None:
    assert netdsl.yolo_v8_loss is yolo_v8_loss
    assert "yolo_v8_loss" in netdsl.__all__


@pytest.mark.parametrize("raw,strides,message", [
    ([torch.zeros(1, 20, 4, 4)], [8], r"map 0 has shape \[1, 20, 4, 4\].*4\*reg_max \+ classes = 18"),
    ([torch.zeros(1, 18, 4, 4)], [8, 16], r"1 maps but 2 strides"),
    ([torch.zeros(18, 4, 4)], [8], r"map 0 has shape \[18, 4, 4\]"),
])
def test_bad_maps_say_what_is_expected(raw: list[torch.Tensor], strides: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        yolo_v8_loss(raw, torch.zeros(0, 6), strides=strides, classes=2, reg_max=4)


@pytest.mark.parametrize("row,message", [
    ([2, 0, 0.5, 0.5, 0.1, 0.1], r"image index is outside 0\.\.1 \(the batch has 2 images\)"),
    ([0, 2, 0.5, 0.5, 0.1, 0.1], r"class is outside 0\.\.1 \(the head has 2 classes\)"),
])
def test_bad_targets_say_what_is_expected(row: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        yolo_v8_loss([torch.zeros(2, 18, 4, 4)], torch.tensor([row]), strides=[8], classes=2, reg_max=4)

"""netdsl.tasks.detect.metrics.evaluate: pycocotools' COCOeval on in-memory data, hand-derived values."""
from __future__ import annotations

import contextlib
import doctest
import io

import numpy as np
import pytest

import netdsl.tasks.detect.coco_fast
import netdsl.tasks.detect.metrics
from netdsl.tasks.detect.metrics import coco_datasets, evaluate

pytest.importorskip("pycocotools")


def gt(boxes, classes, h=100, w=100):
    return {"height": h, "width": w, "boxes": boxes, "classes": classes}


def test_perfect_predictions_score_one():
    truth = [gt([[10, 10, 40, 50], [60, 60, 90, 95]], [0, 1]), gt([[5, 5, 20, 20]], [1], h=50, w=80)]
    preds = [[[10, 10, 40, 50, 0.9, 0], [60, 60, 90, 95, 0.8, 1]], [[5, 5, 20, 20, 0.7, 1]]]
    r = evaluate(preds, truth, nc=2)
    # pycocotools divides by tp + fp + eps (np.spacing(1)), so its 1.0 is 1 - 2e-16
    assert r == {"precision": 1.0, "recall": 1.0, "map50": pytest.approx(1.0), "map50_95": pytest.approx(1.0),
                 "images": 2, "instances": 3, "detections": 3}


def test_known_iou_counts_at_the_thresholds_it_passes():
    # IoU = 72*100 / (100*100) = 0.72: a match at 0.50, 0.55, 0.60, 0.65, 0.70, not at 0.75..0.95
    r = evaluate([[[0, 0, 100, 72, 0.9, 0]]], [gt([[0, 0, 100, 100]], [0], 200, 200)], nc=1)
    assert r["map50"] == pytest.approx(1.0) and r["precision"] == 1.0 and r["recall"] == 1.0
    assert r["map50_95"] == pytest.approx(0.5)


def test_iou_below_one_half_is_a_miss():
    # IoU = 40/100: a false positive and a missed ground truth at every threshold
    r = evaluate([[[0, 0, 100, 40, 0.9, 0]]], [gt([[0, 0, 100, 100]], [0], 200, 200)], nc=1)
    assert (r["precision"], r["recall"], r["map50"], r["map50_95"]) == (0.0, 0.0, 0.0, 0.0)


def test_hand_derived_precision_recall_curve():
    # two ground truths; detections by score: TP (0.9), FP (0.8), TP (0.7).
    # (recall, precision) after each: (.5, 1), (.5, .5), (1, 2/3). COCO's 101-point interpolation:
    # recall thresholds 0.00..0.50 (51 points) read precision 1, 0.51..1.00 (50 points) read 2/3.
    truth = [gt([[0, 0, 10, 10]], [0]), gt([[50, 50, 70, 70]], [0])]
    preds = [[[0, 0, 10, 10, 0.9, 0], [80, 80, 90, 90, 0.8, 0]], [[50, 50, 70, 70, 0.7, 0]]]
    r = evaluate(preds, truth, nc=1)
    ap = (51 * 1.0 + 50 * 2 / 3) / 101
    assert r["map50"] == pytest.approx(ap) and r["map50_95"] == pytest.approx(ap)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0


def test_two_classes_average_over_classes_with_ground_truth():
    # class 0 found, class 1 missed; class 2 has no ground truth and does not count
    truth = [gt([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1])]
    preds = [[[0, 0, 10, 10, 0.9, 0], [60, 60, 70, 70, 0.5, 2]]]
    r = evaluate(preds, truth, nc=3)
    assert (r["precision"], r["recall"]) == (0.5, 0.5)
    assert (r["map50"], r["map50_95"]) == pytest.approx((0.5, 0.5))


def test_class_mismatch_is_no_match():
    r = evaluate([[[0, 0, 10, 10, 0.9, 1]]], [gt([[0, 0, 10, 10]], [0])], nc=2)
    assert (r["precision"], r["recall"], r["map50"], r["map50_95"]) == (0.0, 0.0, 0.0, 0.0)


def test_empty_cases():
    zero = {"precision": 0.0, "recall": 0.0, "map50": 0.0, "map50_95": 0.0}
    # ground truth, no predictions (an empty list, an empty [0, 6] array, or no entry at all)
    assert evaluate([[]], [gt([[0, 0, 10, 10]], [0])], nc=1) == {**zero, "images": 1, "instances": 1, "detections": 0}
    assert evaluate({}, {"a.jpg": gt([[0, 0, 10, 10]], [0])}, nc=1)["map50"] == 0.0
    # predictions, no ground truth
    assert evaluate([[[0, 0, 10, 10, 0.9, 0]]], [gt([], [])], nc=1) == {**zero, "images": 1, "instances": 0,
                                                                           "detections": 1}
    # nothing at all
    assert evaluate([], [], nc=1) == {**zero, "images": 0, "instances": 0, "detections": 0}
    # an image with no ground truth next to one that has some: its detections are false positives
    r = evaluate([[[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0.95, 0]]], [gt([[0, 0, 10, 10]], [0]), gt([], [])], nc=1)
    assert r["precision"] == 0.5 and r["recall"] == 1.0
    assert r["map50"] == pytest.approx(0.5)  # (recall, precision): (0, 0) then (1, 0.5); the envelope reads 0.5 everywhere


def test_tensors_and_dict_keys_are_accepted():
    torch = pytest.importorskip("torch")
    truth = {"bus.jpg": {"height": 480, "width": 640, "boxes": torch.tensor([[10.0, 20, 110, 220]]),
                         "classes": torch.tensor([3])}}
    preds = {"bus.jpg": torch.tensor([[10.0, 20, 110, 220, 0.5, 3]])}
    assert evaluate(preds, truth, nc=4)["map50_95"] == pytest.approx(1.0)


def test_coco_format():
    data, results = coco_datasets([[[1, 2, 11, 22, 0.5, 1]]], [gt([[0, 0, 10, 20]], [1], h=30, w=40)], nc=2)
    assert data["images"] == [{"id": 1, "height": 30, "width": 40}]
    assert data["annotations"] == [{"id": 1, "image_id": 1, "iscrowd": 0, "category_id": 2,
                                    "bbox": [0.0, 0.0, 10.0, 20.0], "area": 200.0}]
    assert [c["id"] for c in data["categories"]] == [1, 2]
    assert results[0]["bbox"] == [1.0, 2.0, 10.0, 20.0] and results[0]["score"] == 0.5


def test_pycocotools_prints_nothing(capsys):
    evaluate([[[0, 0, 10, 10, 0.9, 0]]], [gt([[0, 0, 10, 10]], [0])], nc=1)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("preds, truth, match", [
    ([[[0, 0, 1, 1, 0.5, 2]]], [gt([], [])], r"class 2\.0 is not an integer in \[0, 2\)"),
    ([[[0, 0, 1, 1, 0.5, 0.5]]], [gt([], [])], "not an integer"),
    ([[[0, 0, 1, 1, 0.5]]], [gt([], [])], r"shape \[n, 6\]"),
    ([[], [[0, 0, 1, 1, 0.5, 0]]], [gt([], [])], "no ground-truth entry"),
    ([], [{"boxes": [], "classes": []}], "'height' and 'width'"),
    ([], [gt([[0, 0, 1, 1]], [])], "1 boxes but 0 classes"),
])
def test_bad_inputs(preds, truth, match):
    with pytest.raises(ValueError, match=match):
        evaluate(preds, truth, nc=2)


def test_docstring_examples():
    for module, examples in ((netdsl.tasks.detect.metrics, 6), (netdsl.tasks.detect.coco_fast, 4)):
        result = doctest.testmod(module)
        assert result.attempted >= examples and result.failed == 0, module.__name__


def _random_case(seed: int, images: int = 12, nc: int = 3):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(images):
        n = int(rng.integers(0, 6))
        xy, wh = rng.uniform(0, 300, (n, 2)), rng.uniform(2, 150, (n, 2))
        boxes = np.c_[xy, xy + wh]
        if n >= 2 and rng.random() < 0.5:
            boxes[1] = boxes[0]  # two identical ground truths: equal IoUs, COCOeval takes the last
        cls = rng.integers(0, nc, n)
        gts.append({"height": 480, "width": 480, "boxes": boxes, "classes": cls})
        near = boxes + rng.normal(0, 8, boxes.shape)
        k = int(rng.integers(0, 60))
        far_xy = rng.uniform(0, 300, (k, 2))
        b = np.r_[near, near[::-1], np.c_[far_xy, far_xy + rng.uniform(2, 150, (k, 2))]]
        c = np.r_[cls, cls[::-1], rng.integers(0, nc, k)]
        scores = rng.choice([0.2, 0.5, 0.9], len(b)) if seed % 2 else rng.uniform(0, 1, len(b))  # ties too
        preds.append(np.c_[b, scores, c])
    return preds, gts, nc


@pytest.mark.parametrize("seed", range(6))
def test_fast_matching_is_cocoevals_own(seed: int) -> None:
    """The per-threshold numpy matching gives COCOeval's records and precision array exactly,
    and a crowd ground truth falls back to COCOeval's own loops."""
    from pycocotools.cocoeval import COCOeval

    from netdsl.tasks.detect.coco_fast import fast_cocoeval
    from netdsl.tasks.detect.metrics import _coco, coco_datasets

    preds, gts, nc = _random_case(seed)
    dataset, results = coco_datasets(preds, gts, nc)
    if seed == 5:
        dataset["annotations"][0]["iscrowd"] = 1
    runs = []
    for kind in (COCOeval, fast_cocoeval(COCOeval)):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = kind(_coco(dataset), _coco({**dataset, "annotations": results}), "bbox")
            ev.params.maxDets = [1, 10, 300]
            ev.evaluate()
            ev.accumulate()
        runs.append(ev)
    slow, fast = runs
    assert len(slow.evalImgs) == len(fast.evalImgs)
    for a, b in zip(slow.evalImgs, fast.evalImgs):
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.keys() == b.keys()
        for k in a:
            va, vb = np.asarray(a[k]), np.asarray(b[k])
            assert va.dtype == vb.dtype and va.shape == vb.shape and np.array_equal(va, vb), k
    for k in ("precision", "recall", "scores"):
        assert slow.eval[k].shape == fast.eval[k].shape and np.array_equal(slow.eval[k], fast.eval[k]), k
    assert slow.eval["counts"] == fast.eval["counts"] and (slow.eval["precision"] > 0).any()

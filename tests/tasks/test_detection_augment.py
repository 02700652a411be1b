"""Mosaic and random affine augmentation for detection (netdsl/tasks/detect/augment.py):
boxes follow the pixels. Each case draws filled rectangles, transforms image and labels together,
and checks that every box covers its rectangle's pixels and no more (up to the bilinear blur)."""
from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from netdsl.tasks.detect import augment as aug
from netdsl.tasks.detect.data import DetectionSet, load_detection_data

BG = 0
COLOURS = [(255, 40, 40), (40, 255, 40), (40, 40, 255), (255, 255, 40)]


def canvas(h: int, w: int, boxes: list[tuple[int, int, int, int]], colours=COLOURS) -> tuple[np.ndarray, np.ndarray]:
    """A black `h` x `w` image with filled rectangles `(x1, y1, x2, y2)` (pixels x1 <= x < x2), and
    their labels normalised, class = the rectangle's index."""
    im = np.full((h, w, 3), BG, np.uint8)
    rows = []
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        im[y1:y2, x1:x2] = colours[k]
        rows.append([k, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
    return im, np.array(rows, np.float32).reshape(-1, 5)


def pixels_of(im: np.ndarray, colour, tol: int) -> np.ndarray:
    """`[n, 2]` (x, y) pixel indices whose colour is within `tol` of `colour` in every channel."""
    ys, xs = np.nonzero((np.abs(im.astype(int) - np.array(colour)) <= tol).all(-1))
    return np.stack([xs, ys], 1)


def box_px(lb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Normalised labels to pixel (x1, y1, x2, y2)."""
    return aug.to_pixels(lb, hw[1], hw[0])[:, 1:5]


def colour_masks(im: np.ndarray, colours=COLOURS) -> tuple[np.ndarray, np.ndarray]:
    """`(touched, core)` `[k, h, w]` masks per colour: `touched`, pixels with any of the colour
    (backgrounds are grey: black, dark greys, grey 114; a blend with a colour is not grey and
    points the colour's way); `core`, pixels within 20 of the colour itself."""
    px = im.astype(float)
    chroma = px - px.min(-1, keepdims=True)
    dirs = np.array([np.array(c) - min(c) for c in colours], float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    which = np.argmax(chroma @ dirs.T, -1)
    coloured = chroma.max(-1) > 12
    touched = np.stack([coloured & (which == k) for k in range(len(colours))])
    core = np.stack([(np.abs(px - np.array(c)) <= 20).all(-1) for c in colours])
    return touched, core


def check_follows(im: np.ndarray, lb: np.ndarray, colours=COLOURS, slack: float = 1.0) -> int:
    """Each rectangle's pixels (a connected patch of its colour) and its label's box agree: the
    box holds every clearly coloured pixel of the patch (within a pixel) and is no larger than the
    pixels the patch touches at all (within `slack`; boxes clipped at the frame are only checked
    for holding the pixels). A patch without a box was dropped: it lies
    at the image's edge (mostly out of view) or is a sliver. Returns how many labels were checked."""
    from scipy import ndimage as ndi

    h, w = im.shape[:2]
    boxes = box_px(lb, (h, w))
    touched, core = colour_masks(im, colours)
    used = tight = 0
    for c in range(len(colours)):
        patches, n = ndi.label(touched[c])
        mine = [b for (k, *_), b in zip(lb, boxes) if int(k) == c]
        claimed = set()
        for x1, y1, x2, y2 in mine:
            # the patch(es) under the box's centre region
            cx0, cx1 = int(max(x1, 0)), int(min(np.ceil(x2), w))
            cy0, cy1 = int(max(y1, 0)), int(min(np.ceil(y2), h))
            ids = set(np.unique(patches[cy0:cy1, cx0:cx1])) - {0}
            assert ids, f"class {c}: a box with no pixels of its colour"
            claimed |= ids
            region = np.isin(patches, list(ids))
            ys, xs = np.nonzero(region & core[c])
            if len(xs):
                assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1, (c, xs.min(), xs.max(), x1, x2)
                assert ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1, (c, ys.min(), ys.max(), y1, y2)
            used += 1
            if x1 <= 1e-6 or y1 <= 1e-6 or x2 >= w - 1e-6 or y2 >= h - 1e-6:
                # clipped at the frame: the box of the whole turned rectangle, cut to the frame,
                # may be wider than the part in view (ultralytics' boxes do the same)
                continue
            ys, xs = np.nonzero(region)
            assert x1 >= xs.min() - slack and x2 <= xs.max() + 1 + slack, (c, xs.min(), xs.max(), x1, x2)
            assert y1 >= ys.min() - slack and y2 <= ys.max() + 1 + slack, (c, ys.min(), ys.max(), y1, y2)
            tight += 1
        for k in set(range(1, n + 1)) - claimed:  # no label: cut off at the edge, or a sliver
            ys, xs = np.nonzero(patches == k)
            at_edge = xs.min() == 0 or ys.min() == 0 or xs.max() == w - 1 or ys.max() == h - 1
            assert at_edge or len(xs) <= 6, (c, len(xs), xs.min(), xs.max(), ys.min(), ys.max())
    assert used == len(lb)
    check_follows.tight = tight  # type: ignore[attr-defined]
    return used


# --- hand-checked transforms -------------------------------------------------------------------

def test_rotation_by_90_degrees_moves_the_box_with_the_pixels() -> None:
    im, lb = canvas(40, 40, [(10, 5, 30, 15)])
    M = aug.make_matrix((40, 40), (40, 40), angle=90)
    out, new = aug.transform_labels(im, aug.to_pixels(lb, 40, 40), M, 1.0, (40, 40))
    # anticlockwise as seen: the top band (x 10-30, y 5-15) becomes the left band (x 5-15, y 10-30)
    assert new[0, 1:].tolist() == pytest.approx([5, 10, 15, 30], abs=1e-9)
    red = np.zeros((40, 40), bool)
    red[10:30, 5:15] = True
    # pixel centres map onto pixel centres (Pillow's fixed-point bilinear gives 254 for 255 at times)
    assert pixels_of(out, COLOURS[0], 2).tolist() == np.stack(np.nonzero(red)[::-1], 1).tolist()
    assert (out[~red] == BG).all()


def test_scale_and_translation_by_hand() -> None:
    im, lb = canvas(32, 64, [(8, 8, 24, 16)])
    # half size about the centre (32, 16), then the centre to (0.25 * 64, 0.75 * 32) = (16, 24)
    M = aug.make_matrix((32, 64), (32, 64), scale=0.5, tx=0.25, ty=0.75)
    out, new = aug.transform_labels(im, aug.to_pixels(lb, 64, 32), M, 0.5, (32, 64))
    # (8, 8) -> (32 + (8 - 32) / 2 - 16, 16 + (8 - 16) / 2 + 8) = (4, 20); (24, 16) -> (12, 24)
    assert new[0, 1:].tolist() == pytest.approx([4, 20, 12, 24])
    # each output pixel samples the input between two pixels of the same kind: no blur at all
    inside = np.zeros((32, 64), bool)
    inside[20:24, 4:12] = True
    assert (out[inside] == COLOURS[0]).all()
    # the input (64 x 32) lands on x 0..32, y 16..32; grey 114 elsewhere
    assert (out[16:32, 0:32][~inside[16:32, 0:32]] == BG).all()
    assert (out[:15] == 114).all() and (out[:, 33:] == 114).all()


def test_clipping_and_degenerate_boxes() -> None:
    before = np.array([[0, 10, 10, 30, 30], [1, 40, 10, 60, 30], [2, 10, 40, 30, 42]], float)
    # shift left by 34 px (tx: centre 32 -> -2): box 0 leaves the frame, box 1 keeps x 6-26,
    # box 2 (20 x 2 px) would keep x 0 to -4: gone
    M = aug.make_matrix((64, 64), (64, 64), tx=-2 / 64)
    _, new = aug.transform_labels(np.zeros((64, 64, 3), np.uint8), before, M, 1.0, (64, 64))
    assert new.tolist() == [[1, 6, 10, 26, 30]]
    # partly outside: clipped to the frame and kept while more than 10% of its area remains
    M = aug.make_matrix((64, 64), (64, 64), tx=(32 - 12) / 64)  # box 0 now x -2..18
    _, new = aug.transform_labels(np.zeros((64, 64, 3), np.uint8), before[:1], M, 1.0, (64, 64))
    assert new.tolist() == [[0, 0, 10, 18, 30]]
    M = aug.make_matrix((64, 64), (64, 64), tx=(32 - 28.5) / 64)  # box 0 now x -18.5..1.5: 7.5% left
    _, new = aug.transform_labels(np.zeros((64, 64, 3), np.uint8), before[:1], M, 1.0, (64, 64))
    assert len(new) == 0
    # a box squeezed under 2 px, or to an aspect ratio of 20 or more, is dropped
    b = np.array([[0, 0, 0, 10, 10], [0, 0, 0, 100, 10]], float)
    assert aug.box_candidates(b[:, 1:], np.array([[0, 0, 10, 2.0], [0, 0, 100, 5.5]])).tolist() == [False, True]
    assert aug.box_candidates(b[:, 1:], np.array([[0, 0, 10, 2.5], [0, 0, 100, 5.0]])).tolist() == [True, False]
    # the area test compares with the old box times the transform's scale
    assert aug.box_candidates(b[:1, 1:] * 0.5, np.array([[0, 0, 2.5, 2.5]])).tolist() == [True]
    assert aug.box_candidates(b[:1, 1:], np.array([[0, 0, 2.5, 2.5]])).tolist() == [False]


def test_random_affine_boxes_follow_the_pixels() -> None:
    rects = [(6, 8, 30, 20), (40, 30, 56, 58), (20, 40, 28, 50)]
    im, lb = canvas(64, 64, rects)
    hyp = dict(degrees=30, translate=0.1, scale=0.4, shear=8, perspective=0.0005)
    checked = tight = 0
    for seed in range(12):
        out, new = aug.random_perspective(im, lb, np.random.default_rng(seed), None, **hyp)
        assert out.shape == im.shape and new.dtype == np.float32
        assert ((new[:, 1:] >= 0) & (new[:, 1:] <= 1)).all()
        checked += check_follows(out, new)
        tight += check_follows.tight
    assert checked >= 30 and tight >= 20  # 36 and 30 when written


def test_random_affine_draws_do_not_depend_on_the_ranges() -> None:
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    aug.affine_matrix(a, (8, 8), (8, 8))
    aug.affine_matrix(b, (8, 8), (8, 8), degrees=10, translate=0.2, scale=0.5, shear=3, perspective=0.001)
    assert a.random() == b.random()


# --- mosaic ------------------------------------------------------------------------------------

def four_images(size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four images of different shapes (long side `size`), each with one rectangle in its colour
    on its own dark background (never grey 114)."""
    shapes = [(size, size), (size // 2, size), (size, size * 3 // 4), (size * 3 // 4, size // 2)]
    out = []
    for k, (h, w) in enumerate(shapes):
        x1, y1, rw, rh = w // 4, h // 4, w // 2, h // 3
        im, lb = canvas(h, w, [(x1, y1, x1 + rw, y1 + rh)], [COLOURS[k]])
        im[(im == BG).all(-1)] = 20 * k
        lb[:, 0] = k
        out.append((im, lb))
    return out


def test_mosaic_canvas_by_hand() -> None:
    s = 32
    items = four_images(s)
    cv, lab = aug.mosaic_canvas(items, s, (40, 24))
    assert cv.shape == (64, 64, 3)
    # image 0 (32 x 32) ends at the centre: canvas x 8..40, y -8..24 (its top 8 rows cut off)
    assert np.array_equal(cv[0:24, 8:40], items[0][0][8:32])
    # image 1 (16 x 32) starts right of the centre, ends at it vertically: x 40..64 (cut), y 8..24
    assert np.array_equal(cv[8:24, 40:64], items[1][0][:, :24])
    # image 2 (32 x 24) left of the centre and below it: x 16..40, y 24..56
    assert np.array_equal(cv[24:56, 16:40], items[2][0])
    # image 3 (24 x 16) right of and below the centre: x 40..56, y 24..48
    assert np.array_equal(cv[24:48, 40:56], items[3][0])
    assert (cv[:8, 40:] == 114).all() and (cv[56:] == 114).all() and (cv[24:, :16] == 114).all()
    # labels in canvas pixels: image 0's rectangle x 8..24, y 8..18 of it -> x 16..32, y 0..10
    assert np.allclose(lab, [[0, 16, 0, 32, 10.0], [1, 48, 12, 64, 17], [2, 22, 32, 34, 42], [3, 44, 30, 52, 38]])
    for k, (_cls, x1, y1, x2, y2) in enumerate(lab):  # the boxes are where the colours are
        xy = pixels_of(cv, COLOURS[k], 0)
        assert np.allclose([*xy.min(0), *(xy.max(0) + 1)], [x1, y1, x2, y2], atol=1e-4)


def test_mosaic_boxes_follow_the_pixels() -> None:
    s, checked, tight = 64, 0, 0
    for seed in range(16):
        out, lb = aug.mosaic(four_images(s), s, np.random.default_rng(seed),
                             dict(degrees=15, translate=0.1, scale=0.5, shear=5))
        assert out.shape == (s, s, 3) and lb.shape[1] == 5
        checked += check_follows(out, lb)
        tight += check_follows.tight
    assert checked >= 20 and tight >= 5  # 30 and 9 when written


def test_mosaic_without_geometry_is_the_canvas_centre() -> None:
    s = 32
    items = four_images(s)
    again = np.random.default_rng(3)
    xc, yc = int(again.uniform(s / 2, 3 * s / 2)), int(again.uniform(s / 2, 3 * s / 2))
    out, lb = aug.mosaic(items, s, np.random.default_rng(3), dict(translate=0, scale=0))
    cv, lab = aug.mosaic_canvas(items, s, (xc, yc))
    assert np.array_equal(out, cv[16:48, 16:48])


# --- through the data set ----------------------------------------------------------------------

def write_set(root: Path, n: int = 6, size: tuple[int, int] = (48, 64)) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = size
        x1, y1 = int(rng.integers(0, w - 24)), int(rng.integers(0, h - 16))
        c = i % 4
        im, lb = canvas(h, w, [(x1, y1, x1 + 20, y1 + 12)], [COLOURS[c]])
        Image.fromarray(im).save(root / "images" / f"{i}.png")
        (root / "labels" / f"{i}.txt").write_text(f"{c} " + " ".join(f"{v:.6f}" for v in lb[0, 1:]) + "\n")
    return root


def test_training_items_are_deterministic_and_boxes_follow_the_pixels(tmp_path: Path) -> None:
    d = load_detection_data(write_set(tmp_path / "d"), img=64, cache=True)
    tr: DetectionSet = d.train
    tr.hyp.update(hsv_h=0, hsv_s=0, hsv_v=0, degrees=10, shear=3)  # colours stay: they tell the objects
    a, b = tr.item(2, seed=1, epoch=3), tr.item(2, seed=1, epoch=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], tr.item(2, seed=1, epoch=4)[0])
    assert not np.array_equal(a[0], tr.item(2, seed=2, epoch=3)[0])
    checked = 0
    for e in range(6):
        for i in range(len(tr)):
            im, lb = tr.item(i, seed=0, epoch=e)
            assert im.shape == (64, 64, 3)
            checked += check_follows(im, lb)
    assert checked > 30
    # validation images are only letterboxed
    assert np.array_equal(d.val.item(0, seed=0, epoch=5)[0], d.val.load(0)[0])


def test_mosaic_probability(tmp_path: Path) -> None:
    d = load_detection_data(write_set(tmp_path / "d"), img=64)
    tr = d.train
    tr.hyp.update(translate=0, scale=0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0)
    lb_counts = set()
    for p, want in ((0.0, 0), (1.0, 40)):
        tr.hyp["mosaic"] = p
        mosaics = 0
        for e in range(10):
            for i in range(4):
                im, lb = tr.item(i, seed=0, epoch=e)
                plain = tr.load(i)[0]
                mosaics += not np.array_equal(im, plain)
                lb_counts.add(len(lb))
        assert mosaics == want
    assert max(lb_counts) > 1  # mosaics gather the objects of several images
    tr.hyp["mosaic"] = 0.5
    n = sum(not np.array_equal(tr.item(i, seed=0, epoch=e)[0], tr.load(i)[0]) for e in range(25) for i in range(4))
    assert 30 < n < 70


def test_docstring_examples() -> None:
    result = doctest.testmod(aug)
    assert result.attempted >= 6 and result.failed == 0


def test_one_letterbox_for_training_and_inference() -> None:
    """predict.letterbox pads as training does (augment.letterbox): the same picture when no
    resize is needed, and the same geometry (scale, padding) when one is."""
    import torch

    from netdsl.tasks.detect import predict

    rng = np.random.default_rng(0)
    for h, w in ((48, 64), (64, 37), (64, 64), (21, 64)):
        im = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for stride in (None, 16):
            x, lb = predict.letterbox(im, 64, stride)
            padded, (left, top) = aug.letterbox(im, 64, stride)
            assert (lb.scale, lb.left, lb.top) == (1.0, left, top)
            assert torch.equal(x, torch.from_numpy(padded).permute(2, 0, 1).float() / 255)
        # resized: the label geometry of training and the inverse mapping of inference agree
        big = np.kron(im, np.ones((2, 2, 1), np.uint8))  # twice the size: inference scales by 1/2
        x, lb = predict.letterbox(big, 64)
        resized = aug.resize_long_side(big, 64)
        padded, pad = aug.letterbox(resized, 64)
        assert x.shape[1:] == padded.shape[:2] and (lb.left, lb.top) == pad and lb.scale == 0.5
        # a box in the original's pixels, where training puts it in the square, mapped back by inference
        H, W = big.shape[:2]
        x1, y1, x2, y2 = 6.0, 10.0, min(30.0, W), min(40.0, H)
        lab = aug.letterbox_labels(np.array([[0, (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]]),
                                   resized.shape[:2], pad, 64)
        square = torch.from_numpy(aug.to_pixels(lab, 64, 64)[:, 1:5]).float()
        back = predict.unletterbox(torch.cat([square, torch.tensor([[0.9, 0.0]])], 1), lb, (H, W))
        assert torch.allclose(back[0, :4], torch.tensor([x1, y1, x2, y2]), atol=1e-4)

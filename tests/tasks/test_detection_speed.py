"""Detection training's speed levers change speed, not results: batches made ahead in a thread are
the batches made in order (errors included), channels_last trains the numbers of the standard
layout up to float rounding, and checkpoints stay in the standard layout."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.errors import NetdslError
from netdsl.tasks.detect.data import load_detection_data
from netdsl.tasks.detect.hyp import read_hyp
from netdsl.tasks.detect.trainer import DetHyper, DetTrainer
from test_detection_train import TINY, make_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


@pytest.fixture
def made(tmp_path: Path):
    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    data = load_detection_data(make_folder(tmp_path / "data", n=10), 64, nc=2)

    def trainer(**over) -> DetTrainer:
        torch.manual_seed(0)
        return DetTrainer(netdsl.build(spec), data, replace(DetHyper(batch_size=4, img=64, ema=True), **over),
                          read_hyp(None)[0])
    return trainer


def test_batches_made_ahead_are_the_batches_in_order(made) -> None:
    t = made()
    ahead = list(t.prefetched(1))
    in_order = [(size, t.train_batch(idx, 1)) for idx, size in t.global_batches(1)]
    assert [s for s, _ in ahead] == [s for s, _ in in_order] == [4, 4, 2]
    for (_, (im_a, tg_a)), (_, (im_b, tg_b)) in zip(ahead, in_order):
        assert torch.equal(im_a, im_b) and torch.equal(tg_a, tg_b)


def test_an_error_making_a_batch_is_raised_at_that_batch(made, monkeypatch: pytest.MonkeyPatch) -> None:
    t = made()
    real = t.train_batch
    calls = []

    def failing(idx, epoch):
        calls.append(1)
        if len(calls) == 2:
            raise NetdslError("cannot read image: gone", path="images/train/3.png")
        return real(idx, epoch)

    monkeypatch.setattr(t, "train_batch", failing)
    got = t.prefetched(0)
    next(got)  # the first batch arrives; the second, made meanwhile, failed
    with pytest.raises(NetdslError, match="gone"):
        next(got)


def test_channels_last_trains_the_standard_layouts_numbers(made) -> None:
    rows = {}
    for cl in (False, True):
        t = made(channels_last=cl)
        conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == cl
        losses, _ = t.train_epoch()
        rows[cl] = losses
        state = t.state()
        assert all(v.is_contiguous() for v in state["model"].values())  # checkpoints: the standard layout
        assert all(v.is_contiguous() for v in state["live_model"].values())
        fresh = made(channels_last=not cl)
        fresh.restore(state, "last.pt")  # loads into the other layout
    assert rows[True] == pytest.approx(rows[False], rel=1e-4)


def test_predict_follows_the_models_layout_with_the_same_detections(tmp_path: Path) -> None:
    """`predict` in channels_last (as `netdsl detect` runs it) and one image a batch (its CPU
    default) finds what the standard layout in batches of 8 finds, up to float rounding."""
    import copy
    import doctest

    import numpy as np

    import netdsl.tasks.detect.predict as predict_module
    from netdsl.tasks.detect.predict import layout, predict

    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    torch.manual_seed(0)
    model = netdsl.build(spec)
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert (layout(model), layout(last)) == (torch.contiguous_format, torch.channels_last)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48 + 8 * k, 64, 3), dtype=np.uint8) for k in range(5)]
    standard = predict(model, images, img=64, conf=0.001, auto=True, batch=8)
    for got in (predict(last, images, img=64, conf=0.001, auto=True), predict(model, images, img=64, conf=0.001, auto=True)):
        assert [len(d) for d in got] == [len(d) for d in standard] and sum(map(len, standard)) > 0
        for a, b in zip(got, standard):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    result = doctest.testmod(predict_module)
    assert result.attempted >= 2 and result.failed == 0

"""`netdsl train` on a spec ending in `detect_v8`: ultralytics 8.4's recipe (trainer_v8). A tiny
64x64 anchor-free detector on the generated YOLO folder of test_detection_train.

The expected schedule figures are computed by hand in the comments from ultralytics 8.4's
formulas (engine/trainer.py) and cfg/default.yaml's values (../shared/reference/ultralytics-8.4.190)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from conftest import one_then_torchrun
from netdsl.cli import main
from netdsl.tasks.detect import task as train_command
from netdsl.tasks.detect.data import load_detection_data
from netdsl.tasks.detect.hyp import HYP_V8
from netdsl.tasks.detect.prepare import augment_hyp
from netdsl.tasks.detect.trainer_v8 import MAX_GRAD_NORM, V8Hyper, V8Trainer, choose_optimizer, param_groups_v8
from test_detection_train import make_folder

TINY_V8 = """\
net TinyV8(NCLS = 2)
input x: [3, H = 64, W = 64] where H % 32 == 0, W % 32 == 0
block cba(c, s = 1) = conv(c, 3, stride=s, padding=1, bias=false) -> batchnorm(eps=0.001, momentum=0.03) -> silu
b0 = x |> cba(8, 2)
b1 = b0 |> cba(16, 2)
b2 = b1 |> cba(16, 2)
b3 = b2 |> cba(32, 2)
b4 = b3 |> cba(32, 2)
box0 = b2 |> conv(16, 1)
cls0 = b2 |> conv(NCLS, 1)
box1 = b4 |> conv(16, 1)
cls1 = b4 |> conv(NCLS, 1)
output = detect_v8(cat(box0, cls0), cat(box1, cls1), classes=NCLS, strides=[8, 32], reg_max=4)
"""
FAST = ["--img", "64", "--batch-size", "4", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "tiny_v8.net"
    p.write_text(TINY_V8)
    return p


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")  # 8 training and 4 validation images, 2 classes


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def trainer(spec: Path, folder: Path, **hyper: object) -> V8Trainer:
    data = load_detection_data(str(folder), 64, stride=32, hyp=augment_hyp(HYP_V8))
    torch.manual_seed(0)
    settings = V8Hyper(**{"epochs": 2, "batch_size": 4, "img": 64, **hyper})  # type: ignore[arg-type]
    return V8Trainer(netdsl.build(str(spec)), data, settings, HYP_V8)


def test_run_writes_files_with_v8_losses(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(out),
                 "--img", "64", "--batch-size", "4"]) == 0
    for f in ("run.json", "spec.net", "metrics.csv", "curves.png", "samples.png", "last.pt", "best.pt"):
        assert (out / f).is_file(), f
    rs = rows(out)
    assert [r["epoch"] for r in rs] == ["1", "2"] and "obj" not in rs[0]
    for r in rs:
        for k in ("box", "cls", "dfl", "val_box", "val_cls", "val_dfl", "precision", "recall", "map50", "map50_95"):
            assert math.isfinite(float(r[k])), k
        assert float(r["box"]) > 0 and float(r["dfl"]) > 0
    printed = capsys.readouterr().out
    assert " dfl " in printed and "AdamW(lr=0.001667, momentum=0.9) chosen by --optimizer auto" in printed
    rj = json.loads((out / "run.json").read_text())
    assert rj["recipe"] == "v8" and rj["train"]["optimizer"] == "auto" and rj["train"]["close_mosaic"] == 10
    assert rj["hyp"]["dfl"] == 1.5 and rj["hyp"]["lrf"] == 0.01 and rj["spec"]["sets"]["NCLS"] == 2
    netdsl.load_weights(netdsl.build(str(spec)), str(out / "last.pt"))


def test_auto_optimizer_both_ways(spec: Path, folder: Path) -> None:
    # iterations = ceil(8 images / max(4, 64)) * epochs = epochs: SGD only above 10,000
    assert choose_optimizer("auto", 0.01, 0.937, 8, 4, 10_000, 2).name == "AdamW"
    assert choose_optimizer("auto", 0.01, 0.937, 8, 4, 10_001, 2).name == "SGD"
    # ceil(320,064 / max(16, 64)) = 5001 nominal batches, times 2 epochs = 10,002 > 10,000; one image
    # fewer than 64 * 5000 + 1: ceil(320,000 / 64) * 2 = 10,000, AdamW with round(0.01 / 84, 6)
    big, edge = (choose_optimizer("auto", 0.01, 0.937, 64 * k, 16, 2, 80) for k in (5001, 5000))
    assert (big.name, big.lr, big.momentum) == ("SGD", 0.01, 0.9)
    assert (edge.name, edge.lr, edge.momentum) == ("AdamW", 0.000119, 0.9)
    sgd = trainer(spec, folder, epochs=10_001)
    opt = sgd.optimizer
    assert isinstance(opt, torch.optim.SGD) and sgd.choice.auto
    assert all(g["lr"] == 0.01 and g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    assert sgd.warmup_bias_lr == 0.0  # auto zeroes it, as ultralytics
    adam = trainer(spec, folder)
    opt = adam.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    # round(0.002 * 5 / (4 + 2), 6) = round(0.0016667, 6) = 0.001667
    assert all(g["lr"] == 0.001667 and g["betas"] == (0.9, 0.999) for g in opt.param_groups)
    # the groups: biases and BatchNorm weights without decay; conv weights with 0.0005 * 4 * 16 / 64
    kinds = {g["kind"]: g for g in opt.param_groups}
    names = {id(p): n for n, p in adam.model.named_parameters()}
    assert all("bias" in names[id(p)] for p in kinds["bias"]["params"])
    assert all(p.dim() == 1 and "bias" not in names[id(p)] for p in kinds["bn"]["params"])
    assert all(p.dim() == 4 for p in kinds["weight"]["params"])
    assert (kinds["bias"]["weight_decay"], kinds["bn"]["weight_decay"]) == (0.0, 0.0)
    assert kinds["weight"]["weight_decay"] == pytest.approx(0.0005)
    trainable = [p for p in adam.model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)  # DFL's frozen weight in none
    assert sum(map(len, param_groups_v8(adam.model))) == len(trainable)
    # asked for by name: lr0 and momentum as given, the bias warmup kept
    explicit = trainer(spec, folder, optimizer="SGD")
    assert not explicit.choice.auto and explicit.warmup_bias_lr == 0.1
    assert all(g["lr"] == 0.01 and g["momentum"] == 0.937 for g in explicit.optimizer.param_groups)


def test_warmup_and_linear_decay(spec: Path, folder: Path) -> None:
    t = trainer(spec, folder, optimizer="SGD")
    # nb = ceil(8 / 4) = 2 batches an epoch; warmup max(round(3.0 * 2), 100) = 100 iterations
    assert t.batches_per_epoch() == 2 and t.warmup_iters() == 100
    groups = {g["kind"]: g for g in t.optimizer.param_groups}
    t.warmup(50, 0)
    # halfway: bias lr 0.1 -> 0.01 gives 0.055, weights 0 -> 0.01 give 0.005, momentum 0.8 -> 0.937
    # gives 0.8685, accumulate 1 -> 64 / 4 = 16 gives 8.5, rounded half to even by numpy: 8
    assert groups["bias"]["lr"] == pytest.approx(0.055) and groups["weight"]["lr"] == pytest.approx(0.005)
    assert groups["bn"]["momentum"] == pytest.approx(0.8685) and t.accumulate == 8
    t.warmup(100, 0)
    assert all(g["lr"] == pytest.approx(0.01) and g["momentum"] == pytest.approx(0.937) for g in groups.values())
    assert t.accumulate == 16
    groups["weight"]["lr"] = -1.0
    t.warmup(101, 0)  # past the warmup: nothing changes
    assert groups["weight"]["lr"] == -1.0
    # lf(x) = max(1 - x / 2, 0) * (1 - 0.01) + 0.01: lf(1) = 0.505, lf(2) = 0.01
    assert t.lf(0) == 1.0 and t.lf(1) == pytest.approx(0.505) and t.lf(2) == pytest.approx(0.01)
    t.scheduler_step(0)
    assert all(g["lr"] == pytest.approx(0.00505) for g in groups.values())
    t.warmup(75, 1)  # in epoch 1 the warmup aims at lr0 * lf(1): 0.75 * 0.00505 for the weights
    assert groups["weight"]["lr"] == pytest.approx(0.0037875)
    assert groups["bias"]["lr"] == pytest.approx(0.1 + 0.75 * (0.00505 - 0.1))
    # AdamW (auto): the bias lr starts at 0, its groups have no momentum to warm up
    a = trainer(spec, folder)
    a.warmup(50, 0)
    for g in a.optimizer.param_groups:
        assert g["lr"] == pytest.approx(0.5 * 0.001667) and "momentum" not in g and g["betas"] == (0.9, 0.999)
    assert trainer(spec, folder, epochs=3).warmup_iters() == 100
    no_warmup = trainer(spec, folder)
    no_warmup.hyp["warmup_epochs"] = 0.0
    assert no_warmup.warmup_iters() == -1


def test_close_mosaic_switches_mosaic_off_for_the_last_epochs(spec: Path, folder: Path) -> None:
    t = trainer(spec, folder, epochs=5, close_mosaic=2)
    assert [t.mosaic_on(e) for e in range(5)] == [True, True, True, False, False]
    # as an uninterrupted ultralytics run: close_mosaic >= epochs... only epochs - close_mosaic = 0 closes
    assert [trainer(spec, folder, epochs=5, close_mosaic=5).mosaic_on(e) for e in range(5)] == [False] * 5
    assert all(trainer(spec, folder, epochs=5, close_mosaic=10).mosaic_on(e) for e in range(5))
    assert all(trainer(spec, folder, epochs=5, close_mosaic=0).mosaic_on(e) for e in range(5))
    # the trainer asks the data for its batches with that flag
    seen: list[tuple[int, bool]] = []
    batch = t.data.train.batch

    def spy(idx, seed, epoch, mosaic=True):
        seen.append((epoch, mosaic))
        return batch(idx, seed, epoch, mosaic)

    t.data.train.batch = spy  # type: ignore[method-assign]
    t.train_batch(np.array([0, 1]), 2)
    t.train_batch(np.array([0, 1]), 3)
    assert seen == [(2, True), (3, False)]
    # without mosaic an image is drawn exactly as with mosaic probability 0: the same (seed, epoch,
    # index) draws, so resume stays exact
    mosaic_set = t.data.train
    plain = load_detection_data(str(folder), 64, stride=32, hyp={**augment_hyp(HYP_V8), "mosaic": 0.0}).train
    for i in range(len(mosaic_set)):
        a_im, a_lb = mosaic_set.item(i, 0, 3, mosaic=False)
        b_im, b_lb = plain.item(i, 0, 3)
        assert np.array_equal(a_im, b_im) and np.array_equal(a_lb, b_lb)
    assert any(not np.array_equal(mosaic_set.item(i, 0, 3)[0], plain.item(i, 0, 3)[0]) for i in range(8))


def test_gradients_are_clipped_before_each_step(spec: Path, folder: Path, monkeypatch) -> None:
    t = trainer(spec, folder, optimizer="SGD")
    t.gains = (7500.0, 500.0, 1500.0)  # a thousand times default.yaml's: gradients far above the limit
    norms: list[tuple[float, float]] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording(params, max_norm, **kw):
        params = [p for p in params if p.grad is not None]
        before = clip(params, max_norm=math.inf)
        total = clip(params, max_norm=max_norm, **kw)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        norms.append((float(before), float(after)))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    images, targets = t.train_batch(np.arange(4), 0)
    t.warmup(0, 0)  # accumulate 1: a step at the first iteration
    t.step(images, targets, 0)
    assert len(norms) == 1
    before, after = norms[0]
    assert before > 10 * MAX_GRAD_NORM and after == pytest.approx(MAX_GRAD_NORM, rel=1e-4)


class Interrupted(Exception):
    pass


def test_resume_equals_uninterrupted(spec: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["--data", str(folder), "--epochs", "2", "--close-mosaic", "1", *FAST]  # epoch 2 without mosaic
    assert main(["train", str(spec), *args, "--out", str(whole)]) == 0

    def stop(trainer) -> None:
        if trainer.epoch == 1:
            raise Interrupted

    monkeypatch.setattr(train_command, "after_epoch", stop)
    with pytest.raises(Interrupted):
        main(["train", str(spec), *args, "--out", str(cut)])
    assert len(rows(cut)) == 1
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = rows(whole), rows(cut)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ra:
            if k not in ("seconds", "samples_per_s"):
                assert ra[k] == rb[k], (k, ra[k], rb[k])
    ca, cb = (torch.load(p / "last.pt", weights_only=True) for p in (whole, cut))
    assert ca["recipe"] == cb["recipe"] == "v8" and ca["ema"] == cb["ema"] and ca["last_step"] == cb["last_step"]
    for entry in ("model", "live_model"):
        for k in ca[entry]:
            assert torch.equal(ca[entry][k], cb[entry][k]), (entry, k)
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):  # AdamW's state (auto on 8 images)
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


def test_bad_input_is_a_located_error(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnc: 2\nnames: [square, bar]\n")
    out = tmp_path / "r"
    assert main(["train", str(spec), "--data", str(yaml_file), "--set", "NCLS=3", "--out", str(out), *FAST]) == 2
    assert "nc = 2" in capsys.readouterr().err
    # a head of 3 classes written as a literal, data of 2: the error points at the spec's classes=
    three = tmp_path / "three.net"
    three.write_text(TINY_V8.replace("classes=NCLS", "classes=3").replace("conv(NCLS, 1)", "conv(3, 1)"))
    assert main(["train", str(three), "--data", str(folder), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{three}:13:" in err and "3 classes, the data 2" in err and "edit line 13" in err
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nobj: 1.0\n")  # YOLOv3's objectness gain: not in the v8 recipe
    assert main(["train", str(spec), "--data", str(folder), "--hyp", str(hyp), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter 'obj'" in err and "Traceback" not in err
    hyp.write_text("lr0: 0.01\ndfl: -1.5\n")
    assert main(["train", str(spec), "--data", str(folder), "--hyp", str(hyp), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{hyp}:2:" in err and "'dfl'" in err and "default.yaml has dfl: 1.5" in err
    assert main(["train", str(spec), "--data", str(folder), "--close-mosaic", "-1", "--out", str(out), *FAST]) == 2
    assert "--close-mosaic -1" in capsys.readouterr().err
    assert not out.exists()


def test_v8_flags_refused_for_a_yolov3_head(folder: Path, tmp_path: Path, capsys) -> None:
    from test_detection_train import TINY

    v3 = tmp_path / "tiny.net"
    v3.write_text(TINY)
    assert main(["train", str(v3), "--data", str(folder), "--optimizer", "AdamW", "--out", str(tmp_path / "r"),
                 *FAST]) == 2
    assert "--optimizer applies to networks ending in detect_v8" in capsys.readouterr().err


def test_default_yaml_values_have_ranges_and_pass_them() -> None:
    from netdsl.tasks.detect.checks import HYP_RANGES, HYP_V8_RANGES, hyp_problem

    ranges = {**HYP_RANGES, **HYP_V8_RANGES}
    assert set(HYP_V8) <= set(ranges)
    assert all(hyp_problem(k, v) is None for k, v in HYP_V8.items())
    assert hyp_problem("dfl", -1.0) is not None


def test_two_processes_under_torchrun(spec: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    """test_detection_train's torchrun test on the v8 recipe: two gloo ranks split each global batch
    of 4; only BatchNorm's per-rank statistics differ from one process, so the losses are close."""

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["train", str(spec), "--data", str(folder), "--epochs", "1", "--img", "64", "--batch-size", "4",
            "--device", "cpu"]
    ddp = one_then_torchrun(args, tmp_path)
    run = tmp_path / "two"
    rj = json.loads((run / "run.json").read_text())
    assert rj["world_size"] == 2 and rj["recipe"] == "v8" and ddp.stdout.count("epoch 1/1") == 1
    (a,), (b,) = rows(tmp_path / "one"), rows(run)
    for k in ("box", "cls", "dfl"):
        assert abs(float(a[k]) - float(b[k])) < 0.1 * float(a[k]), (k, a[k], b[k])
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert len(rows(run)) == 2

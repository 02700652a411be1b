"""`netdsl train` on a spec ending in `detect`: run directory, learning, freezing, exact
resume, located data errors, class-count conflicts. A tiny 64x64 detector on a generated YOLO folder."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from conftest import one_then_torchrun
from netdsl.cli import main
from netdsl.tasks.detect import task as train_command

TINY = """\
net TinyDet(NCLS = 2)
input x: [3, H = 64, W = 64] where H % 32 == 0, W % 32 == 0
block cba(c, s = 1) = conv(c, 3, stride=s, padding=1, bias=false) -> batchnorm(eps=0.001, momentum=0.03) -> leaky_relu(0.1)
b0 = x |> cba(8, 2)
b1 = b0 |> cba(16, 2)
b2 = b1 |> cba(16, 2)
b3 = b2 |> cba(32, 2)
b4 = b3 |> cba(32, 2)
output = detect(b2, b4, classes=NCLS, strides=[8, 32], anchors=[[8, 8, 16, 16, 24, 24], [32, 32, 48, 48, 64, 64]])
"""
FAST = ["--img", "64", "--batch-size", "4", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


def make_folder(root: Path, n: int = 8, seed: int = 0) -> Path:
    """A YOLO folder: images/{train,val} and labels/{train,val}; bright squares (class 0) and
    wide bars (class 1) on dark noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            im = rng.integers(0, 40, (64, 64, 3)).astype(np.uint8)
            lines = []
            for _ in range(int(rng.integers(1, 3))):
                c = int(rng.integers(0, 2))
                w, h = (16, 16) if c == 0 else (28, 10)
                x0, y0 = int(rng.integers(0, 64 - w)), int(rng.integers(0, 64 - h))
                im[y0:y0 + h, x0:x0 + w] = (220, 200, 60) if c == 0 else (60, 200, 220)
                lines.append(f"{c} {(x0 + w / 2) / 64:.6f} {(y0 + h / 2) / 64:.6f} {w / 64:.6f} {h / 64:.6f}")
            Image.fromarray(im).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.net"
    p.write_text(TINY)
    return p


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_run_writes_files_and_finite_losses(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(out),
                 "--img", "64", "--batch-size", "4"]) == 0
    for f in ("run.json", "spec.net", "metrics.csv", "curves.png", "samples.png", "last.pt", "best.pt"):
        assert (out / f).is_file(), f
    rs = rows(out)
    assert [r["epoch"] for r in rs] == ["1", "2"]
    for r in rs:
        for k in ("box", "obj", "cls", "val_box", "val_obj", "val_cls", "precision", "recall", "map50", "map50_95"):
            assert math.isfinite(float(r[k])), k
        assert float(r["box"]) > 0 and float(r["obj"]) > 0
    printed = capsys.readouterr().out
    assert "box " in printed and "obj " in printed and "cls " in printed and "mAP@0.5:0.95" in printed
    import json

    rj = json.loads((out / "run.json").read_text())
    assert rj["task"] == "detect" and rj["nc"] == 2 and rj["spec"]["sets"]["NCLS"] == 2
    # last.pt is a checkpoint netdsl.load_weights (and so `netdsl detect --weights`) reads
    model = netdsl.build(str(spec))
    netdsl.load_weights(model, str(out / "last.pt"))


def test_loss_decreases_on_tiny_set(spec: Path, folder: Path) -> None:
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetTrainer

    torch.manual_seed(0)
    data = load_detection_data(str(folder), 64, nc=2)
    data.train.augment = False
    trainer = DetTrainer(netdsl.build(str(spec)), data, DetHyper(epochs=30, batch_size=64, img=64),  # accumulate 1
                         {**read_hyp(None)[0], "lr0": 0.1})
    trainer.warmup = lambda ni, epoch: None  # type: ignore[method-assign]  # 12 steps at lr0: v9.6.0 would warm 1000
    losses = []
    for _ in range(12):
        items, _ = trainer.train_epoch()
        trainer.history.rows.append(None)  # type: ignore[arg-type]  # advance the epoch counter
        losses.append(sum(items))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses  # 0.74 when written


def test_freeze_leaves_frozen_weights_unchanged(spec: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--freeze", "2", "--out", str(out),
                 "--img", "64", "--batch-size", "64", "--quiet"]) == 0  # accumulate 1: a step per epoch
    torch.manual_seed(0)
    initial = netdsl.build(str(spec)).state_dict()
    trained = torch.load(out / "last.pt", weights_only=True)["model"]
    frozen = [k for k in initial if k.startswith(("b0.", "b1.")) and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))]
    assert frozen
    for k in frozen:
        assert torch.equal(initial[k], trained[k]), k
    trainable = [k for k in initial if not k.startswith(("b0.", "b1.")) and k.endswith(("weight", "bias"))]
    assert all(not torch.equal(initial[k], trained[k]) for k in trainable)


class Interrupted(Exception):
    pass


def test_resume_equals_uninterrupted(spec: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(whole), *FAST]) == 0

    def stop(trainer) -> None:
        if trainer.epoch == 1:
            raise Interrupted

    monkeypatch.setattr(train_command, "after_epoch", stop)
    with pytest.raises(Interrupted):
        main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(cut), *FAST])
    assert len(rows(cut)) == 1
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = rows(whole), rows(cut)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ra:
            if k not in ("seconds", "samples_per_s"):
                assert ra[k] == rb[k], (k, ra[k], rb[k])
    same_checkpoints(whole / "last.pt", cut / "last.pt")


def same_checkpoints(a: Path, b: Path) -> None:
    """Bit-identical EMA and live weights, EMA update counts, momentum buffers and pending gradients."""
    ca = torch.load(a, weights_only=True)
    cb = torch.load(b, weights_only=True)
    assert ca["epoch"] == cb["epoch"] and ca["ema"] == cb["ema"] and ca["accumulate"] == cb["accumulate"]
    for entry in ("model", "live_model"):
        assert ca[entry].keys() == cb[entry].keys()
        for k in ca[entry]:
            assert torch.equal(ca[entry][k], cb[entry][k]), (entry, k)
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])
    for ga, gb in zip(ca["grads"], cb["grads"]):
        assert (ga is None and gb is None) or torch.equal(ga, gb)


def test_bad_label_is_reported_with_file_and_line(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    bad = folder / "labels" / "train" / "3.txt"
    bad.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "expected 5 fields" in err
    assert not out.exists()
    # --skip-bad skips the image and says so
    assert main(["train", str(spec), "--data", str(folder), "--out", str(out), "--epochs", "1", "--skip-bad",
                 "--img", "64", "--batch-size", "4"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_class_count_conflict_is_an_error(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnc: 2\nnames: [square, bar]\n")
    assert main(["train", str(spec), "--data", str(yaml_file), "--set", "NCLS=3",
                 "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "nc = 2" in err and "3 classes" in err
    assert main(["train", str(spec), "--set", "NCLS=3", "--out", str(tmp_path / "r"), *FAST]) == 2  # embedded: 2
    assert "2 classes, not 3" in capsys.readouterr().err
    # the class count follows the data's when --set does not give it
    one = make_folder(tmp_path / "one")
    for f in (one / "labels").rglob("*.txt"):
        f.write_text("".join(line.replace("1 ", "0 ", 1) if line.startswith("1 ") else line
                             for line in f.read_text().splitlines(True)))
    assert main(["train", str(spec), "--data", str(one), "--epochs", "1", "--out", str(tmp_path / "r1"), *FAST]) == 0
    import json

    assert json.loads((tmp_path / "r1" / "run.json").read_text())["spec"]["sets"]["NCLS"] == 1


def test_detection_flags_refused_for_colourization(capsys) -> None:
    root = Path(__file__).resolve().parents[2]
    assert main(["train", str(root / "specs" / "unet.net"), "--img", "64"]) == 2
    assert "--img applies to detection specs" in capsys.readouterr().err
    # the v8 recipe's flags too: before, a colourization run ignored them without a word
    assert main(["train", str(root / "specs" / "unet.net"), "--optimizer", "SGD"]) == 2
    assert "--optimizer applies to detection specs" in capsys.readouterr().err
    assert main(["train", str(root / "specs" / "unet.net"), "--close-mosaic", "0"]) == 2
    assert "--close-mosaic applies to detection specs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- EMA

def test_ema_is_validated_and_saved_as_the_model(spec: Path, folder: Path, tmp_path: Path) -> None:
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import EMA_DECAY, DetHyper, DetTrainer

    data = load_detection_data(str(folder), 64, nc=2)
    trainers, steps = {}, []
    for ema in (True, False):
        torch.manual_seed(0)
        trainers[ema] = DetTrainer(netdsl.build(str(spec)), data, DetHyper(epochs=3, batch_size=4, img=64, ema=ema),
                                   read_hyp(None)[0])
        if ema:
            trainers[ema].optimizer.register_step_post_hook(lambda *_: steps.append(1))
        trainers[ema].run_epoch()
        trainers[ema].run_epoch()
    t, plain = trainers[True], trainers[False]
    # the average only watches: the live weights train exactly as without it
    for (k, a), b in zip(t.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(a, b), k
    # one update per optimizer step (early in v9.6.0's 1000-iteration warmup, a step per batch)
    assert t.ema.updates == len(steps) >= 1
    # the EMA differs from the live weights, and is their ramped average (decay after 4 updates)
    live = dict(t.model.named_parameters())
    ema = dict(t.ema.module.named_parameters())
    assert any(not torch.equal(live[k], ema[k]) for k in live)
    d = EMA_DECAY * (1 - math.exp(-t.ema.updates / 2000))
    assert 0 < d < 0.003  # the ramp: early on the average stays close to the live weights
    # validation and the checkpoint use the averaged weights
    state = t.state()
    for k, v in t.ema.module.state_dict().items():
        assert torch.equal(state["model"][k], v), k
    for k, v in t.model.state_dict().items():
        assert torch.equal(state["live_model"][k], v), k
    assert state["ema"]["updates"] == t.ema.updates
    val_ema = t.validate()
    saved = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.model.load_state_dict(t.ema.module.state_dict())  # the EMA's weights as the live model
    t.ema = None
    assert t.validate() == val_ema
    t.model.load_state_dict(saved)
    assert "ema" not in plain.state() and "live_model" not in plain.state()


def test_no_ema_flag(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "1", "--out", str(out), "--no-ema", *FAST]) == 0
    import json

    assert json.loads((out / "run.json").read_text())["train"]["ema"] is False
    ck = torch.load(out / "last.pt", weights_only=True)
    assert "ema" not in ck and "live_model" not in ck
    # resuming keeps the run's choice: saying it again is fine, asking for the other is refused
    assert main(["train", "--resume", str(out), "--epochs", "2", "--ema", "--quiet"]) == 2
    assert "started without EMA weights" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-ema", "--quiet"]) == 0
    assert len(rows(out)) == 2


def test_colourization_only_flags_refused(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    for flag in (["--compile"], ["--colours", "8"]):
        assert main(["train", str(spec), "--data", str(folder), "--out", str(tmp_path / "r"), *flag, *FAST]) == 2
        assert f"{flag[0]} applies to colourization training" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_default_run_keeps_ema(spec: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "1", "--out", str(out), *FAST]) == 0
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["ema"]["updates"] >= 1 and ck["ema"]["decay"] == 0.9999 and ck["ema"]["tau"] == 2000
    assert any(not torch.equal(ck["model"][k], ck["live_model"][k]) for k in ck["model"])
    # netdsl.load_weights (so `netdsl detect --weights` and `--weights` fine-tuning) reads the EMA
    model = netdsl.build(str(spec))
    netdsl.load_weights(model, str(out / "last.pt"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-ema", "--quiet"]) == 2
    assert "started with EMA weights" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- SIGKILL

def test_resume_after_sigkill_equals_uninterrupted(spec: Path, folder: Path, tmp_path: Path) -> None:
    """`netdsl train` in its own process, killed with SIGKILL as soon as epoch 1's last.pt exists
    (so somewhere in epoch 2 or its file writes), then `--resume`d: metrics.csv and the weights
    equal an uninterrupted run's, bit for bit (CPU, one thread)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    args = ["train", str(spec), "--data", str(folder), "--epochs", "3", *FAST]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "netdsl.cli", *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (cut / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # killed mid-run: last.pt is written first, then metrics.csv (each atomically), so the kill
    # may find epoch 1's checkpoint without a metrics.csv yet; resume writes it from the checkpoint
    assert torch.load(cut / "last.pt", weights_only=True)["epoch"] in (1, 2)
    assert not (cut / "metrics.csv").exists() or len(rows(cut)) < 3
    assert main(["train", str(spec), *args[2:], "--out", str(whole)]) == 0  # the reference, this process
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = rows(whole), rows(cut)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        for k in ra:
            if k not in ("seconds", "samples_per_s"):
                assert ra[k] == rb[k], (ra["epoch"], k, ra[k], rb[k])
    same_checkpoints(whole / "last.pt", cut / "last.pt")
    same_checkpoints(whole / "best.pt", cut / "best.pt")
    assert not list(cut.glob(".*.tmp"))


# --------------------------------------------------------------------------------------- fine-tuning

def test_fine_tune_from_saved_weights_trains_only_unfrozen(spec: Path, folder: Path, tmp_path: Path) -> None:
    """The course's path: a model trained briefly and saved (best.pt), reloaded with `--weights`
    and `--freeze 2` (b0 and b1; `--freeze-bn eval` so their BatchNorm statistics stay too):
    the frozen statements' tensors are bit-identical to the saved ones after training, every
    other weight and bias has changed, and the optimizer holds only the unfrozen parameters."""
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(first), *FAST]) == 0
    saved = torch.load(first / "best.pt", weights_only=True)["model"]
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "2", "--out", str(tuned),
                 "--weights", str(first / "best.pt"), "--freeze", "2", "--freeze-bn", "eval",
                 "--img", "64", "--batch-size", "64", "--quiet"]) == 0  # accumulate 1: a step per batch
    ck = torch.load(tuned / "last.pt", weights_only=True)
    frozen = [k for k in saved if k.startswith(("b0.", "b1."))]
    unfrozen = [k for k in saved if not k.startswith(("b0.", "b1.")) and k.endswith(("weight", "bias"))]
    assert len(frozen) >= 8 and unfrozen  # conv weight, BN weight, bias, mean, var, count (x2)
    for entry in ("model", "live_model"):  # the EMA's weights and the live ones
        for k in frozen:
            assert torch.equal(saved[k], ck[entry][k]), (entry, k)
        changed = [k for k in unfrozen if not torch.equal(saved[k], ck[entry][k])]
        assert changed == unfrozen, (entry, sorted(set(unfrozen) - set(changed)))
    trainable = sum(1 for k in unfrozen)
    assert len(ck["optimizer"]["state"]) == trainable
    import json

    rj = json.loads((tuned / "run.json").read_text())
    assert rj["weights"] == str(first / "best.pt") and rj["freeze"] == {"first": 2, "names": [], "bn": "eval"}


def test_course_hyp_file_reads_and_reaches_the_augmentation(tmp_path: Path) -> None:
    """The course's own hyp.scratch.yaml (it has copy_paste) is read as it is; its augmentation
    keys reach the data; a mixup or copy-paste the trainer does not do is a note, not silence."""
    from netdsl.tasks.detect.augment import DEFAULT_AUGMENT
    from netdsl.tasks.detect.hyp import HYP_SCRATCH, read_hyp
    from netdsl.tasks.detect.prepare import augment_hyp

    ref = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ultralytics-yolov3-v9.6.0" / "hyp.scratch.yaml"
    if ref.exists():
        hyp, notes = read_hyp(str(ref))
        assert notes == [] and {k: hyp[k] for k in HYP_SCRATCH} == HYP_SCRATCH
    f = tmp_path / "hyp.yaml"
    f.write_text("mosaic: 0.5\nscale: 0.25\nmixup: 0.1\n")
    hyp, notes = read_hyp(str(f))
    assert augment_hyp(hyp) == {**DEFAULT_AUGMENT, "mosaic": 0.5, "scale": 0.25}
    assert len(notes) == 1 and "mixup" in notes[0] and "not implemented" in notes[0]


# --------------------------------------------------------------------------------------- DDP

def test_two_processes_under_torchrun(spec: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    """`torchrun --nproc_per_node 2 -m netdsl.cli train` on a detection spec: two gloo processes,
    each training its half of every global batch of 4; rank 0 alone prints and writes. Same
    initial weights, order and augmentation as one process: only BatchNorm's per-rank statistics
    (2 images each) differ, so the losses are close, not equal."""
    import json

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["train", str(spec), "--data", str(folder), "--epochs", "2", "--img", "64", "--batch-size", "4",
            "--device", "cpu"]
    ddp = one_then_torchrun(args, tmp_path)
    run = tmp_path / "two"
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert ddp.stdout.count("epoch 2/2") == 1 and "2 processes" in ddp.stdout  # rank 1 prints nothing
    for f in ("last.pt", "best.pt", "metrics.csv", "curves.png", "samples.png"):
        assert (run / f).is_file(), f
    one, two = rows(tmp_path / "one"), rows(run)
    assert len(two) == 2
    for a, b in zip(one, two):
        for k in ("box", "obj", "cls"):
            assert abs(float(a[k]) - float(b[k])) < 0.1 * float(a[k]), (k, a[k], b[k])
        assert float(b["samples_per_s"]) > 0 and math.isfinite(float(b["map50"]))
    # the checkpoint is a single-process one: netdsl.load_weights reads it, --resume continues it
    netdsl.load_weights(netdsl.build(str(spec)), str(run / "last.pt"))
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert len(rows(run)) == 3


def test_runs_from_before_mosaic_resume_without_it(spec: Path, folder: Path, tmp_path: Path, monkeypatch) -> None:
    """A run directory written before mosaic/affine augmentation existed (no "augment" in run.json)
    resumes with them off, as it was trained; a current one keeps them."""
    import json

    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "1", "--out", str(out), *FAST]) == 0
    seen = []
    monkeypatch.setattr(train_command, "after_epoch", lambda t: seen.append(dict(t.data.train.hyp)))
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert seen[-1]["mosaic"] == 1.0 and seen[-1]["scale"] == 0.5
    rj = json.loads((out / "run.json").read_text())
    del rj["augment"]
    (out / "run.json").write_text(json.dumps(rj))
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert seen[-1]["mosaic"] == 0.0 and seen[-1]["scale"] == 0.0 and seen[-1]["translate"] == 0.0
    assert seen[-1]["fliplr"] == 0.5 and len(rows(out)) == 3


def test_darknet_decoding_is_refused_for_training(folder: Path, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "dark.net"
    spec.write_text(TINY.replace("[32, 32, 48, 48, 64, 64]])", '[32, 32, 48, 48, 64, 64]], decode="darknet")'))
    assert main(["train", str(spec), "--data", str(folder), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "ultralytics parametrisation" in err and "dark.net:" in err
    assert not (tmp_path / "r").exists()

"""`netdsl train --ema`: the EMA weights are evaluated and checkpointed, the live weights train
exactly as without EMA, `--resume` continues an EMA run exactly, and `--no-ema` is the course's
setup."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import test_train_resume
from netdsl.cli import main
from netdsl.tasks.colourize.data import Tensors
from netdsl.tasks.colourize.loop import Hyper, Trainer, ema_settings
from netdsl.tasks.colourize.rundir import RunDir
from test_train_resume import ARGS, Toy, metrics

# The fixtures and metrics() are test_train_resume's: the same stand-in runs. Bound by assignment
# (pytest collects fixtures from module attributes) rather than imported, since a test's
# parameter of the same name would read as redefining an unused import.
photos, cache, env = test_train_resume.photos, test_train_resume.cache, test_train_resume.env


class Crash(Exception):
    pass


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def equal_states(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_ema_settings_scale_with_the_run() -> None:
    assert ema_settings(50) == (0.98, 50.0)  # the defaults: 5000 patches, batch 100
    decay, tau = ema_settings(3)
    assert decay == pytest.approx(1 - 1 / 3) and tau == 3.0
    assert ema_settings(0) == (0.0, 1.0)


def test_ema_checkpoint_and_live_weights_match_no_ema(photos: Path, tmp_path: Path) -> None:
    common = ["train", "toy.net", "--data", str(photos), "--epochs", "2", *ARGS]
    assert main([*common, "--out", "ema", "--ema"]) == 0
    assert main([*common, "--out", "plain", "--no-ema"]) == 0
    e, p = load(tmp_path / "ema" / "last.pt"), load(tmp_path / "plain" / "last.pt")
    assert "ema" not in p and "live" not in p  # the course's setup: one set of weights
    assert e["ema"]["updates"] == 2 * 3 and e["ema"]["decay"] == pytest.approx(1 - 1 / 3)
    # The average reads the live weights and draws no random numbers: training is untouched.
    assert equal_states(e["live"], p["model"])
    assert not equal_states(e["model"], e["live"])  # "model" holds the averaged weights
    assert [m[1] for m in metrics(tmp_path / "ema")] == [m[1] for m in metrics(tmp_path / "plain")]  # train loss
    assert metrics(tmp_path / "ema") != metrics(tmp_path / "plain")  # validation reads the EMA
    meta = (tmp_path / "ema" / "run.json").read_text()
    assert '"ema": true' in meta


def test_ema_resume_matches_uninterrupted(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["train", "toy.net", "--data", str(photos), "--epochs", "3", "--ema", *ARGS]
    assert main([*common, "--out", "full"]) == 0
    real = RunDir.save_epoch

    def crash_after_one(self: RunDir, trainer, fp):  # type: ignore[no-untyped-def]
        real(self, trainer, fp)
        if trainer.epoch == 1:
            raise Crash

    monkeypatch.setattr(RunDir, "save_epoch", crash_after_one)
    with pytest.raises(Crash):
        main([*common, "--out", "part"])
    monkeypatch.setattr(RunDir, "save_epoch", real)
    assert main(["train", "--resume", "part", "--ema", "--quiet"]) == 0  # a matching --ema is accepted
    assert metrics(tmp_path / "part") == metrics(tmp_path / "full")
    a, b = load(tmp_path / "part" / "last.pt"), load(tmp_path / "full" / "last.pt")
    assert equal_states(a["model"], b["model"]) and equal_states(a["live"], b["live"]) and a["ema"] == b["ema"]


def test_resume_refuses_a_different_ema_setting(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "toy.net", "--data", str(photos), "--epochs", "1", "--no-ema", *ARGS, "--out", "r"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "r", "--ema", "--epochs", "2"]) == 2
    assert "started without EMA weights" in capsys.readouterr().err


def test_frozen_parameters_stay_exact_under_ema(photos: Path) -> None:
    torch.manual_seed(0)
    x = torch.rand(40, 1, 32, 32)
    y = torch.randint(0, 24, (40, 32, 32))
    model = Toy()
    for p in model.net[0].parameters():
        p.requires_grad_(False)
    start = {k: v.clone() for k, v in model.net[0].state_dict().items()}
    trainer = Trainer(model, Tensors(x, y, x[:8], y[:8]), Hyper(batch_size=10, ema=True))
    trainer.run_epoch()
    avg = trainer.ema.module.net[0].state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(avg[k], start[k]) for k in start)
    assert not torch.equal(trainer.ema.module.net[4].weight, model.net[4].weight)  # type: ignore[union-attr]


def test_old_runs_resume_without_ema(photos: Path, tmp_path: Path) -> None:
    """A run.json from before EMA, bf16 and channels_last has no ema/precision/layout fields: it resumes as it ran."""
    import json

    assert main(["train", "toy.net", "--data", str(photos), "--epochs", "1", "--no-ema", *ARGS, "--out", "old"]) == 0
    rj = json.loads((tmp_path / "old" / "run.json").read_text())
    for k in ("ema", "precision", "compile", "channels_last", "fused"):
        rj["train"].pop(k)
    (tmp_path / "old" / "run.json").write_text(json.dumps(rj))
    assert main(["train", "--resume", "old", "--epochs", "2", "--quiet"]) == 0
    assert "ema" not in load(tmp_path / "old" / "last.pt")


def test_ema_model_is_what_predict_and_weights_use(photos: Path, tmp_path: Path) -> None:
    assert main(["train", "toy.net", "--data", str(photos), "--epochs", "1", "--ema", *ARGS, "--out", "w"]) == 0
    ckpt = load(tmp_path / "w" / "best.pt")
    from netdsl.weights import load_weights

    m = Toy()
    load_weights(m, str(tmp_path / "w" / "best.pt"))
    assert equal_states(m.state_dict(), ckpt["model"])
    assert isinstance(m, nn.Module)


def test_recompute_bn_gives_the_averaged_weights_their_own_statistics() -> None:
    import contextlib

    from netdsl.tasks.colourize.loop import recompute_bn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    x = torch.rand(30, 1, 8, 8)
    rng = torch.get_rng_state()
    recompute_bn(net, x, 10, contextlib.nullcontext)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed in eval mode: no random numbers
    with torch.no_grad():
        h = net[0](x)
    assert torch.allclose(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert net[1].momentum == 0.1 and not net.training

"""`--precision`: auto picks mixed precision only where the hardware runs it natively, the choice is
printed and recorded in run.json, `--resume` keeps it, and bf16 (and fp16 with its gradient
scaler) really changes the arithmetic of the training forward pass and nothing else."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.tasks import precision as P
from test_detection_train import FAST, TINY, make_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


# --- resolution -------------------------------------------------------------------------------

def test_the_command_line_offers_precisions_choices() -> None:
    """commands/train.py spells the choices out (its --help must not import torch): the same as
    `precision.CHOICES`."""
    import argparse

    import netdsl.commands.train as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    (action,) = [a for a in parser._actions if "--precision" in a.option_strings]
    assert tuple(action.choices) == P.CHOICES


def test_auto_on_a_cpu_follows_its_bf16_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "cpu_bf16", lambda: "AMX")
    p = P.resolve(None, "cpu")
    assert (p.used, p.requested, p.dtype) == ("bf16", "auto", torch.bfloat16)
    assert "AMX" in p.why and "opts out" in p.describe()
    monkeypatch.setattr(P, "cpu_bf16", lambda: None)
    p = P.resolve("auto", "cpu")
    assert (p.used, p.dtype, p.scaled) == ("fp32", None, False)
    assert "emulated" in p.describe()


def test_auto_on_cuda_takes_bf16_else_scaled_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve("auto", "cuda").used == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    p = P.resolve("auto", "cuda")
    assert (p.used, p.scaled) == ("fp16", True)


def test_explicit_choices_and_refusals() -> None:
    assert P.resolve("bf16", "cpu").used == "bf16"  # emulated, but asked for
    assert P.resolve("fp32", "cuda").used == "fp32"
    with pytest.raises(NetdslError, match="fp16 needs a CUDA device"):
        P.resolve("fp16", "cpu")
    with pytest.raises(NetdslError, match="unknown precision"):
        P.resolve("fp8", "cpu")
    with pytest.raises(NetdslError, match="needs a CUDA device"):
        P.of_run("fp16", "cpu")


def test_cpu_flags_decide_where_torch_cannot_say(monkeypatch: pytest.MonkeyPatch) -> None:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.delattr(torch.cpu, probe, raising=False)
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert P.cpu_bf16() == "AVX-512 BF16"
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "amx_tile", "amx_bf16"})
    assert P.cpu_bf16() == "AMX"
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2"})
    assert P.cpu_bf16() is None


def test_this_machine_agrees_with_torch() -> None:
    """The probe reads torch's own CPU checks: bf16 exactly where torch says AMX or AVX-512 BF16."""
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert (P.resolve("auto", "cpu").used == "bf16") == native


# --- detection ------------------------------------------------------------------------------

@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.net"
    p.write_text(TINY)
    return p


def test_detection_records_and_keeps_its_precision(spec: Path, tmp_path: Path, capsys) -> None:
    folder = make_folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", str(folder), "--epochs", "1", "--out", str(out), *FAST]
    assert main([*args, "--precision", "bf16"]) == 0
    rj = json.loads((out / "run.json").read_text())
    assert rj["precision"] == {"requested": "bf16", "used": "bf16", "why": "asked for"}
    assert rj["train"]["precision"] == "bf16"
    assert main(["train", "--resume", str(out), "--epochs", "2", "--precision", "fp32", "--quiet"]) == 2
    assert "--resume takes its settings from the run directory; drop --precision" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and "scaler" not in ck


def test_detection_default_is_auto(spec: Path, tmp_path: Path, capsys) -> None:
    folder = make_folder(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(folder), "--epochs", "1", "--out", str(out), "--img", "64",
                 "--batch-size", "4"]) == 0
    rj = json.loads((out / "run.json").read_text())
    want = P.resolve("auto", "cpu")
    assert rj["precision"] == want.to_json() and rj["train"]["precision"] == want.used
    assert want.describe() in capsys.readouterr().out


def _trainer(spec: Path, tmp_path: Path, used: str):
    import netdsl
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.trainer import DetHyper, DetTrainer

    torch.manual_seed(0)
    model = netdsl.build(spec)
    data = load_detection_data(make_folder(tmp_path / f"data-{used}"), 64, nc=2)
    return DetTrainer(model, data, DetHyper(batch_size=4, img=64, precision=used, ema=False), read_hyp(None)[0])


def test_bf16_runs_the_training_forward_in_bf16_and_the_loss_in_fp32(spec: Path, tmp_path: Path) -> None:
    seen: list[torch.dtype] = []
    for used in ("fp32", "bf16"):
        t = _trainer(spec, tmp_path, used)
        conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
        h = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        images, targets = t.data.train.batch(range(4))
        items = t.step(images, targets, 0)
        h.remove()
        assert items.dtype == torch.float32 and torch.isfinite(items).all()
        assert all(p.dtype == torch.float32 for p in t.model.parameters())  # the weights stay fp32
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in t.model.parameters())
        t.validate()  # validation decodes in float32 whatever the run's precision
    assert seen == [torch.float32, torch.bfloat16]


def test_fp16_scaler_steps_and_is_checkpointed(spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16's gradient scaler, run on the CPU (CUDA's is the same class): it scales, steps,
    and goes into the checkpoint and back."""
    import netdsl.tasks.detect.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "of_run", lambda used, device, path=None: P.Precision("fp16", "fp16", "test", "cpu"))
    t = _trainer(spec, tmp_path, "fp16")
    assert t.scaler is not None
    before = [p.detach().clone() for p in t.params]
    images, targets = t.data.train.batch(range(4))
    start = t.scaler.get_scale()
    for ni in range(12):  # accumulate is 1 in early warmup: every iteration steps, or is skipped on overflow
        t.warmup(ni, 0)
        t.step(images, targets, ni)
        if any(not torch.equal(a, p) for a, p in zip(before, t.params)):
            break
    assert any(not torch.equal(a, p) for a, p in zip(before, t.params))  # some step was taken
    assert t.scaler.get_scale() <= start  # halved after each overflowed (skipped) step, else kept
    state = t.state()
    assert state["scaler"]["scale"] == t.scaler.get_scale()
    t2 = _trainer(spec, tmp_path / "again", "fp16")
    t2.restore(state, "last.pt")
    assert t2.scaler is not None and t2.scaler.get_scale() == t.scaler.get_scale()


# --- colourization ----------------------------------------------------------------------------

def test_colourization_records_auto_and_refuses_fp16_on_a_cpu(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = ["train", "specs/pool_upsample.net", "--epochs", "1", "--max-train", "40", "--max-val", "20",
            "--batch-size", "20", "--quiet", "--out", str(out)]
    assert main([*base, "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err and not out.exists()
    assert main(base) == 0
    rj = json.loads((out / "run.json").read_text())
    want = P.resolve("auto", "cpu")
    assert rj["precision"] == want.to_json() and rj["train"]["precision"] == want.used
    other = "bf16" if want.used == "fp32" else "fp32"
    assert main(["train", "--resume", str(out), "--epochs", "2", "--precision", other, "--quiet"]) == 2
    assert "drop --precision" in capsys.readouterr().err


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(P)
    assert result.failed == 0 and result.attempted >= 4

"""`netdsl detect` and detection training: resume after a relative --data, clean
errors for unwritable outputs, absurd --img, out-of-range hyperparameters and edited run.json
files (item 13), distinct output names (item 14), the class-count hint (item 16).

Fixtures as the issue gives them: `sdet.net`, and `good/` (images/{train,val}/im0..3.png, 48x64 RGB,
one box each)."""
from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from netdsl.cli import main, make_parser
from netdsl.commands.train import analyse_spec, build_model
from netdsl.tasks.detect import prepare as detect_prepare
from netdsl.tasks.engine import Compiler, choose
from netdsl.tasks.train import TASKS
from netdsl.values import parse_sets
from spec_fixtures import SDET

FAST = ["--img", "64", "--batch-size", "4", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small networks on one thread


def make_good(root: Path, classes: int = 1) -> Path:
    """The issue's `good/`: 4 training and 4 validation 48x64 RGB images, one box each (class
    `i % classes`, so `classes=2` makes two-class data)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "images" / split / f"im{i}.png")
            (root / "labels" / split / f"im{i}.txt").write_text(f"{i % classes} 0.47 0.42 0.31 0.42\n")
    return root


def write_spec(path: Path, text: str = SDET) -> Path:
    path.write_text(text)
    return path


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


# --------------------------------------------------------------------------- item 7: relative --data

def test_resume_after_a_relative_data_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's commands, verbatim apart from the speed flags: run.json stores the resolved
    path, the first run read the relative one; both must fingerprint alike."""
    monkeypatch.chdir(tmp_path)
    write_spec(Path("sdet.net"))
    make_good(Path("good"))
    assert main(["train", "sdet.net", "--data", "good", "--out", "r", "--epochs", "1", *FAST]) == 0
    assert json.loads(Path("r/run.json").read_text())["data"]["source"] == str((tmp_path / "good").resolve())
    assert main(["train", "--resume", "r", "--epochs", "2", "--quiet"]) == 0
    assert [r["epoch"] for r in rows(Path("r"))] == ["1", "2"]


def test_fingerprint_is_where_independent_but_content_sensitive(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.trainer import data_fingerprint

    monkeypatch.chdir(tmp_path)
    make_good(Path("good"))
    fp = lambda src: data_fingerprint(load_detection_data(src, 64, stride=16))  # noqa: E731
    base = fp("good")
    assert fp(str(tmp_path / "good")) == fp("./good/") == fp(str(tmp_path / "good" / ".." / "good")) == base
    shutil.copytree("good", "moved")  # the same files elsewhere are the same data
    assert fp("moved") == base
    Path("moved/labels/train/im1.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert fp("moved") != base
    os.rename("good/images/val/im3.png", "good/images/train/im4.png")  # an image moved between splits
    os.rename("good/labels/val/im3.txt", "good/labels/train/im4.txt")
    assert fp("good") != base


def test_runs_from_before_the_fix_still_resume(tmp_path: Path) -> None:
    """A run made with an absolute --data before this fix recorded the hash of the path strings
    (`legacy`); it must still resume, and keep its fingerprint."""
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.trainer import data_fingerprint

    good, out = make_good(tmp_path / "good"), tmp_path / "r"
    assert main(["train", write_spec(tmp_path / "sdet.net").as_posix(), "--data", str(good), "--out", str(out),
                 "--epochs", "1", *FAST]) == 0
    old = data_fingerprint(load_detection_data(str(good.resolve()), 64, stride=16), legacy=True)
    rj = json.loads((out / "run.json").read_text())
    assert old != rj["data_fingerprint"]
    rj["data_fingerprint"] = old
    (out / "run.json").write_text(json.dumps(rj))
    ckpt = torch.load(out / "last.pt", weights_only=True)
    ckpt["fingerprint"] = old
    torch.save(ckpt, out / "last.pt")
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["fingerprint"] == old and len(rows(out)) == 2


def test_resume_at_an_img_that_is_not_a_multiple_of_32(tmp_path: Path) -> None:
    """sdet's largest stride is 16: `--img 48` trains, and its resume must take the network's
    stride, not the data loader's default of 32."""
    good, out = make_good(tmp_path / "good"), tmp_path / "r"
    spec = write_spec(tmp_path / "sdet.net")
    assert main(["train", str(spec), "--data", str(good), "--out", str(out), "--epochs", "1", "--img", "48",
                 "--batch-size", "4", "--quiet"]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert len(rows(out)) == 2


# --------------------------------------------------------------------------- item 13: unwritable outputs

@pytest.fixture
def readonly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder nothing can be created in. Permission bits where they bind; as root (who ignores
    them) creating inside it is refused as a read-only mount refuses it."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    if os.access(d, os.W_OK):
        real_mkdir, real_open = os.mkdir, os.open

        def inside(p: Any) -> bool:
            return Path(os.path.abspath(os.fsdecode(p))).is_relative_to(d)

        def mkdir(p: Any, *a: Any, **k: Any) -> None:
            if inside(p):
                raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(p))
            real_mkdir(p, *a, **k)

        def open_(p: Any, flags: int, *a: Any, **k: Any) -> int:
            if flags & os.O_CREAT and inside(p):
                raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(p))
            return real_open(p, flags, *a, **k)

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)
    yield d
    d.chmod(0o755)


@pytest.fixture(scope="module")
def sdet_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """sdet.net and a state_dict for it (random weights, 2 classes)."""
    import netdsl

    d = tmp_path_factory.mktemp("sdet")
    spec = write_spec(d / "sdet.net")
    torch.manual_seed(0)
    netdsl.save_weights(netdsl.build(str(spec)), d / "w.pt")
    return spec, d / "w.pt"


def images_dir(d: Path, names_shapes: dict[str, tuple[int, int]]) -> Path:
    from PIL import Image

    d.mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in names_shapes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / name)
    return d


def test_detect_into_a_read_only_place_fails_before_inference(sdet_weights, readonly: Path, tmp_path: Path,
                                                              capsys, monkeypatch) -> None:
    spec, w = sdet_weights
    src = images_dir(tmp_path / "src", {"a.png": (48, 64)})
    import netdsl.tasks.detect.predict as predict

    monkeypatch.setattr(predict, "predict", lambda *a, **k: pytest.fail("inference ran before --out was checked"))
    rc, err = cli(capsys, "detect", str(spec), "--weights", str(w), "--source", str(src), "--img", "64",
                  "--out", str(readonly / "out"))
    assert rc == 2 and "cannot write in" in err and str(readonly) in err and "Traceback" not in err, err
    assert list(readonly.iterdir()) == []


def test_train_into_a_read_only_place_fails_before_reading_data(readonly: Path, tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    import netdsl.tasks.detect.data as data

    monkeypatch.setattr(data, "load_detection_data", lambda *a, **k: pytest.fail("data read before --out was checked"))
    rc, err = cli(capsys, "train", str(write_spec(tmp_path / "sdet.net")), "--data", str(tmp_path / "good"),
                  "--out", str(readonly / "run"), *FAST)
    assert rc == 2 and "cannot write in" in err and "--out" in err, err
    assert list(readonly.iterdir()) == []


# --------------------------------------------------------------------------- item 13: --img and memory

@pytest.mark.parametrize("img", ["20000", "99999999984"])
def test_detect_img_is_held_to_the_memory_limit(img: str, sdet_weights, tmp_path: Path, capsys) -> None:
    spec, w = sdet_weights
    src = images_dir(tmp_path / "src", {"a.png": (48, 64)})
    out = tmp_path / "out"
    rc, err = cli(capsys, "detect", str(spec), "--weights", str(w), "--source", str(src), "--img", img,
                  "--out", str(out))
    assert rc == 2 and f"--img {img}: the network needs about" in err and "--max-memory" in err, err
    assert not out.exists()


def test_img_estimate_equals_builds_estimate_at_that_size(tmp_path: Path) -> None:
    """The estimate at --img N (taken at the spec's 64x64, activations scaled by area) is what
    `build` estimates for the network compiled at N x N: so one limit means the same in both."""
    from netdsl.api import analyse_text
    from netdsl.commands.detect import check_img_memory
    from netdsl.errors import NetdslError
    from netdsl.passes.memory import check_memory

    cg = analyse_text(SDET, "sdet.net", {})
    for n in (128, 640, 1024):
        exact = check_memory(analyse_text(SDET, "sdet.net", {"H": n, "W": n}), None).total
        check_img_memory(cg, n, exact)  # exactly at the limit: accepted
        with pytest.raises(NetdslError, match=f"--img {n}: the network needs"):
            check_img_memory(cg, n, exact - 1)


def test_detect_max_memory_flag_is_checked(sdet_weights, tmp_path: Path, capsys) -> None:
    spec, w = sdet_weights
    rc, err = cli(capsys, "detect", str(spec), "--weights", str(w), "--source", str(tmp_path), "--max-memory", "nan")
    assert rc == 2 and "--max-memory nan" in err


# --------------------------------------------------------------------------- item 13: hyperparameters

@pytest.mark.parametrize("line,key", [("weight_decay: 1.0e+39", "weight_decay"), ("momentum: 1.5", "momentum"),
                                      ("lr0: -0.01", "lr0"), ("perspective: 0.5", "perspective"),
                                      ("mosaic: 2", "mosaic")])
def test_hyp_values_out_of_range_are_located_and_nothing_is_made(line: str, key: str, tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    import netdsl.tasks.detect.data as data

    monkeypatch.setattr(data, "load_detection_data", lambda *a, **k: pytest.fail("data read before --hyp was checked"))
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text(f"lr0: 0.01\n{line}  # edited\n" if key != "lr0" else f"{line}\nlrf: 0.1\n")
    out = tmp_path / "run"
    rc, err = cli(capsys, "train", str(write_spec(tmp_path / "sdet.net")), "--data", str(tmp_path), "--hyp",
                  str(hyp), "--out", str(out), *FAST)
    where = 2 if key != "lr0" else 1
    assert rc == 2 and f"{hyp}:{where}:" in err and f"hyperparameter '{key}'" in err and "must be" in err, err
    assert f"hyp.scratch.yaml has {key}:" in err and not out.exists()


def test_lr_flag_out_of_range(tmp_path: Path, capsys) -> None:
    rc, err = cli(capsys, "train", str(write_spec(tmp_path / "sdet.net")), "--lr", "1e39", "--out",
                  str(tmp_path / "run"), *FAST)
    assert rc == 2 and "--lr 1e+39" in err and not (tmp_path / "run").exists(), err


def test_every_default_hyperparameter_is_in_range() -> None:
    """hyp.scratch.yaml's own values (ultralytics v9.6.0) must pass the ranges."""
    from netdsl.tasks.detect.checks import HYP_RANGES, hyp_problem
    from netdsl.tasks.detect.hyp import read_hyp

    defaults = read_hyp(None)[0]
    assert set(HYP_RANGES) <= set(defaults)
    assert {k: hyp_problem(k, v) for k, v in defaults.items() if hyp_problem(k, v)} == {}


# --------------------------------------------------------------------------- item 13: edited run.json

@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("finished")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(write_spec(d / "sdet.net")), "--data", str(make_good(d / "good")),
                     "--out", str(d / "r"), "--epochs", "1", *FAST]) == 0
    finally:
        torch.set_num_threads(n)
    return d / "r"


DELETE = object()


def _set(obj: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        obj = obj[p]
    if value is DELETE:
        del obj[last]
    else:
        obj[last] = value


@pytest.mark.parametrize("key,value", [
    ("train.img", "x"), ("nc", "two"), ("spec.sets", [1]), ("data", []),  # the four
    ("train.epochs", 0), ("train.ema", "yes"), ("train.seed", -1), ("train", None), ("hyp.weight_decay", 1e39),
    ("hyp.lr0", "0.01"), ("hyp.box", DELETE), ("hyp.lr00", 0.01), ("spec.sets.NCLS", 1.5), ("data.source", 7), ("data.cache", 1),
    ("freeze.bn", "sometimes"), ("freeze.first", -2), ("freeze.names", "a"), ("names", ["one", "two", "three"]),
    ("data_fingerprint", None), ("nc", True), ("nc", DELETE), ("train.img_size", 64),
    ("train.img", 40), ("train.precision", "fp8"), ("train.precision", 16), ("train.channels_last", "yes"),
])
def test_edited_run_json_is_a_clean_error_naming_the_key(key: str, value: Any, finished: Path, tmp_path: Path,
                                                         capsys) -> None:
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    rj = json.loads((run / "run.json").read_text())
    _set(rj, key, value)
    (run / "run.json").write_text(json.dumps(rj))
    rc, err = cli(capsys, "train", "--resume", str(run), "--epochs", "2", "--quiet")
    named = "names" if key == "names" else key  # names and nc disagree: "names" is the one named
    assert rc == 2 and str(run / "run.json") in err and f'"{named}"' in err and "Traceback" not in err, err
    assert len(rows(run)) == 1


def test_unchanged_run_json_resumes(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0 and len(rows(run)) == 2


# --------------------------------------------------------------------------- item 14: output names

def test_detect_gives_every_input_its_own_output(sdet_weights, tmp_path: Path, capsys) -> None:
    """The issue's folder: a.bmp, a.png, a-2.png (of different sizes, so each output shows whose
    picture it is)."""
    import imageio.v3 as iio

    spec, w = sdet_weights
    shapes = {"a.bmp": (40, 56), "a.png": (48, 64), "a-2.png": (32, 80)}
    src = images_dir(tmp_path / "src", shapes)
    out = tmp_path / "out"
    rc, err = cli(capsys, "detect", str(spec), "--weights", str(w), "--source", str(src), "--img", "64",
                  "--out", str(out))
    assert rc == 0, err
    report = json.loads((out / "detections.json").read_text())
    outputs = {Path(e["source"]).name: e["output"] for e in report["images"]}
    assert sorted(outputs) == sorted(shapes) and len(set(outputs.values())) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted([*outputs.values(), "detections.json"])
    for name, output in outputs.items():
        assert iio.imread(out / output).shape[:2] == shapes[name], (name, output)
    assert outputs["a.png"] == "a.png" and outputs["a-2.png"] == "a-2.png"  # the inputs named so keep their names


def test_output_names_are_distinct_stable_and_keep_unique_names() -> None:
    """Random folders of colliding names (stems that look like generated ones, formats that are
    converted to PNG, names differing in case): every name distinct even case-insensitively, never
    detections.json, the same for the same folder, and an input no other wants keeps its name."""
    from netdsl.commands.detect import JSON_NAME, WRITE_SUFFIXES, output_names

    rng = random.Random(0)
    stems = ["a", "A", "a-2", "a-3", "a.bmp", "a-2.bmp", "detections", "b"]
    suffixes = [".png", ".PNG", ".bmp", ".jpg", ".tif", ".json.png"]
    for _ in range(500):
        files = sorted({Path(rng.choice(stems) + rng.choice(suffixes)) for _ in range(rng.randint(1, 10))})
        names = output_names(files)
        folded = [n.casefold() for n in names]
        assert len(set(folded)) == len(files) and JSON_NAME not in folded, (files, names)
        assert output_names(list(files)) == names
        natural = [f.name if f.suffix.lower() in WRITE_SUFFIXES else f.stem + ".png" for f in files]
        for n, want in zip(names, natural):
            assert Path(n).suffix.lower() in WRITE_SUFFIXES
            if [m.casefold() for m in natural].count(want.casefold()) == 1:
                assert n == want, (files, names)


# --------------------------------------------------------------------------- item 16: the classes hint

LITERAL = SDET.replace("classes=NCLS", "classes=5")
OTHER_PARAM = SDET.replace("SDet(NCLS = 2)", "SDet(NC = 5)").replace("classes=NCLS", "classes=NC")


def prepare(argv: list[str]) -> detect_prepare.Prepared:
    args = make_parser().parse_args(["train", *argv])
    _, job = choose(args, parse_sets(args.sets), Compiler(analyse_spec, build_model), TASKS)
    return detect_prepare.prepare_fresh(job)


@pytest.mark.parametrize("text,fix", [(LITERAL, "edit"), (OTHER_PARAM, "--set NC=2")])
def test_class_count_hint_is_the_fix_for_this_spec(text: str, fix: str, tmp_path: Path, capsys) -> None:
    """Two-class data: the hint names what changes the head's classes, and following it works
    (the run is then prepared without error)."""
    spec, good = write_spec(tmp_path / "s.net", text), make_good(tmp_path / "good", classes=2)
    argv = [str(spec), "--data", str(good), "--out", str(tmp_path / "run"), *FAST]
    rc, err = cli(capsys, "train", *argv)
    assert rc == 2 and "has 5 classes, the data 2" in err and "--set NCLS" not in err, err
    assert f"{spec}:7:" in err  # the detect statement's line
    if fix == "edit":
        assert "edit line 7" in err and "classes=2" in err
        write_spec(spec, text.replace("classes=5", "classes=2"))
    else:
        assert fix in err
        argv += ["--set", "NC=2"]
    p = prepare(argv)
    assert p.data.nc == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,fix", [(SDET, "build it with --set NCLS=3"),
                                      (SDET.replace("classes=NCLS", "classes=2"), "edit line 7"),
                                      (OTHER_PARAM.replace("NC = 5", "NC = 2"), "build it with --set NC=3")])
def test_detect_names_hint_is_the_fix_for_this_spec(text: str, fix: str, tmp_path: Path, capsys) -> None:
    """`detect --names` with 3 names for a 2-class network: the hint changes what this spec's
    classes come from; following it makes the names and the head agree."""
    import netdsl
    from netdsl.tasks.detect.predict import detect_head

    spec = write_spec(tmp_path / "s.net", text)
    netdsl.save_weights(netdsl.build(str(spec)), tmp_path / "w.pt")
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    src = images_dir(tmp_path / "src", {"a.png": (48, 64)})
    rc, err = cli(capsys, "detect", str(spec), "--weights", str(tmp_path / "w.pt"), "--source", str(src), "--img",
                  "64", "--names", str(tmp_path / "names.txt"), "--out", str(tmp_path / "out"))
    assert rc == 2 and "lists 3 names but the network has 2 classes" in err and fix in err, err
    if fix.startswith("edit"):
        write_spec(spec, text.replace("classes=2", "classes=3"))
        sets: dict[str, int] = {}
    else:
        name, value = fix.split()[-1].split("=")
        sets = {name: int(value)}
    assert detect_head(netdsl.build(str(spec), **sets)).classes == 3


def test_detect_docstring_examples() -> None:
    import doctest

    import netdsl.commands.detect

    result = doctest.testmod(netdsl.commands.detect)
    assert result.attempted >= 4 and result.failed == 0

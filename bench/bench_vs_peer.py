"""netdsl against the course's detector (ultralytics/yolov3 v9.6.0, the peer), side by side, interleaved.

    python bench/bench_vs_peer.py [--img 128] [--batch 16] [--epochs 3] [--images 256] [--rounds 3]
                                  [--peer-dir /tmp/peer] [--what train,val,detect] [--threads CORES]
                                  [--work /tmp/bench_vs_peer]

The peer is set up once under --peer-dir by `../shared/peers/setup-ultralytics-yolov3-v9.6.0.sh`
(unpack, patch, venv; a few minutes); without `../shared/peers` the bench says how to get it and exits 2.
Its code is only run, never imported into netdsl.

Data (`bench/peer_data.py`): the first --images training crops and the 32 validation crops of the
embedded coins set, written once as PNG + YOLO txt labels; netdsl reads the folder, the peer its data YAML.

Training, per round (netdsl, peer, netdsl, peer, ...; from scratch, the same --threads for both through
OMP_NUM_THREADS/MKL_NUM_THREADS, which each side's torch reports in the events):
- netdsl: `netdsl train specs/yolov3-tiny.net --set LEAKY=0 --set DARKNET_POOL=0 --img I --batch-size B
  --epochs E --data DIR --device cpu`;
- peer: `train.py --img I --batch B --epochs E --data DIR/data.yaml --cfg models/yolov3-tiny.yaml
  --weights '' --noautoanchor --device cpu` (YOLOV3_CONFIG_DIR=PEER/config, its default --workers).
Each side at its defaults: netdsl's `--precision auto` is bf16 autocast on a CPU with AVX-512 BF16 or
AMX and fp32 elsewhere (its first log line says which); the peer's AMP is CUDA's only, so it trains
in fp32 on a CPU. Both validate and detect in fp32.
How the times are taken: each program runs under a small runner (this file, `--runner`) that records
wall-clock timestamps (`time.time()`) as JSON lines and then hands over to the program's own entry
point with the same arguments. netdsl: `DetTrainer.train_epoch` wrapped (start, end) and
`DetTrainer.validate` (end). Peer: its own callbacks `on_pretrain_routine_end` (the first epoch's
start), `on_train_epoch_end`, `on_fit_epoch_end` (run right after the epoch's `val.run`; its
`on_val_end` fires only when plotting) and `on_model_save` (after it the next epoch starts). So
per epoch: training time = end - start (loader, augmentation, steps; images/s = training images /
that), validation time = the next validation end - training end; start-up = first epoch start - the
moment the bench launched the process (imports, data, model). Checkpoint writing lies outside both.
(netdsl's own metrics.csv samples/s agrees with its figure; the peer writes no times per epoch.)

Detect (`--img 640`, each round): `netdsl detect` and the peer's `detect.py` with the last weights of
that round's training (or of a one-epoch run when training is not measured; throughput does not
depend on them), on 100 crops and on the first 10 of them; images/s = 90 / (time for 100 - time
for 10), whole processes, so start-up and model loading cancel.

Printed: per measure each side's median and every round, the ratio netdsl/peer (> 1: netdsl faster;
for times, peer time / netdsl time), the load average before and after, and the issue's targets
(training >= 1.3, validation >= 1.0) with met / not met.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
SETUP = "setup-ultralytics-yolov3-v9.6.0.sh"
PEER_SRC = "yolov3-v9.6.0"
NETDSL_SETS = ["--set", "LEAKY=0", "--set", "DARKNET_POOL=0"]
TARGETS = {"training images/s": 1.3, "validation s/epoch": 1.0}


# --- runners: run inside each program's own Python, stdlib only at import time ---------------------

def _recorder(path: str) -> Callable[[str], None]:
    def record(name: str) -> None:
        threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
        with open(path, "a") as f:
            f.write(json.dumps({"ev": name, "t": time.time(), "threads": threads}) + "\n")
    return record


def _run_netdsl(events: str, args: list[str]) -> int:
    record = _recorder(events)
    from netdsl.cli import main
    from netdsl.tasks.detect.trainer import DetTrainer

    train_epoch, validate = DetTrainer.train_epoch, DetTrainer.validate

    def timed_train(self: Any, *a: Any, **k: Any) -> Any:
        record("train_start")
        out = train_epoch(self, *a, **k)
        record("train_end")
        return out

    def timed_val(self: Any, *a: Any, **k: Any) -> Any:
        out = validate(self, *a, **k)
        record("val_end")
        return out

    DetTrainer.train_epoch, DetTrainer.validate = timed_train, timed_val  # type: ignore[method-assign]
    return main(args)


def _run_peer(events: str, args: list[str]) -> int:
    record = _recorder(events)
    sys.path.insert(0, os.getcwd())
    sys.argv = ["train.py", *args]
    import train  # the peer's, from its own folder (cwd)
    from utils.callbacks import Callbacks

    cb = Callbacks()
    for hook, name in (("on_pretrain_routine_end", "train_start"), ("on_train_epoch_end", "train_end"),
                       ("on_fit_epoch_end", "val_end"), ("on_model_save", "saved")):
        cb.register_action(hook, name="bench", callback=lambda *a, _n=name, **k: record(_n))
    train.main(train.parse_opt(), cb)
    return 0


# --- the bench ----------------------------------------------------------------------------------

def ensure_peer(peer_dir: Path) -> None:
    """Set the peer up under `peer_dir` when it is not there; without ../shared/peers say how and exit 2."""
    if (peer_dir / "config" / "Arial.ttf").is_file():  # the setup script's last step
        return
    if not (PEERS / SETUP).is_file():
        print(f"the peer is not set up in {peer_dir} and {PEERS / SETUP} is missing.\n"
              f"Get ../shared/peers (ultralytics-yolov3-v9.6.0.tar.gz, patches-v9.6.0.diff, {SETUP}) beside "
              f"this checkout, or run that script yourself: bash {SETUP} {peer_dir}", file=sys.stderr)
        sys.exit(2)
    print(f"setting up the peer in {peer_dir} (a few minutes) ...", flush=True)
    subprocess.run(["bash", str(PEERS / SETUP), str(peer_dir)], check=True)


def launch(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run `cmd`; (launch time as time.time(), wall seconds). A failure prints the log's tail and exits 1."""
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    if rc != 0:
        print(f"failed ({rc}): {' '.join(cmd)}\n--- {log} ---\n{log.read_text()[-3000:]}", file=sys.stderr)
        sys.exit(1)
    return t0, wall


def epochs_of(events: Path, launched: float, epochs: int) -> dict[str, Any]:
    """Start-up, per-epoch training and validation seconds from a runner's events (see the docstring)."""
    ev = [json.loads(line) for line in events.read_text().splitlines()]
    starts = [e["t"] for e in ev if e["ev"] == "train_start"]
    if not any(e["ev"] == "saved" for e in ev):  # netdsl: one train_start per epoch
        starts = starts[:epochs]
    else:  # peer: the first epoch starts after its set-up, each next one after the previous save
        starts = starts[:1] + [e["t"] for e in ev if e["ev"] == "saved"][:epochs - 1]
    ends = [e["t"] for e in ev if e["ev"] == "train_end"][:epochs]
    vals = [min(e["t"] for e in ev if e["ev"] == "val_end" and e["t"] >= t) for t in ends]
    if len(starts) != epochs or len(ends) != epochs:
        raise SystemExit(f"{events}: expected {epochs} epochs of events, got {len(starts)} starts, {len(ends)} ends")
    threads = {e["threads"] for e in ev if e["threads"] is not None}
    return {"startup": starts[0] - launched, "train": [b - a for a, b in zip(starts, ends)],
            "val": [v - b for b, v in zip(ends, vals)], "threads": sorted(threads)}


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.peer_py = str(a.peer_dir / "venv" / "bin" / "python")
        self.peer_src = a.peer_dir / PEER_SRC
        self.run_dir = a.work / time.strftime("run-%Y%m%d-%H%M%S")
        self.run_dir.mkdir(parents=True)
        t = str(a.threads)
        self.env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
                    "YOLOV3_CONFIG_DIR": str(a.peer_dir / "config")}
        self.weights: dict[str, Path] = {}

    def train(self, side: str, k: int, data: Path, epochs: int) -> dict[str, Any]:
        a, out = self.a, self.run_dir / f"{side}-train-{k}"
        events = self.run_dir / f"{side}-train-{k}.events"
        me = [str(Path(__file__).resolve()), "--runner", side, str(events), "--"]
        if side == "netdsl":
            cmd = [sys.executable, *me, "train", "specs/yolov3-tiny.net", *NETDSL_SETS, "--img", str(a.img),
                   "--batch-size", str(a.batch), "--epochs", str(epochs), "--data", str(data.parent),
                   "--device", "cpu", "--out", str(out)]
            cwd, self.weights[side] = REPO, out / "last.pt"
        else:
            cmd = [self.peer_py, *me, "--img", str(a.img), "--batch", str(a.batch), "--epochs", str(epochs),
                   "--data", str(data), "--cfg", "models/yolov3-tiny.yaml", "--weights", "", "--noautoanchor",
                   "--device", "cpu", "--project", str(self.run_dir), "--name", out.name, "--exist-ok"]
            cwd, self.weights[side] = self.peer_src, out / "weights" / "last.pt"
        launched, wall = launch(cmd, cwd, self.env, self.run_dir / f"{side}-train-{k}.log")
        r = epochs_of(events, launched, epochs)
        r["wall"] = wall
        r["ips"] = epochs * a.images / sum(r["train"])
        return r

    def detect(self, side: str, k: int, source: Path) -> float:
        out = self.run_dir / f"{side}-detect-{k}-{source.name}"
        if side == "netdsl":
            cmd = [sys.executable, "-m", "netdsl.cli", "detect", "specs/yolov3-tiny.net", *NETDSL_SETS,
                   "--set", "NCLS=2", "--weights", str(self.weights[side]), "--source", str(source),
                   "--img", "640", "--out", str(out)]
            cwd = REPO
        else:
            cmd = [self.peer_py, "detect.py", "--weights", str(self.weights[side]), "--source", str(source),
                   "--img", "640", "--device", "cpu", "--project", str(self.run_dir), "--name", out.name,
                   "--exist-ok"]
            cwd = self.peer_src
        return launch(cmd, cwd, self.env, out.with_suffix(".log"))[1]


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f}  [{', '.join(f'{v:.2f}' for v in values)}]"


def table(rows: dict[str, tuple[list[float], list[float], bool]], load: tuple[Any, Any], a: argparse.Namespace) -> str:
    lines = [f"netdsl vs ultralytics/yolov3 v9.6.0: {a.images} crops, --img {a.img}, batch {a.batch}, "
             f"{a.epochs} epochs, {a.rounds} rounds interleaved, {a.threads} threads; median [rounds]",
             f"{'measure':24} {'netdsl':>30} {'peer':>30} {'ratio':>6}  target"]
    for name, (mine, peer, higher_better) in rows.items():
        m, p = statistics.median(mine), statistics.median(peer)
        ratio = (m / p if higher_better else p / m) if m > 0 and p > 0 else float("nan")
        target = TARGETS.get(name)
        verdict = "" if target is None else f">= {target}: {'met' if ratio >= target else 'NOT met'}"
        lines.append(f"{name:24} {fmt(mine):>30} {fmt(peer):>30} {ratio:6.2f}  {verdict}")
    lines.append("ratio > 1: netdsl faster (rates netdsl/peer, times peer/netdsl)")
    lines.append(f"load average (1, 5, 15 min): before {load[0]}, after {load[1]}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--runner":
        side, events, rest = sys.argv[2], sys.argv[3], sys.argv[5:]
        sys.exit((_run_netdsl if side == "netdsl" else _run_peer)(events, rest))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer-dir", type=Path, default=Path("/tmp/peer"))
    ap.add_argument("--what", default="train,val,detect", help="comma-separated: train, val, detect")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for both (default: cores)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_vs_peer"), help="data and run folders")
    a = ap.parse_args()
    what = set(a.what.split(","))
    if not what <= {"train", "val", "detect"} or not what:
        ap.error("--what takes train, val, detect")
    a.peer_dir, a.work = a.peer_dir.resolve(), a.work.resolve()
    ensure_peer(a.peer_dir)
    sys.path.insert(0, str(REPO / "bench"))
    from peer_data import DETECT_FEW, DETECT_IMAGES, prepare

    data = prepare(a.work / f"data-{a.images}", a.images)
    b = Bench(a)
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    res: dict[str, dict[str, list[float]]] = {s: {} for s in ("netdsl", "peer")}
    for k in range(a.rounds):
        for side in ("netdsl", "peer"):
            got = res[side]
            if what & {"train", "val"} or k == 0:
                r = b.train(side, k, data, a.epochs if what & {"train", "val"} else 1)
                print(f"round {k + 1} {side:6}: start-up {r['startup']:.2f} s, train s/epoch "
                      f"{[round(x, 2) for x in r['train']]}, val s/epoch {[round(x, 2) for x in r['val']]}, "
                      f"wall {r['wall']:.1f} s, torch threads {r['threads']}", flush=True)
                if what & {"train", "val"}:
                    for key, v in (("training images/s", r["ips"]), ("validation s/epoch", statistics.mean(r["val"])),
                                   ("start-up s", r["startup"]), ("training run wall s", r["wall"])):
                        got.setdefault(key, []).append(v)
            if "detect" in what:
                many, few = b.detect(side, k, data.parent / "detect"), b.detect(side, k, data.parent / "detect-few")
                rate = (DETECT_IMAGES - DETECT_FEW) / (many - few) if many > few else float("nan")
                got.setdefault("detect images/s", []).append(rate)
                got.setdefault("detect 100 wall s", []).append(many)
                print(f"round {k + 1} {side:6}: detect 100 images {many:.2f} s, 10 images {few:.2f} s", flush=True)
    higher = {"training images/s": True, "detect images/s": True}
    keep = [m for m in res["netdsl"] if not (m.startswith("training images") and "train" not in what)
            and not (m.startswith("validation") and "val" not in what)]
    rows = {m: (res["netdsl"][m], res["peer"][m], higher.get(m, False)) for m in keep}
    out = table(rows, (load_before, tuple(round(x, 2) for x in os.getloadavg())), a)
    print(out)
    (b.run_dir / "table.txt").write_text(out + "\n")
    print(f"logs and runs: {b.run_dir}")


if __name__ == "__main__":
    main()

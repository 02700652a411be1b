"""Detection training overhead: netdsl's step (`DetTrainer.step` with its warmup bookkeeping, as
`train_epoch` runs it) against a bare loop (forward, yolo_loss, backward, SGD step every
`accumulate` iterations, zero_grad, and an EMA update after each step unless --no-ema, as
netdsl's loop does by default) over copies of the same model, the same loss and the same
tensors, interleaved rounds. Prints samples/s of each and the ratio (target >= 0.95).

    python bench/bench_detect_train.py [--spec specs/yolov3-tiny.net] [--img 128] [--batch 8]
                                       [--steps 16] [--rounds 5] [--threads 1] [--device cpu] [--no-ema]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="specs/yolov3-tiny.net")
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ema", dest="ema", action="store_false", help="both loops without the weights' EMA")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    import netdsl
    from netdsl.tasks.detect.data import load_detection_data
    from netdsl.tasks.detect.hyp import read_hyp
    from netdsl.tasks.detect.loss import yolo_loss
    from netdsl.tasks.detect.trainer import EMA_DECAY, EMA_TAU, DetHyper, DetTrainer
    from netdsl.tasks.ema import ModelEMA

    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    data = load_detection_data(None, a.img)
    torch.manual_seed(0)
    model = netdsl.build(a.spec, NCLS=data.nc, H=a.img, W=a.img)
    images, targets = next(data.train.batches(a.batch, seed=0, epoch=0))
    images, targets = images.to(dev), targets.to(dev)

    hyp = read_hyp(None)[0]
    trainer = DetTrainer(copy.deepcopy(model), data, DetHyper(epochs=300, batch_size=a.batch, img=a.img, ema=a.ema),
                         hyp, dev)
    bare = copy.deepcopy(model).to(dev).train()
    bare_ema = ModelEMA(bare, EMA_DECAY, EMA_TAU) if a.ema else None
    opt = torch.optim.SGD([p for p in bare.parameters() if p.requires_grad], lr=0.001, momentum=0.937, nesterov=True)
    anchors, strides, nc, lh = trainer.anchors, trainer.strides, trainer.nc, trainer.loss_hyp
    acc = trainer.base_accumulate
    nb = trainer.batches_per_epoch()
    start_ni = trainer.warmup_iters() + 1  # past warmup: the steady state

    def run_netdsl(k: int) -> None:
        trainer.model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=dev)
        for i in range(k):
            ni = start_ni + i
            trainer.warmup(ni, ni // nb)
            sums += trainer.step(images, targets, ni).double()
        float(sums.sum())

    def run_bare(k: int) -> None:
        for i in range(k):
            loss, _ = yolo_loss(bare(images), targets, anchors, strides, nc, lh)
            loss.backward()
            if (start_ni + i) % acc == 0:
                opt.step()
                opt.zero_grad(set_to_none=True)
                if bare_ema is not None:
                    bare_ema.update(bare)

    def timed(fn) -> float:  # samples/s
        sync()
        t = time.perf_counter()
        fn(a.steps)
        sync()
        return a.steps * a.batch / (time.perf_counter() - t)

    run_netdsl(2), run_bare(2)  # warm up allocators
    ours, theirs = [], []
    for r in range(a.rounds):
        pair = ((run_netdsl, ours), (run_bare, theirs))
        for fn, out in (pair if r % 2 == 0 else pair[::-1]):
            out.append(timed(fn))
    o, b = statistics.median(ours), statistics.median(theirs)
    print(f"{a.spec} img {a.img} batch {a.batch} (accumulate {acc}), {a.steps} steps x {a.rounds} rounds, "
          f"device {dev}, torch threads {torch.get_num_threads()}, EMA {'on' if a.ema else 'off'}")
    print(f"netdsl loop: {o:.1f} samples/s (rounds {', '.join(f'{x:.1f}' for x in ours)})")
    print(f"bare loop:   {b:.1f} samples/s (rounds {', '.join(f'{x:.1f}' for x in theirs)})")
    print(f"ratio netdsl/bare: {o / b:.3f}")


if __name__ == "__main__":
    main()

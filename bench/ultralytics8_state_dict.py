"""By hand, against ultralytics 8.x itself: `DetectionModel(yolov8n.yaml).state_dict()` (or any
scale of yolov8.yaml / yolo11.yaml) loaded into `netdsl import` of that YAML gives the same raw
head outputs and the same decoded predictions.

Two steps, two Python environments (ultralytics' code is run in its own, never imported into netdsl):

    # 1. in ultralytics' venv: build DetectionModel (BatchNorm statistics made random), save its
    #    state_dict (OUT.pt) and an input with its eval outputs (OUT.out.pt)
    YOLO_OFFLINE=1 /path/to/ultralytics-venv/bin/python bench/ultralytics8_state_dict.py dump \\
        /path/to/yolov8n.yaml /tmp/yolov8n 256
    # 2. in netdsl's venv: import the YAML (the file name picks the scale), load OUT.pt, compare
    python bench/ultralytics8_state_dict.py compare /path/to/yolov8n.yaml /tmp/yolov8n 256

`dump` reads `yolov8n.yaml` as ultralytics does (`yolov8.yaml`'s scale n); `compare` needs the
YAML under the name whose scale it means (a copy of yolov8.yaml as yolov8n.yaml), or `--scale`:
give the scale as a fifth argument. Step 2 prints the largest absolute differences of the box and
class logits (ultralytics' eval `preds["boxes"]`, `preds["scores"]`, i.e. the raw per-level maps
flattened) and of the decoded predictions [N, 4 + nc, anchors].
"""
from __future__ import annotations

import sys

import torch


def dump(yaml_path: str, out: str, size: int) -> None:
    from ultralytics.nn.tasks import DetectionModel  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = DetectionModel(yaml_path, nc=80, verbose=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    model.eval()
    x = torch.randn(2, 3, size, size, generator=g)
    with torch.no_grad():
        decoded, preds = model(x)
    torch.save(model.state_dict(), out + ".pt")
    torch.save({"x": x, "decoded": decoded, "boxes": preds["boxes"], "scores": preds["scores"]}, out + ".out.pt")
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}.pt ({len(model.state_dict())} entries, {params:,} parameters) and {out}.out.pt")


def compare(yaml_path: str, out: str, size: int, scale: str | None) -> None:
    import netdsl
    from netdsl.importers import import_file
    from netdsl.weights import load_weights

    model = netdsl.build(import_file(yaml_path, scale=scale) + "\n", H=size, W=size).eval()
    load_weights(model, out + ".pt")
    ref = torch.load(out + ".out.pt", weights_only=True)
    with torch.no_grad():
        decoded, raw = model(ref["x"])
    flat = torch.cat([r.flatten(2) for r in raw], 2)  # [N, 4*reg_max + nc, anchors], ultralytics' order
    box = ref["boxes"].shape[1]
    d_box = (flat[:, :box] - ref["boxes"]).abs().max().item()
    d_cls = (flat[:, box:] - ref["scores"]).abs().max().item()
    d_dec = (decoded - ref["decoded"]).abs().max().item()
    print(f"{yaml_path}: box logits max abs difference {d_box:.3g}, class logits {d_cls:.3g}, decoded {d_dec:.3g} "
          f"(decoded values up to {ref['decoded'].abs().max().item():.3g})")


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6) or sys.argv[1] not in ("dump", "compare"):
        sys.exit(__doc__)
    if sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        compare(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) == 6 else None)

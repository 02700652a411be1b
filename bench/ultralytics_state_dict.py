"""By hand, against the course's detector: ultralytics v9.6.0's own `Model(yaml).state_dict()`
loaded into `netdsl import` of that YAML gives the same outputs.

Two steps, two Python environments (the peer's code is run, never imported into netdsl):

    # 1. in the peer's venv, from its code directory: build Model(yaml) (BatchNorm statistics made
    #    random), save its state_dict (OUT.pt) and an input with its eval outputs (OUT.out.pt)
    cd yolov3-v9.6.0 && YOLOV3_CONFIG_DIR=../config ../venv/bin/python \\
        /path/to/netdsl/bench/ultralytics_state_dict.py dump models/yolov3.yaml /tmp/yolov3 128
    # 2. in netdsl's venv: import the YAML, load OUT.pt with --weights' loader, compare
    python bench/ultralytics_state_dict.py compare models/yolov3.yaml /tmp/yolov3 128

Step 2 prints the largest absolute difference of the raw maps and of the decoded boxes.
"""
from __future__ import annotations

import sys

import torch


def dump(yaml_path: str, out: str, size: int) -> None:
    sys.path.insert(0, ".")  # the peer's code directory
    from models.yolo import Model  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = Model(yaml_path, ch=3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    model.eval()
    x = torch.randn(1, 3, size, size, generator=g)
    with torch.no_grad():
        decoded, raw = model(x)
    torch.save(model.state_dict(), out + ".pt")
    torch.save({"x": x, "decoded": decoded, "raw": list(raw)}, out + ".out.pt")
    print(f"wrote {out}.pt ({len(model.state_dict())} entries) and {out}.out.pt")


def compare(yaml_path: str, out: str, size: int) -> None:
    import netdsl
    from netdsl.importers import import_file
    from netdsl.weights import load_weights

    model = netdsl.build(import_file(yaml_path) + "\n", H=size, W=size).eval()
    load_weights(model, out + ".pt")
    ref = torch.load(out + ".out.pt", weights_only=True)
    with torch.no_grad():
        decoded, raw = model(ref["x"])
    d_raw = max((a - b).abs().max().item() for a, b in zip(raw, ref["raw"]))
    d_dec = (decoded - ref["decoded"]).abs().max().item()
    print(f"{yaml_path}: raw maps max abs difference {d_raw:.3g}, decoded {d_dec:.3g} "
          f"(decoded values up to {ref['decoded'].abs().max().item():.3g})")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("dump", "compare"):
        sys.exit(__doc__)
    (dump if sys.argv[1] == "dump" else compare)(sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""By hand, against the real thing: ViT-B/16 against torchvision, C3TR against ultralytics.

torchvision and ultralytics cannot sit beside netdsl's torch 2.13.0, so this runs in a separate
venv that has them, with the netdsl checkout on the path (only its pure-Python dependencies
installed there):

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        "lark[interegular]" pydantic rich && /tmp/tv/bin/pip install --no-deps ultralytics==8.4.190 \\
        && /tmp/tv/bin/pip install opencv-python-headless psutil polars requests scipy pyyaml
    cd /tmp && YOLO_OFFLINE=1 /tmp/tv/bin/python /path/to/netdsl/bench/attention_references.py vit c3tr

`vit`: torchvision's `vit_b_16()` state_dict loads strictly into specs/zoo/vit_b_16.net; prints
both parameter counts and the largest output difference on two random 224x224 images (also for
tests/zoo_reference_vit.py's transcription, which CI checks the spec against).
`c3tr`: ultralytics' own `Conv` and `C3TR` modules (BatchNorm eps 0.001, as DetectionModel's
`initialize_weights` sets it; random weights and statistics) against `netdsl import` of a YAML
with those rows; prints the largest difference of the C3TR row's output in float32 and float64.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import netdsl  # noqa: E402
from netdsl.importers import import_text  # noqa: E402

C3TR_YAML = """nc: 2
depth_multiple: 1.0
width_multiple: 1.0
anchors:
  - [10,13, 16,30, 33,23]
backbone:
  [[-1, 1, Conv, [32, 3, 2]],
   [-1, 2, C3TR, [32]],
  ]
head:
  [[[1], 1, Detect, [nc, anchors]]]
"""


def vit() -> None:
    import torchvision  # type: ignore[import-not-found]

    from zoo_reference_vit import VisionTransformer

    torch.manual_seed(0)
    tv = torchvision.models.vit_b_16().eval()
    nn.init.normal_(tv.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    ours = netdsl.build(ROOT / "specs/zoo/vit_b_16.net").eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    ref = VisionTransformer(image_size=224, patch_size=16, layers=12, heads=12, dim=768, mlp_dim=3072,
                            num_classes=1000).eval()
    ref.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want, got, transcribed = tv(x), ours(x), ref(x)
    print(f"vit_b_16: torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"  parameters: torchvision {sum(p.numel() for p in tv.parameters()):,}, "
          f"netdsl {sum(p.numel() for p in ours.parameters()):,}")
    print(f"  max |netdsl - torchvision| {(got - want).abs().max().item():.2e}, "
          f"max |transcription - torchvision| {(transcribed - want).abs().max().item():.2e} "
          f"(outputs up to {want.abs().max().item():.2f})")


def _ultralytics_name(key: str) -> str:
    """Ultralytics' Conv keys (`cv1.conv.weight`, `cv1.bn.bias`) as the import's (`cv1.0.weight`, ...)."""
    return re.sub(r"\.conv\.", ".0.", re.sub(r"\.bn\.", ".1.", key))


def c3tr() -> None:
    from ultralytics.nn.modules import C3TR, Conv  # type: ignore[import-not-found]

    torch.manual_seed(0)
    ours = netdsl.build(import_text(C3TR_YAML, "c3tr.yaml", "yaml"), H=64, W=96).eval()
    ref = nn.Sequential(Conv(3, 32, 3, 2), C3TR(32, 32, n=2)).eval()
    for p in ref.parameters():
        nn.init.normal_(p, std=0.1)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.eps = 1e-3  # DetectionModel's initialize_weights
    theirs = {_ultralytics_name(k): v for k, v in ref.state_dict().items()}
    state = ours.state_dict()
    mine = {k: k[1:] for k in state if k.startswith("b") and k[1:] in theirs}  # b0.*, b1.*: rows 0 and 1
    assert sorted(mine.values()) == sorted(theirs), sorted(set(theirs) - set(mine.values()))
    state.update({k: theirs[v] for k, v in mine.items()})
    ours.load_state_dict(state)
    seen: dict[str, torch.Tensor] = {}
    dict(ours.named_modules())["b1"].register_forward_hook(lambda m, i, o: seen.__setitem__("c3tr", o))
    x = torch.randn(2, 3, 64, 96)  # not square: rows and columns must not swap
    for dtype in (torch.float32, torch.float64):
        ours.to(dtype)
        ref.to(dtype)
        with torch.no_grad():
            ours(x.to(dtype))
            want = ref(x.to(dtype))
        print(f"c3tr ({len(mine)} tensors by name, {dtype}): max |netdsl - ultralytics| "
              f"{(seen['c3tr'] - want).abs().max().item():.2e} (outputs up to {want.abs().max().item():.2f})")


if __name__ == "__main__":
    for what in sys.argv[1:] or ["vit", "c3tr"]:
        {"vit": vit, "c3tr": c3tr}[what]()

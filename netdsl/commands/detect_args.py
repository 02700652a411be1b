"""`netdsl detect`'s command line: its flags, and `run`, which imports the command itself.

Every command line builds the whole parser, so this module imports nothing heavy: the command
(`netdsl.commands.detect`: images, YAML names, numpy, torch) is imported only when it runs, and
`netdsl count` or `netdsl --help` pay nothing for it.
"""
from __future__ import annotations

import argparse

from netdsl.commands.common import add_set_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run a detection spec (one ending in `detect` or `detect_v8`) with trained weights on an image or a "
                     "directory of images; write the images with boxes and labels and detections.json.")
    p.add_argument("spec", help="path to a .net spec whose output is a detect head")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="weights to load: darknet .weights, or a .pt/.pth state_dict or netdsl checkpoint")
    p.add_argument("--source", required=True, metavar="IMAGE|DIR", help="an image, or a directory of images")
    add_set_argument(p, "override a declared parameter (e.g. --set NCLS=2) (repeatable)")
    p.add_argument("--img", type=int, default=640, metavar="N",
                   help="inference size: the long side in pixels, a multiple of the largest stride (default 640)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=None,
                   help="NMS IoU threshold (default: the head's, 0.45 for detect as YOLOv3's detect.py, "
                        "0.7 for detect_v8 as ultralytics 8.x)")
    p.add_argument("--max-det", type=int, default=300, metavar="N", help="detections per image at most (default 300)")
    p.add_argument("--names", metavar="FILE",
                   help="class names: a YAML file with `names:` (a list, or a mapping from index), "
                        "or a text file with one name per line (default class0, class1, ...)")
    p.add_argument("--out", metavar="DIR", help="output directory, new or empty (default: runs/detect-<timestamp>)")
    p.add_argument("--max-memory", type=float, metavar="GIB",
                   help="refuse an --img at which the network is estimated to need more memory than this, "
                        "as netdsl build does (default 8 GiB)")


def run(args: argparse.Namespace) -> int:
    from netdsl.commands import detect  # the command's modules, only when it runs (see the docstring)

    return detect.run(args)

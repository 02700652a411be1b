"""Data for `bench/bench_vs_peer.py`: coin crops from netdsl's embedded set, written once as files
that both programs read, so both train and detect on the same pixels and the same labels.

Layout under DIR (netdsl's `images/` + `labels/` folder, which is also the YOLO txt layout that
ultralytics v9.6.0 finds by replacing `/images/` with `/labels/` in each image path):

    DIR/images/train/*.png   the first N training crops of the embedded set (80 x 160, PNG: lossless)
    DIR/images/val/*.png     all 32 validation crops
    DIR/labels/{train,val}/*.txt   one `class cx cy w h` row per box, normalised, 6 decimals
    DIR/data.yaml            path/train/val/nc/names, for the peer (`--data`); netdsl takes `--data DIR`
    DIR/detect/*.png         100 crops (training crops 0-99, whatever N is) for the detect measure
    DIR/detect-few/*.png     the first 10 of them: the detect measure subtracts this run's time
    DIR/recipe.json          what was written; a different request rewrites DIR

    python bench/peer_data.py DIR [--images N]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

DETECT_IMAGES = 100
DETECT_FEW = 10


def _write_split(root: Path, split: str, images: np.ndarray, labels: list[np.ndarray]) -> None:
    from PIL import Image

    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i, (im, lb) in enumerate(zip(images, labels)):
        Image.fromarray(im).save(root / "images" / split / f"{i:04d}.png")
        rows = "".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in lb)
        (root / "labels" / split / f"{i:04d}.txt").write_text(rows)


def prepare(root: Path, n_images: int) -> Path:
    """Write (or keep, when already written for the same request) the data under `root`; its data YAML."""
    from netdsl.tasks.detect import embedded

    recipe = {"source": embedded.RECIPE, "train": n_images, "val": embedded.N_VAL, "detect": DETECT_IMAGES, "few": DETECT_FEW}
    stamp = root / "recipe.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return root / "data.yaml"
    if not 1 <= n_images <= embedded.N_TRAIN:
        raise SystemExit(f"--images must be 1 to {embedded.N_TRAIN} (the embedded set's training crops)")
    if root.exists():
        shutil.rmtree(root)
    e = embedded.load_embedded()
    _write_split(root, "train", e.train_images[:n_images], e.train_labels[:n_images])
    _write_split(root, "val", e.val_images, e.val_labels)
    from PIL import Image

    for folder, count in (("detect", DETECT_IMAGES), ("detect-few", DETECT_FEW)):
        (root / folder).mkdir()
        for i in range(count):
            Image.fromarray(e.train_images[i]).save(root / folder / f"{i:04d}.png")
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(embedded.CLASSES))
    (root / "data.yaml").write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\n"
                                    f"nc: {len(embedded.CLASSES)}\nnames:\n{names}")
    stamp.write_text(json.dumps(recipe))
    return root / "data.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    print(prepare(a.dir, a.images))


if __name__ == "__main__":
    main()

"""Importers: darknet `.cfg` and Ultralytics model YAML to readable netdsl specs (`netdsl import`).

`import_file(path)` picks the format by suffix; `import_text(text, path, fmt)` takes the text.
Both return the spec's text, checked by netdsl's own passes, or raise a NetdslError located in the
source file. Nothing here imports torch.
"""
from __future__ import annotations

from pathlib import Path

from netdsl.errors import NetdslError
from netdsl.importers.darknet_cfg import import_cfg
from netdsl.importers.spec_writer import read_source
from netdsl.importers.ultralytics_yaml import import_yaml

FORMATS = {".cfg": "cfg", ".yaml": "yaml", ".yml": "yaml"}


def format_of(path: str) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise NetdslError(f"cannot tell the format of {path!r} from its suffix", path=path,
                          hint="netdsl imports darknet .cfg and Ultralytics .yaml/.yml files; rename the file or "
                               "give --format cfg or --format yaml")
    return fmt


def import_text(text: str, path: str, fmt: str, scale: str | None = None) -> str:
    """The spec for `text` in format `fmt` ("cfg" or "yaml"); `path` names the file in messages;
    `scale` one of an ultralytics 8.x YAML's `scales:` (default: the file name's, `yolov8n.yaml`)."""
    text = text[1:] if text.startswith("\ufeff") else text
    if fmt == "cfg":
        if scale:
            raise NetdslError(f"--scale {scale}: a darknet .cfg has no scales", path=path,
                              hint="--scale picks one of an ultralytics 8.x YAML's scales: (n, s, m, l, x)")
        return import_cfg(text, path)
    return import_yaml(text, path, scale)


def import_file(path: str, fmt: str | None = None, scale: str | None = None) -> str:
    fmt = fmt or format_of(path)
    what = "darknet .cfg" if fmt == "cfg" else "Ultralytics model YAML"
    return import_text(read_source(path, what), path, fmt, scale)

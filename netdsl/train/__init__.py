"""`netdsl train`: train compiled specs on the colourization task of the seed (issue 5).

Kept import-light on purpose: the CLI imports `netdsl.train.command` to register its flags, and
`netdsl --help` must not pay for torch. The heavy modules (`loop`, `data`, `plots`) are imported
where they are used.
"""
from __future__ import annotations

__all__ = ["fit", "load_data"]


def __getattr__(name: str):  # lazy re-exports, so `import netdsl.train` stays cheap
    if name == "fit":
        from netdsl.train.loop import fit

        return fit
    if name == "load_data":
        from netdsl.train.data import load_data

        return load_data
    raise AttributeError(name)

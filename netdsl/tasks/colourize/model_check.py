"""Whether a model can be trained as a colourizer: its output for greyscale input must be one score
per palette colour at every pixel; checked before any directory is made."""
from __future__ import annotations

import torch
from torch import nn

from netdsl.backends.torch_module import CompiledNet
from netdsl.errors import NetdslError, Span


def check_model(model: nn.Module, num_colours: int, name: str, in_channels: int = 1, size: int = 32,
                path: str | None = None) -> None:
    """Refuse a model whose output is not `[N, num_colours, size, size]` for greyscale input.

    A `CompiledNet` (what `netdsl.build` gives) is first held to the input its spec declares, its
    errors hint at the `--set` that fixes them and point at the spec's output. Any other
    `nn.Module` (the loop trains any; tests and library users pass their own) declares nothing:
    it is only run on a probe batch, and its errors carry the generic hints.
    """
    net = model if isinstance(model, CompiledNet) else None
    if net is not None:
        _check_declared(net, name, in_channels, size, path)
    was_training = model.training
    model.eval()  # no batch statistics or dropout: the probe must not touch state or RNG
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, size, size, device=_device_of(model)))
    except Exception as err:  # a shape error inside the model surfaces as a RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetdslError(f"{name} cannot run on input [N, {in_channels}, {size}, {size}]: {first}",
                          path=path) from None
    finally:
        model.train(was_training)
    want = (num_colours, size, size)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[1:]) != want:
        got = "[N, " + ", ".join(map(str, out.shape[1:])) + "]" if isinstance(out, torch.Tensor) else type(out).__name__
        hint = "training needs one score per palette colour at every pixel"
        if isinstance(out, torch.Tensor) and out.dim() == 4 and tuple(out.shape[2:]) != (size, size):
            hint += "; the spatial size changed, so check the padding for the kernel size (--set k=...)"
        elif isinstance(out, torch.Tensor) and out.dim() == 4 and net is not None:
            hint = _param_hint(net, int(out.shape[1]), num_colours) or hint
        error = NetdslError(f"{name}'s output is {got} for input [N, {in_channels}, {size}, {size}]; "
                          f"expected [N, {num_colours}, {size}, {size}] ({num_colours} palette colours)",
                          _output_span(net), hint=hint, path=path)
        raise error.with_source(path, _read(path) if error.span else None)


def _check_declared(net: CompiledNet, name: str, in_channels: int, size: int, path: str | None) -> None:
    """The input a compiled spec declares must be the data's: `in_channels` x `size` x `size`."""
    if net.in_channels != in_channels:
        raise NetdslError(f"{name} takes {net.in_channels} input channels, but the training data is "
                          f"greyscale ([N, {in_channels}, {size}, {size}])",
                          hint=_param_hint(net, net.in_channels, in_channels), path=path)
    shape = net.input_shape
    if len(shape) == 3 and tuple(shape[1:]) != (size, size):
        fix = " ".join(f"--set {k}={size}" for k in ("H", "W") if net.params.get(k, size) != size)
        raise NetdslError(f"{name} declares input [{', '.join(map(str, shape))}], but the training data is "
                          f"[{in_channels}, {size}, {size}]", path=path,
                          hint=fix or f"the data's patches are {size}x{size}")


def _output_span(net: CompiledNet | None) -> Span | None:
    """Where a compiled spec defines its output, so the error can point at it (None for other modules)."""
    return net.concrete.outputs[0].span if net is not None else None


def _read(path: str | None) -> str | None:
    try:
        return open(path, encoding="utf-8").read() if path else None
    except (OSError, UnicodeDecodeError):
        return None


def _param_hint(net: CompiledNet, have: int, want: int) -> str | None:
    """`--set NAME=want` when exactly one parameter (not H or W) of the spec is `have`."""
    names = [k for k, v in net.params.items() if v == have and k not in ("H", "W")]
    if len(names) == 1:
        return f"--set {names[0]}={want}"
    return None


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")

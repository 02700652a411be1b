"""The torch oracle for counts: per leaf module, what hooks see on a real forward pass."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import netdsl
from netdsl.passes.counts import Convention

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def torch_counts(model: nn.Module, shape: tuple[int, ...]) -> dict[str, dict[str, int]]:
    """Per leaf module: params, weights, outputs and connections (MACs) per sample, from hooks."""
    found: dict[str, dict[str, int]] = {}

    def hook(name: str):
        def record(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            n = out.shape[0]
            units_out, units_in = out.numel() // n, inputs[0].numel() // n
            if isinstance(mod, nn.MultiheadAttention):  # batch first: [N, T, D]; keys and values share T
                tq, tk, d = out.shape[1], inputs[-1].shape[1], mod.embed_dim
                # the query and output projections, the key and value ones, the two products
                macs = 2 * tq * d * d + 2 * tk * d * d + 2 * tq * tk * d
            elif isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                macs = units_out * kh * kw * mod.in_channels // mod.groups
            elif isinstance(mod, nn.Linear):  # at every position where it runs over channels
                macs = mod.in_features * units_out
            elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                macs = units_in
            elif isinstance(mod, nn.ConvTranspose2d):
                kh, kw = mod.kernel_size
                macs = units_in * kh * kw * mod.out_channels // mod.groups
            elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
                k = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
                macs = units_out * k[0] * k[1]
            elif isinstance(mod, nn.Upsample):
                macs = units_out * (4 if mod.mode == "bilinear" else 1)
            else:
                macs = units_out
            weight = getattr(mod, "weight", None)
            if isinstance(mod, nn.MultiheadAttention):  # its in- and out-projections' weights
                weight = torch.cat([mod.in_proj_weight.flatten(), mod.out_proj.weight.flatten()])
            found[name] = {
                "parameters": sum(p.numel() for p in mod.parameters()),
                "buffers": sum(b.numel() for b in mod.buffers()),
                # every module's `weight` but a normalisation's (netdsl counts those as norm_params)
                "weights": weight.numel() if isinstance(weight, torch.Tensor) and not isinstance(mod, _NORMS) else 0,
                "outputs": units_out, "connections": macs,
            }
        return record

    # attention is one unit (its out_proj is a child module, but netdsl's layer)
    units = [name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
               if (not list(m.children()) or name in units)
               and not any(name.startswith(f"{u}.") for u in units)]
    with torch.no_grad():
        model.eval()(torch.zeros(2, *shape))
    for h in handles:
        h.remove()
    return found


def check_against_torch(source: str | Path, **params: int) -> None:
    counts = netdsl.count(source, **params)
    model = netdsl.build(source, **params)
    oracle = torch_counts(model, model.input_shape)
    by_name = {layer.name: layer for layer in counts.layers}
    for name, want in oracle.items():
        layer = by_name[name]
        got = {m: int(counts.value(counts.layer_metric(layer, m))) for m in want}
        assert got == want, (name, params)
    # Totals: parameters/buffers as torch has them; the convention's totals from the hooked layers.
    assert counts.value(counts.total("parameters")) == sum(p.numel() for p in model.parameters())
    assert counts.value(counts.total("buffers")) == sum(b.numel() for b in model.buffers())
    assert counts.value(counts.total("weights", Convention(biases=True, batchnorm=True))) == \
        sum(p.numel() for p in model.parameters())
    cats = {layer.name: layer.category for layer in counts.layers}
    for metric in ("outputs", "connections"):
        for conv in (Convention(), Convention(batchnorm=True, activations=True), Convention(batchnorm=False)):
            keep = conv.categories(metric)
            want = sum(v[metric] for n, v in oracle.items() if cats[n] in keep)
            if "merge" not in keep:
                assert counts.value(counts.total(metric, conv)) == want, (metric, conv, params)

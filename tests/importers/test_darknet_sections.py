"""darknet cfg sections beyond YOLOv3's: [route] groups, [scale_channels], [sam], [shortcut] of other
shapes, [reorg], [cost], [dropout]; darknet's training-only keys; a key given twice.

Each imported network is run against `darknet_forward`, a small interpreter written here from
darknet's C (AlexeyAB's parser.c, route_layer.c, scale_channels_layer.c, sam_layer.c,
shortcut_layer.c + blas.c): every layer but the convolution is its flat-index loop."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from netdsl.cli import main
from netdsl.errors import NetdslError
from netdsl.importers import import_text
from netdsl.weights import load_weights

NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"


def sec(kind: str, **opts: object) -> str:
    return f"[{kind}]\n" + "".join(f"{k.rstrip('_')}={v}\n" for k, v in opts.items())


def conv(filters: int, size: int = 1, stride: int = 1, act: str = "linear") -> str:
    return sec("convolutional", filters=filters, size=size, stride=stride, pad=1, activation=act)


def read_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            out.append((line, {}))
        else:
            k, v = line.split("=", 1)
            out[-1][1].setdefault(k, v)  # darknet's option_find: the first one
    return out[1:]


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    return {"linear": x, "leaky": F.leaky_relu(x, 0.1), "logistic": torch.sigmoid(x), "relu": F.relu(x)}[name]


def _flat(ts: torch.Tensor) -> list[float]:
    return ts.flatten().tolist()


def darknet_forward(text: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The cfg run layer by layer as darknet does; convolutions use the model's tensors (module
    `conv<i>`, or `output` for the last layer)."""
    layers = read_sections(text)
    outs: list[torch.Tensor] = []
    inp, batch = x, x.shape[0]
    for i, (kind, o) in enumerate(layers):
        index = [int(v) if int(v) >= 0 else i + int(v) for v in o.get("from", o.get("layers", "0")).split(",")]
        if kind == "[convolutional]":
            m = model.get_submodule("output" if i == len(layers) - 1 else f"conv{i}")
            c = m if isinstance(m, nn.Conv2d) else m[0]
            size = int(o["size"])
            y = _act(F.conv2d(inp, c.weight, c.bias, int(o["stride"]), size // 2), o["activation"])
        elif kind == "[avgpool]":
            y = inp.mean((2, 3), keepdim=True)
        elif kind == "[route]":  # forward_route_layer: part I of G of each input's buffer, in turn
            groups, gid = int(o.get("groups", 1)), int(o.get("group_id", 0))
            rows = []
            for b in range(batch):
                row: list[float] = []
                for j in index:
                    src = _flat(outs[j][b])
                    part = len(src) // groups
                    row += src[part * gid: part * gid + part]
                rows.append(row)
            c0 = sum(outs[j].shape[1] for j in index) // groups
            y = torch.tensor(rows).reshape(batch, c0, *outs[index[0]].shape[2:])
        elif kind == "[shortcut]":  # shortcut_multilayer_cpu, one layer, no weights
            src, add = _flat(inp), _flat(outs[index[0]])
            so, ao = len(src) // batch, len(add) // batch
            y = torch.tensor([v + (add[ao * (n // so) + n % so] if n % so < ao else 0.0) for n, v in enumerate(src)])
            y = _act(y.reshape(inp.shape), o.get("activation", "linear"))
        elif kind in ("[scale_channels]", "[sam]"):  # forward_scale_channels_layer / forward_sam_layer
            frm = outs[index[0]]
            f, src = _flat(frm), _flat(inp)
            cs, bs = frm.shape[2] * frm.shape[3], frm[0].numel()
            if kind == "[sam]":
                y = torch.tensor([src[n] * f[n] for n in range(len(f))])
            elif o.get("scale_wh", "0") == "1":
                y = torch.tensor([src[n % cs + (n // bs) * cs] * f[n] for n in range(len(f))])
            else:
                y = torch.tensor([src[n // cs] * f[n] for n in range(len(f))])
            y = _act(y.reshape(frm.shape), o.get("activation", "linear"))
        elif kind == "[reorg]":  # reorg_cpu(input, w, h, c, batch, stride, forward=0)
            s = int(o["stride"])
            n_, c, h, w = inp.shape
            src, dst = _flat(inp), [0.0] * inp.numel()
            oc = c // (s * s)
            for b in range(n_):
                for k in range(c):
                    for jj in range(h):
                        for ii in range(w):
                            off = k // oc
                            out_index = (ii * s + off % s) + w * s * ((jj * s + off // s) + h * s * (k % oc + oc * b))
                            dst[ii + w * (jj + h * (k + c * b))] = src[out_index]
            y = torch.tensor(dst).reshape(n_, c * s * s, h // s, w // s)
        elif kind == "[softmax]":  # over every value of a 1x1 map: its channels
            y = torch.softmax(inp, 1)
        elif kind in ("[cost]", "[dropout]"):
            y = inp
        else:
            raise AssertionError(kind)
        outs.append(y)
        inp = y
    return outs[-1]


def check_against_darknet(text: str) -> str:
    spec = import_text(text, "t.cfg", "cfg")
    torch.manual_seed(0)
    model = netdsl.build(spec).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        got, want = model(x), darknet_forward(text, model, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    return spec


# -- each section against darknet's loops ----------------------------------------------------------

def test_route_groups_takes_darknets_part() -> None:
    spec = check_against_darknet(NET + conv(8, 3) + sec("route", layers=-1, groups=2, group_id=1) + conv(4))
    assert "route1 = conv0 |> channel_chunk(1, 2)" in spec


def test_route_groups_of_several_layers_cats_each_part() -> None:
    text = NET + conv(8, 3) + conv(4) + sec("route", layers="-1,-2", groups=4, group_id=3) + conv(4)
    spec = check_against_darknet(text)
    assert "route2_0 = conv1 |> channel_chunk(3, 4)" in spec and "route2 = cat(route2_0, route2_1)" in spec


def test_scale_channels_is_squeeze_excitation() -> None:
    text = NET + conv(8, 3, act="leaky") + sec("avgpool") + conv(4, act="relu") + conv(8, act="logistic") + \
        sec("scale_channels", from_=-4) + conv(4)
    spec = check_against_darknet(text)
    assert "scale4 = mul(conv0, conv3)" in spec


def test_scale_channels_scale_wh_scales_positions() -> None:
    text = NET + conv(8, 3) + conv(1, act="logistic") + sec("scale_channels", from_=-2, scale_wh=1, activation="leaky")
    assert "output = mul(conv0, conv1) |> leaky_relu(0.1)" in check_against_darknet(text)


def test_sam_multiplies_equal_maps() -> None:
    text = NET + conv(8, 3) + conv(8, act="logistic") + sec("sam", from_=-2) + conv(4)
    assert "sam2 = mul(conv0, conv1)" in check_against_darknet(text)


@pytest.mark.parametrize("body", [
    conv(8, 3) + conv(4) + sec("shortcut", from_=-2, activation="leaky") + conv(4),  # from: more channels
    conv(4, 3) + conv(8) + sec("shortcut", from_=-2) + conv(4),  # from: fewer channels (not a residual unit)
    conv(4, 3) + conv(8, 3, stride=2) + sec("shortcut", from_=-2) + conv(4),  # other sizes: darknet's flat rule
    conv(8, 3, stride=2) + conv(2) + sec("shortcut", from_=0) + conv(4),
])
def test_shortcut_of_other_shapes_is_darknets(body: str) -> None:
    assert "darknet_shortcut(" in check_against_darknet(NET + body)


def test_reorg_is_darknets_passthrough() -> None:
    # YOLOv2's passthrough: the finer map reorganised, then joined to the coarser one
    text = NET + conv(8, 3) + conv(4, 3, stride=2) + sec("route", layers=-2) + sec("reorg", stride=2) + \
        sec("route", layers="-1,-3") + conv(4)
    spec = check_against_darknet(text)
    assert "reorg3 = conv0 |> reorg(2)" in spec and "route4 = cat(reorg3, conv1)" in spec


def test_cost_and_dropout_are_the_identity_at_inference() -> None:
    text = NET + conv(8, 3) + sec("dropout", probability=0.2) + conv(4) + sec("shortcut", from_=-3) + sec(
        "avgpool") + sec("softmax", groups=1) + sec("cost", type="sse")
    spec = check_against_darknet(text)
    assert "layer 1: [dropout] (darknet drops units in training only" in spec and "output = soft5" in spec


# -- keys -------------------------------------------------------------------------------------------

def test_training_only_keys_are_accepted_and_ignored() -> None:
    net = NET + "ema_alpha=0.9998\nmosaic=1\nletter_box=1\ncutmix=1\nadversarial_lr=0.05\npolicy=sgdr\nflip=0\n"
    body = conv(8, 3) + "stopbackward=1\n" + sec("route", layers=-1, stream=1) + conv(8) + "dontload=1\n" + \
        sec("shortcut", from_=-3, weights_normalization="relu") + sec("dropout", probability=0.1, dropblock=1)
    plain = NET + conv(8, 3) + sec("route", layers=-1) + conv(8) + sec("shortcut", from_=-3) + sec("dropout")
    def code(text: str) -> list[str]:  # the spec without its comments (they give the cfg's lines)
        spec = import_text(text, "t.cfg", "cfg")
        return [ln.split("#")[0].rstrip() for ln in spec.splitlines() if ln.split("#")[0].strip()]
    assert code(net + body) == code(plain)


def test_a_key_given_twice_takes_the_first_as_darknet_does() -> None:
    text = NET + "decay=0.0005\ndecay=0.5\n" + conv(8, 3) + "filters=16\n" + conv(4)
    spec = import_text(text, "t.cfg", "cfg")
    assert "conv0 = x |> conv(8, 3, padding=1)" in spec
    assert "# cfg line 6: decay=0.5 is not used: decay is given twice in the [net] at line 1, and darknet " \
           "reads the first, decay=0.0005 at line 5" in spec
    assert "# cfg line 13: filters=16 is not used: filters is given twice in the [convolutional] at line 7, " \
           "and darknet reads the first, filters=8 at line 8" in spec


# -- weights: darknet's .weights load around the new sections -----------------------------------------

def test_darknet_weights_load_around_the_new_sections(tmp_path: Path) -> None:
    bn = sec("convolutional", batch_normalize=1, filters=8, size=3, pad=1, activation="leaky")
    text = NET + bn + sec("route", layers=-1, groups=2, group_id=0) + sec("avgpool") + conv(4, act="logistic") + \
        sec("scale_channels", from_=-3) + conv(12) + sec("shortcut", from_=-6) + sec("reorg", stride=2) + conv(5)
    model = netdsl.build(import_text(text, "t.cfg", "cfg")).eval()
    # darknet's order: conv 0 (beta, gamma, mean, variance, kernel), then each conv's bias and kernel
    sizes = [8, 8, 8, 8, 8 * 3 * 9, 4, 4 * 4, 12, 12 * 4, 5, 5 * 48]
    arrays = [np.arange(n, dtype="<f4") + 1000 * k for k, n in enumerate(sizes)]
    path = tmp_path / "t.weights"
    path.write_bytes(struct.pack("<3iq", 0, 2, 0, 0) + b"".join(a.tobytes() for a in arrays))
    load_weights(model, path)
    bn0 = model.get_submodule("conv0")[1]
    assert torch.equal(bn0.bias, torch.from_numpy(arrays[0])) and torch.equal(bn0.running_var,
                                                                              torch.from_numpy(arrays[3]))
    assert torch.equal(model.get_submodule("conv3")[0].bias, torch.from_numpy(arrays[5]))
    assert torch.equal(model.get_submodule("output").weight.flatten(), torch.from_numpy(arrays[10]))


# -- refusals: file:line:col, what and what to do --------------------------------------------------------

ERRORS = [
    (NET + conv(6, 3) + sec("route", layers=-1, groups=4, group_id=0), 13, 8, "groups=4 does not divide layer 0's 6"),
    (NET + conv(8, 3) + sec("route", layers=-1, groups=2, group_id=2), 14, 10, "group_id=2 is out of range"),
    (NET + conv(8, 3) + sec("route", layers=-1, grops=2), 13, 1, "key 'grops' of [route] is not supported"),
    (NET + conv(8, 3) + conv(8) + sec("scale_channels", from_=-2), 17, 1,
     "[scale_channels] scales layer 0 [8, H, W] by layer 1 [8, H, W]: darknet needs"),
    (NET + conv(8, 3) + sec("avgpool") + conv(4) + sec("scale_channels", from_=-3), 18, 1, "[C, 1, 1] with the"),
    (NET + conv(8, 3) + sec("avgpool") + conv(8) + sec("scale_channels", from_=-3, activation="swish"), 20, 12,
     "activation=swish: darknet's [scale_channels] does not apply it"),
    (NET + conv(8, 3) + conv(4) + sec("sam", from_=-2), 18, 6, "darknet's [sam] needs equal shapes"),
    (NET + conv(8, 3) + conv(8) + sec("shortcut", from_=-2, weights_type="per_channel"), 19, 14,
     "weights_type=per_channel: a weighted [shortcut] is not supported"),
    (NET + conv(8, 3) + sec("shortcut", from_="-1,-1"), 12, 6, "[shortcut] from= takes one layer"),
    (NET + conv(8, 3) + sec("reorg", stride=2, reverse=1), 13, 9, "reverse=1 is not supported"),
    (NET + conv(6, 3) + sec("reorg", stride=2), 12, 8, "channels divisible by 4"),
    (NET + conv(8, 2) + sec("reorg", stride=2), 12, 8, "[reorg] stride=2 of layer 0 [8, H + 1, W + 1]"),
]


@pytest.mark.parametrize(("text", "line", "col", "message"), ERRORS)
def test_refusals_are_located(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(NetdslError) as info:
        import_text(text, "bad.cfg", "cfg")
    e = info.value
    assert message in e.message, e.render()
    assert e.span is not None and (e.span.line, e.span.column) == (line, col), e.render()
    assert e.hint and e.render().startswith(f"bad.cfg:{line}:{col}: error: ")


def test_the_cli_says_where_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.cfg"
    bad.write_text(ERRORS[0][0])
    assert main(["import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:13:8: error: groups=4 does not divide" in err and "Traceback" not in err

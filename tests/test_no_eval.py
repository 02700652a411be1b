"""Nothing a user writes is ever run: payloads are plain syntax errors, and the package has no eval."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import netdsl
from netdsl.errors import NetdslError

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"import os\")",
    "eval('1')",
    "lambda: 1",
    "NF.__class__",
    "open('/etc/passwd').read()",
]
BASE = {
    "param default": "net N(NF = {p})\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "param name": "net N({p} = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "condition": "net N(NF = 1) where {p} > 0\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
    "input channels": "net N(NF = 1)\ninput x: [{p}, H = 8, W = 8]\noutput = x |> relu",
    "size default": "net N(NF = 1)\ninput x: [1, H = {p}, W = 8]\noutput = x |> relu",
    "layer argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv({p}, 1)",
    "keyword argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> conv(1, 1, stride={p})",
    "string argument": 'net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> upsample(2, mode="{p}")',
    "block argument": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\nblock b(c) = conv(c, 1)\noutput = x |> b({p})",
    "repeat count": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu * {p}",
    "label": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> {p}: relu",
    "tensor name": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\n{p} = x |> relu\noutput = x",
    "merge input": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = cat(x, {p})",
    "annotation": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\ny: [{p}, H, W] = x |> relu\noutput = y",
    "claim": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu\nclaim weights == {p}",
    "--set value": "net N(NF = 1)\ninput x: [1, H = 8, W = 8]\noutput = x |> relu",
}


@pytest.mark.parametrize("place", sorted(BASE))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_rejected(place: str, payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if place == "--set value":
        from netdsl.commands.common import parse_sets

        with pytest.raises(NetdslError):
            parse_sets([f"NF={payload}"])
        return
    text = BASE[place].format(p=payload) + "\n"
    with pytest.raises(NetdslError) as info:
        netdsl.build(text)
    assert info.value.span is not None
    assert not (tmp_path / "PWNED").exists()


def test_package_never_calls_eval_like_functions() -> None:
    banned = re.compile(r"(?<![.\w])(eval|exec|sympify|parse_expr|lambdify)\s*\(|pickle\.loads?\s*\(|\bS\(\s*['\"]")
    hits = []
    for path in sorted((ROOT / "netdsl").rglob("*.py")):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if banned.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                hits.append(f"{path.relative_to(ROOT)}:{no}: torch.load without weights_only=True")
    assert hits == []
    # The check itself can fail: it finds a planted call.
    assert banned.search("x = sympify(text)") and banned.search("eval(s)") and not banned.search("model.eval()")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_claims_file_payloads_are_rejected(payload: str, tmp_path: Path) -> None:
    spec = tmp_path / "n.net"
    spec.write_text(BASE["layer argument"].format(p="1") + "\n", encoding="utf-8")
    (tmp_path / "n.claims").write_text(f"claim weights == {payload}\n", encoding="utf-8")
    with pytest.raises(NetdslError) as info:
        netdsl.count(spec)
    assert info.value.span is not None and info.value.path == str(tmp_path / "n.claims")

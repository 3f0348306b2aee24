"""Every YAML example in README.md and docs/spec-language.md compiles (and its train:
section, if any, passes the runtime's checks).

Complete specs compile as written; fragments compile inside a spec that supplies what
they name.
"""

from __future__ import annotations

import re

import pytest

import nnspec
from nnspec.runtime.settings import resolve_settings
from tests.conftest import ROOT

FENCE = re.compile(r"```yaml\n(.*?)```", re.DOTALL)

# What each kind of fragment needs around it.
WRAPPERS = {
    "blocks-unet": (
        "nnspec: 1\nname: Doc\ninputs: {x: [8, 8, 8], skip: [4, 16, 16]}\n",
        "layers:\n  - {op: Up, in: [x, skip], out: 4}\n  - {op: DoubleConv, out: 2}\n",
    ),
    "blocks": ("nnspec: 1\nname: Doc\ninputs: {x: [3, 16, 16]}\n", ""),
    "train": (
        "nnspec: 1\nname: Doc\ninputs: {image: [1, 8, 8]}\n"
        "layers: [Flatten, {op: Linear, name: fc, out_features: 10}]\n"
        "outputs: {logits: fc}\n",
        "",
    ),
    "init": (
        "nnspec: 1\nname: Doc\ninputs: {x: [3, 8, 8]}\n"
        "layers:\n"
        "  - {op: Conv2d, name: down1, out_channels: 4, kernel_size: 3}\n"
        "  - BatchNorm2d\n"
        "  - Flatten\n"
        "  - {op: Linear, name: trunk, out_features: 8}\n"
        "  - {op: Linear, name: head, out_features: 2}\n",
        "",
    ),
}


def snippets(path: str) -> list[tuple[str, str]]:
    text = (ROOT / path).read_text(encoding="utf-8")
    found = []
    for i, block in enumerate(FENCE.findall(text)):
        body = "\n".join(
            line
            for line in block.splitlines()
            if not line.startswith("# yaml-language-server")
        )
        found.append((f"{path}#{i}", body + "\n"))
    return found


def as_spec(body: str) -> str | None:
    stripped = body.lstrip()
    if not stripped:
        return None  # the schema comment line alone
    if stripped.startswith("nnspec:"):
        return body
    if stripped.startswith("blocks:"):
        kind = "blocks-unet" if "Up:" in body else "blocks"
        head, tail = WRAPPERS[kind]
        return head + body + tail
    if stripped.startswith("train:"):
        head, tail = WRAPPERS["train"]
        return head + body + tail
    if stripped.startswith("init:"):
        head, tail = WRAPPERS["init"]
        return head + body + tail
    if stripped.startswith("- {op:"):
        return None  # a single node, shown inline in prose
    if stripped.startswith("layers:") and "torchvision" in body:
        # torchvision has no CPU build here; tests/compiler/test_factories.py covers this.
        return None
    raise AssertionError(f"unrecognised YAML example:\n{body}")


SPECS = [
    (where, text)
    for where, body in snippets("README.md") + snippets("docs/spec-language.md")
    if (text := as_spec(body)) is not None
]


@pytest.mark.parametrize(("where", "text"), SPECS, ids=[w for w, _ in SPECS])
def test_documented_yaml_compiles(where: str, text: str) -> None:
    # Derived specs name their base relative to themselves: the examples' folder.
    path = str(ROOT / "examples" / "documented.yaml") if "extends:" in text else where
    spec = nnspec.loads(text, path=path)
    model = spec.build(device="meta")
    assert sum(p.numel() for p in model.parameters()) > 0
    if "\ntrain:" in text:
        # The runtime checks what the compiler does not: losses against the outputs,
        # torch names of the optimizer and scheduler.
        assert resolve_settings(spec).losses


def test_docs_have_examples() -> None:
    assert len(SPECS) >= 7

"""Numeric arguments, tensor sizes, output paths and graph labels: what a spec's numbers
and names can do, and what they cannot.

Every numeric argument in op_table.ARG_LIMITS is tried with zero, a negative and a huge
value: each ends in a SpecError at the value, naming the node, the argument and the
range, before any shape is worked out or any tensor made. Sizes past 2**48 elements
are refused, meta runs make nothing outside the meta device, compile-model never
writes over its spec or a module the generated code needs, and no name in a spec can
change the structure of a drawn graph.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import compile_main, main
from nnspec.compiler.op_table import ARG_LIMITS, MAX_LAYERS
from nnspec.compiler.ops import (
    INFERRED_ARGS,
    arguments_of,
    parameter_names,
    resolve_op,
)
from nnspec.inspection.graph_render import (
    Cluster,
    Diagram,
    DiagramNode,
    Edge,
    to_dot,
    to_mermaid,
)
from nnspec.spec import SpecError

from ..helpers import expect_error

HUGE = 2**62
HEADER = "nnspec: 1\nname: Net\ninputs: {x: [4, 16, 16]}\nlayers:\n"
# Values for the other required arguments of a module, so the node is otherwise whole.
FILL = {
    "out_channels": "4",
    "kernel_size": "2",
    "output_size": "2",
    "out_features": "4",
    "in1_features": "4",
    "in2_features": "4",
    "num_embeddings": "10",
    "embedding_dim": "4",
    "num_groups": "2",
    "num_channels": "4",
    "num_features": "4",
    "normalized_shape": "16",
    "size": "2",
    "norm_type": "2",
    "hidden_size": "4",
    "input_size": "16",
    "num_heads": "2",
    "embed_dim": "16",
    "nhead": "2",
    "d_model": "16",
    "dim": "1",
    "unflattened_size": "[2, 8]",
    "upscale_factor": "2",
    "downscale_factor": "2",
    "groups": "2",
}
LIST_ARGS = {"unflattened_size", "sizes", "shape"}  # written as a list of one number


def _wrong_values(op: str, arg: str) -> list[tuple[int, str]]:
    """(value, what the message says of it) for each value out of the argument's range."""
    limit = ARG_LIMITS[op][arg]
    high = "10000" if limit.high == MAX_LAYERS else "2**48"
    too_big = (HUGE, f"must be <= {high}, got {HUGE}")
    if limit.kind == "size":
        return [(0, "must be >= 1, got 0"), (-1, "must be >= 1, got -1"), too_big]
    if limit.kind == "offset":
        return [(-1, "must be >= 0, got -1"), too_big]
    if limit.kind == "size_or_infer":
        return [(0, "must be -1 or >= 1, got 0"), (-2, "must be -1 or >= 1, got -2")]
    if limit.kind == "scale":
        return [(0, "must be > 0, got 0"), (-1, "must be > 0, got -1"), too_big]
    assert limit.kind == "dim"
    in_range = "must be in -4..3 for an input of 4 dimensions"
    return [(4, f"{in_range}, got 4"), (-5, f"{in_range}, got -5"),
            (HUGE, f"{in_range}, got {HUGE}")]  # fmt: skip


CASES = [
    (op, arg, value, said)
    for op, args in sorted(ARG_LIMITS.items())
    for arg in sorted(args)
    for value, said in _wrong_values(op, arg)
]


def _required(op: str, arg: str) -> list[str]:
    """``name: value`` for the required arguments of a module besides ``arg``."""
    if op[:1].islower():
        return []
    info = resolve_op(op, {})
    arguments = arguments_of(info.target)
    assert arguments is not None
    inferred = {name for name, _ in INFERRED_ARGS.get(op, ())}
    return [
        f"{name}: {FILL[name]}"
        for name in arguments.required
        if name != arg and name not in inferred
    ]


def test_every_op_in_the_table_exists() -> None:
    for op, args in ARG_LIMITS.items():
        names = parameter_names(resolve_op(op, {}).target)
        if names:  # (max_pool2d and a few other builtins do not name theirs)
            assert set(args) <= set(names), (op, set(args) - set(names))


@pytest.mark.parametrize(
    ("op", "arg", "value", "said"),
    CASES,
    ids=[f"{op}-{arg}-{value}" for op, arg, value, _ in CASES],
)
def test_numeric_argument_out_of_range_is_reported_at_its_value(
    op: str, arg: str, value: int, said: str
) -> None:
    head = "  - {" + ", ".join([f"op: {op}", "name: n", *_required(op, arg)])
    head += f", {arg}: "
    written = f"[{value}]" if arg in LIST_ARGS else str(value)
    text = HEADER + head + written + "}\n"
    column = len(head) + 1 + (1 if arg in LIST_ARGS else 0)
    name = f"{arg}[0]" if arg in LIST_ARGS else arg
    with pytest.raises(SpecError) as info:
        nnspec.loads(text, path="net.yaml")
    err = info.value
    assert (err.line, err.column) == (5, column), err.render()
    assert err.message.startswith(f"node 'n' ({op}"), err.message
    assert err.message.endswith(f": {name} {said}"), err.message


def test_positional_argument_is_reported_at_its_item() -> None:
    # Conv2d's positional arguments, in_channels inferred: out_channels, kernel_size, stride.
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: Conv2d, name: conv1, args: [4, 3, 0]}
        """,
        5, 44, "node 'conv1' (Conv2d)", "stride must be >= 1, got 0",
    )  # fmt: skip


def test_list_argument_is_reported_at_the_item_out_of_range() -> None:
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: MaxPool2d, name: pool, kernel_size: 2, stride: [2, 0]}
        """,
        5, 61, "node 'pool' (MaxPool2d", "stride[1] must be >= 1, got 0",
    )  # fmt: skip


def test_value_of_an_expression_is_checked_at_the_argument() -> None:
    expect_error(
        """
        params: {width: 0}
        inputs: {x: [8]}
        layers:
          - {op: Linear, name: fc, out_features: "${width * 4}"}
        """,
        6, 42, "node 'fc' (Linear", "out_features must be >= 1, got 0",
    )  # fmt: skip


def test_argument_inside_a_block_names_the_use() -> None:
    err = expect_error(
        """
        inputs: {x: [3, 8, 8]}
        blocks:
          Down:
            params: {s: {type: int}}
            layers:
              - {op: Conv2d, name: conv, out_channels: 4, kernel_size: 3, stride: "${s}"}
        layers:
          - {op: Down, name: down, s: 0}
        """,
        8, 75, "node 'conv' (Conv2d", "stride must be >= 1, got 0",
    )  # fmt: skip
    assert err.message.endswith(
        "(in block Down, as used by node 'down' (Down) at line 10)"
    )


@pytest.mark.parametrize(
    "node",
    [
        "{op: Conv2d, out_channels: 4, kernel_size: 3, stride: 1, dilation: 1}",
        "{op: ConvTranspose2d, out_channels: 4, kernel_size: 3, stride: 2}",
        "{op: MaxPool2d, kernel_size: 2, padding: 0}",
        "{op: AdaptiveAvgPool2d, output_size: [1, null]}",
        "{op: Flatten, start_dim: -3, end_dim: -1}",
        "{op: reshape, shape: [-1, 64]}",
        "{op: Upsample, scale_factor: 0.5}",
        "{op: Softmax, dim: -1}",
    ],
)
def test_values_at_the_edge_of_their_range_compile(node: str) -> None:
    text = HEADER.replace("[4, 16, 16]", "[4, 8, 8]") + f"  - {node}\n"
    assert "class Net" in nnspec.loads(text).source()


def test_huge_declared_input_is_refused_at_its_shape() -> None:
    expect_error(
        """
        inputs: {x: [65536, 65536, 65537]}
        layers: [ReLU]
        """,
        3, 13, "input 'x' [B,65536,65536,65537]", "over the limit of 2**48",
    )  # fmt: skip


def test_input_at_the_element_limit_compiles() -> None:
    spec = nnspec.loads(
        HEADER.replace("[4, 16, 16]", "[65536, 65536, 65536]") + "  - ReLU\n"
    )
    assert "class Net" in spec.source()


def test_output_past_the_element_limit_is_refused_at_the_node() -> None:
    expect_error(
        """
        inputs: {x: [3, 8, 8]}
        layers:
          - {op: ZeroPad2d, name: pad, padding: 100000000}
        """,
        5, 5, "node 'pad' (ZeroPad2d", "its output [B,3,200000008,200000008]",
        "over the limit of 2**48",
    )  # fmt: skip


def test_parameter_past_the_element_limit_is_refused_at_the_node() -> None:
    expect_error(
        """
        inputs: {x: [100000000]}
        layers:
          - {op: Linear, name: fc, out_features: 100000000}
        """,
        5, 5, "node 'fc' (Linear", "parameter 'weight' [100000000, 100000000]",
        "over the limit of 2**48",
    )  # fmt: skip


def test_torch_error_on_meta_is_a_located_error() -> None:
    # PixelShuffle has no shape rule: torch rejects 4 channels for a factor of 3.
    err = expect_error(
        """
        inputs: {x: [4, 6, 6]}
        layers:
          - {op: PixelShuffle, name: shuffle, upscale_factor: 3}
        """,
        5, 5, "node 'shuffle' (PixelShuffle", "upscale_factor = 3",
    )  # fmt: skip
    assert "Invalid input shape for pixel_shuffle" in err.message


def test_tensors_made_inside_a_meta_run_are_on_the_meta_device() -> None:
    from . import meta_probe

    meta_probe.SEEN.clear()
    expect_error(
        """
        inputs: {x: [8]}
        layers:
          - {op: "tests.security.meta_probe:Probe", name: probe}
          - {op: Linear, name: fc, out_features: 0}
        """,
        6, 42, "out_features must be >= 1", allow_imports=["tests"],
    )  # fmt: skip
    assert meta_probe.SEEN == ["meta"]


# -- output paths ------------------------------------------------------------------


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(HEADER + "  - ReLU\n", encoding="utf-8")
    return path


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert compile_main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    return err


def test_output_hard_linked_to_the_spec_is_refused(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = spec_file.read_bytes()
    link = spec_file.with_name("net_link.py")
    os.link(spec_file, link)
    err = _refused([str(spec_file), "-o", str(link)], capsys)
    assert err == f"error: the output {link} would overwrite the spec {spec_file}\n"
    assert spec_file.read_bytes() == before


def test_output_symlinked_to_the_spec_is_refused(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = spec_file.read_bytes()
    link = spec_file.with_name("net_link.py")
    link.symlink_to(spec_file)
    err = _refused([str(spec_file), "-o", str(link)], capsys)
    assert "would overwrite the spec" in err
    assert spec_file.read_bytes() == before


@pytest.mark.parametrize(
    ("stem", "why"),
    [
        ("torch", "the module 'torch' that the generated code imports"),
        ("Torch", "the module 'Torch' that the generated code imports"),
        ("json", "the standard library module 'json'"),
        ("random", "the standard library module 'random'"),
    ],
)
def test_output_that_shadows_a_module_is_refused(
    stem: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / f"{stem}.yaml"
    spec.write_text(HEADER + "  - ReLU\n", encoding="utf-8")
    target = tmp_path / f"{stem}.py"
    suggestion = tmp_path / f"{stem}_model.py"
    err = _refused([str(spec)], capsys)  # the default output, SPEC with .py
    assert err == (
        f"error: the output {target} would shadow {why} for every Python file in "
        f"its folder; choose another name, e.g. -o {suggestion}\n"
    )
    assert not target.exists()
    assert compile_main([str(spec), "-q", "-o", str(suggestion)]) == 0
    assert "class Net" in suggestion.read_text(encoding="utf-8")


def test_output_that_shadows_an_allowed_package_is_refused(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = spec_file.with_name("tests.py")
    argv = [str(spec_file), "-o", str(target), "--allow-import", "tests"]
    err = _refused(argv, capsys)
    assert "would shadow the module 'tests' that the generated code imports" in err
    assert not target.exists()


# -- graph labels ------------------------------------------------------------------

HOSTILE = (
    'a"] --> evil\nclick n_x href "javascript:alert(1)"\r'
    "%% <img src=x onerror=1> & #quot; `m` |e|\u2028z"
)


def _diagram(text: str) -> Diagram:
    root = Cluster("", "Net", "")
    nodes = {
        "input:x": DiagramNode("input:x", "input", "x", "[B,8]"),
        "fc": DiagramNode("fc", "module", text, text),
        "output:y": DiagramNode("output:y", "output", text, ""),
    }
    root.nodes = list(nodes)
    block = Cluster("block", text, text, nodes=[])
    root.clusters.append(block)
    edges = [Edge("input:x", "fc", text), Edge("fc", "output:y", "[B,4]")]
    return Diagram(text, text, nodes, root, edges)


def test_mermaid_labels_cannot_change_the_graph() -> None:
    plain = to_mermaid(_diagram("plain")).splitlines()
    hostile = to_mermaid(_diagram(HOSTILE)).splitlines()
    assert len(hostile) == len(plain)  # no line break got through
    assert hostile[1].startswith("  %% a")  # the title, as a comment on one line
    for line in hostile[2:]:
        assert not line.lstrip().startswith(("click", "%%"))
        # Each label is one quoted string, without quotes, markup (but nnspec's own
        # <b> and <br/>) or pipes inside.
        for label in re.findall(r'"(.*?)"', line):
            text = re.sub(r"</?b>|<br/>", "", label)
            assert not set(text) & set('"<>&`|'), text
    text = "\n".join(hostile[2:])
    assert "<img" not in text
    assert "a#quot;] --#gt; evil click n_x href #quot;javascript:alert(1)#quot;" in text
    assert "#lt;img src=x onerror=1#gt; #amp; #35;quot; #96;m#96; #124;e#124; z" in text


def test_dot_labels_cannot_change_the_graph() -> None:
    plain = to_dot(_diagram("plain")).splitlines()
    hostile = to_dot(_diagram(HOSTILE)).splitlines()
    assert len(hostile) == len(plain)
    text = "\n".join(hostile)
    # Outside quoted strings, the same HTML tags as for a plain name: nothing opened.
    quoted = re.compile(r'"(?:[^"\\]|\\.)*"')
    tags = re.compile(r"</?\w+")
    outside = quoted.sub('""', text)
    assert tags.findall(outside) == tags.findall(quoted.sub('""', "\n".join(plain)))
    assert "<img" not in outside
    # In HTML-like labels as entities, in quoted strings with escaped quotes.
    assert "a&quot;] --&gt; evil click n_x href &quot;javascript" in text
    assert '"a\\"] --> evil click n_x href \\"javascript:alert(1)\\" %% ' in text


def test_graph_of_a_spec_with_a_hostile_output_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "net.yaml"
    key = '"a\\"]\\nclick n_fc href \\"javascript:alert(1)\\"\\n<img src=x>"'
    spec.write_text(
        "nnspec: 1\nname: Net\ninputs: {x: [8]}\n"
        "layers:\n  - {op: Linear, name: fc, out_features: 4}\n"
        f"outputs: {{{key}: fc}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "net.mmd"
    assert main(["graph", str(spec), "-o", str(out)]) == 0
    capsys.readouterr()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if "click" in line and "-->" not in line] == [
        next(line for line in lines if line.startswith("  n_output_"))
    ]
    assert not any(line.lstrip().startswith("click") for line in lines)
    assert "<img" not in "\n".join(lines)

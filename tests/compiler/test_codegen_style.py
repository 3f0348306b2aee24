"""The generated code is written as a person writes it: sizes computed once, one chain
variable through forward, the last call returned directly, comments that can be left out
-- and the modules stay what they were (keys, weights, outputs)."""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

import pytest
import torch
from torch import nn

import nnspec
from nnspec.cli import compile_main
from nnspec.compiler.codegen import MYPY_DIRECTIVE
from nnspec.compiler.codegen_hoist import hoist
from tests.compiler.examples import EXAMPLE_NAMES, load_example
from tests.compiler.ruff import ruff_format_check
from tests.helpers import compile_text

SHARED_SIZES = """
inputs: {x: [6]}
blocks:
  Wide:
    params: {out: {type: int}, mid: null, k: 2}
    layers:
      - {op: Linear, name: a, out_features: "${mid or out}"}
      - {op: LayerNorm, name: norm}
      - {op: Linear, name: b, out_features: "${(out + k) * 2}"}
      - {op: Linear, name: c, out_features: "${(out + k) * 2 + (out + k)}"}
layers:
  - {op: Wide, name: w1, out: 4}
  - {op: Wide, name: w2, out: 3, mid: 5}
"""


def _init_lines(source: str, cls: str) -> list[str]:
    tree = ast.parse(source)
    block = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    init = next(n for n in block.body if isinstance(n, ast.FunctionDef))
    return [ast.unparse(stmt) for stmt in init.body]


def _forward_lines(source: str, cls: str) -> list[str]:
    """The statements of ``cls.forward`` as written, comments and all."""
    tree = ast.parse(source)
    block = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    forward = next(
        n for n in block.body if isinstance(n, ast.FunctionDef) and n.name == "forward"
    )
    lines = source.splitlines()
    return [
        line.strip() for line in lines[forward.body[0].lineno - 1 : forward.end_lineno]
    ]


def _module(spec: nnspec.Spec) -> object:
    return sys.modules[spec.module_class().__module__]


def test_a_size_the_layers_share_is_computed_once() -> None:
    spec = compile_text(SHARED_SIZES)
    source = spec.source()
    assert _init_lines(source, "Wide") == [
        "super().__init__()",
        "mid = mid or out",
        "size = out + k",  # a part of a larger size that also repeats
        "out_features = size * 2",
        "self.a = nn.Linear(in_features, mid)",
        "self.norm = nn.LayerNorm(mid)",
        "self.b = nn.Linear(mid, out_features)",
        "self.c = nn.Linear(out_features, out_features + size)",
    ]
    # The shape comments say the same sizes by the same names.
    assert source.count("mid or out") == 1
    assert "return self.c(x)  # net.yaml:11  (B, out_features + size)" in source


@pytest.mark.parametrize(("out", "mid", "k"), [(4, None, 2), (3, 5, 1)])
def test_the_block_with_shared_sizes_is_the_same_module(
    out: int, mid: int | None, k: int
) -> None:
    spec = compile_text(SHARED_SIZES)
    wide = _module(spec).Wide(in_features=6, out=out, mid=mid, k=k)  # type: ignore[attr-defined]
    width = mid or out
    reference = nn.ModuleDict(
        {
            "a": nn.Linear(6, width),
            "norm": nn.LayerNorm(width),
            "b": nn.Linear(width, (out + k) * 2),
            "c": nn.Linear((out + k) * 2, (out + k) * 3),
        }
    )
    assert list(wide.state_dict()) == list(reference.state_dict())
    wide.load_state_dict(reference.state_dict())
    x = torch.randn(3, 6)
    expected = x
    for layer in reference.values():
        expected = layer(expected)
    torch.testing.assert_close(wide(x), expected)


def test_a_parameter_used_on_its_own_is_not_rebound() -> None:
    source = compile_text(
        """
        inputs: {x: [6]}
        blocks:
          B:
            params: {out: {type: int}, mid: null}
            layers:
              - {op: Linear, out_features: "${mid or out}"}
              - {op: Linear, out_features: "${mid or out}"}
              - {op: Dropout, p: "${0.5 if mid else 0.1}"}
        layers:
          - {op: B, out: 4}
        """
    ).source()
    lines = _init_lines(source, "B")
    assert lines[1] == "out_features = mid or out"
    assert "self.dropout = nn.Dropout(p=0.5 if mid else 0.1)" in lines


def test_hoisting_leaves_what_may_not_be_evaluated() -> None:
    def call(text: str) -> ast.expr:
        return ast.parse(text, mode="eval").body

    # ``a // b`` is evaluated only when ``t`` is false; hoisting it would compute it
    # always (and b may be 0 when t is true).
    done = hoist(
        [call("f(k=c if t else a // b)"), call("g(j=a // b)")],
        dict.fromkeys("abct", "int"),
    )
    assert done.locals == []
    done = hoist(
        [call("f(k=a or b // 2)"), call("g(j=b // 2)")], dict.fromkeys("ab", "int")
    )
    assert done.locals == []
    done = hoist(
        [call("f(a + b, k=a + b)"), call("g(j=1)")], dict.fromkeys("ab", "int")
    )
    assert [(n, ast.unparse(v)) for n, v in done.locals] == [("k", "a + b")]
    assert [ast.unparse(e) for e in done.exprs] == ["f(k, k=k)", "g(j=1)"]


def test_a_parameter_is_rebound_only_where_its_type_stays() -> None:
    def local(text: str, params: dict[str, str]) -> str:
        twice = [ast.parse(text, mode="eval").body for _ in range(2)]
        return hoist(twice, params).locals[0][0]

    assert local("f(k=a or 2)", {"a": "int | None"}) == "a"
    assert local("f(k=a or b)", {"a": "int | None", "b": "int"}) == "a"
    # ``a = a or 1.5`` would give an ``int | None`` variable a float.
    assert local("f(k=a or 1.5)", {"a": "int | None"}) == "k"
    assert local("f(k=a or b)", {"a": "int", "b": "int"}) == "k"


def test_the_chain_carries_the_main_path_and_the_shortcut_is_named() -> None:
    spec = compile_text(
        """
        inputs: {x: [8]}
        blocks:
          Residual:
            params: {out: {type: int}}
            layers:
              - {op: Linear, name: fc1, out_features: "${out}"}
              - {op: ReLU, name: act}
              - {op: Linear, name: fc2, out_features: "${out}"}
              - {op: Linear, name: shortcut, in: x, out_features: "${out}"}
              - {op: add, in: [fc2, shortcut]}
              - {op: ReLU, name: out_act}
        layers:
          - {op: Residual, name: res, out: 4}
        """
    )
    code = [line.split("  #")[0] for line in _forward_lines(spec.source(), "Residual")]
    assert code == [
        "h = self.fc1(x)",
        "h = self.act(h)",
        "h = self.fc2(h)",
        "shortcut = self.shortcut(x)",
        "h = torch.add(h, shortcut)",
        "return self.out_act(h)",
    ]
    model = spec.build()
    x = torch.randn(2, 8)
    r = model.res
    expected = torch.relu(r.fc2(torch.relu(r.fc1(x))) + r.shortcut(x))
    torch.testing.assert_close(model(x), expected)


def test_skip_connections_keep_their_names_and_the_rest_chains() -> None:
    spec = load_example("unet")
    code = [line.split("  #")[0] for line in _forward_lines(spec.source(), "UNet")]
    assert code == [
        "inc = self.inc(x)",
        "down1 = self.down1(inc)",
        "down2 = self.down2(down1)",
        "down3 = self.down3(down2)",
        "x = self.down4(down3)",
        "x = self.up1(x, down3)",
        "x = self.up2(x, down2)",
        "x = self.up3(x, down1)",
        "x = self.up4(x, inc)",
        "return self.outc(x)",
    ]


def test_the_last_call_is_returned_directly() -> None:
    spec = compile_text(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 3}
          - {op: Softmax, dim: -1}
        """
    )
    source = spec.source()
    assert _forward_lines(source, "Net") == [
        "x = self.fc(x)  # net.yaml:5  (B, 3)",
        "return self.softmax(x)  # net.yaml:6  (B, 3)",
    ]
    assert ": torch.Tensor = " not in source
    assert source.startswith(MYPY_DIRECTIVE + "\n")  # Module.__call__ returns Any
    model = spec.build()
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), torch.softmax(model.fc(x), dim=-1))


def test_a_returned_value_used_before_keeps_its_name() -> None:
    spec = compile_text(
        """
        inputs: {x: [4]}
        layers:
          - {op: Linear, name: fc, out_features: 4}
          - {op: add, name: twice, in: [fc, fc]}
          - {op: mul, in: [twice, fc]}
        outputs: [twice, mul]
        """
    )
    source = spec.source()
    assert _forward_lines(source, "Net")[-1] == "return twice, mul"
    assert MYPY_DIRECTIVE not in source
    model = spec.build()
    x = torch.randn(2, 4)
    fc = model.fc(x)
    twice, mul = model(x)
    torch.testing.assert_close(twice, fc + fc)
    torch.testing.assert_close(mul, (fc + fc) * fc)


def _comments(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type == tokenize.COMMENT]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_no_comments_is_the_same_code(name: str) -> None:
    spec = load_example(name)
    plain = spec.source(comments=False)
    assert _comments(spec.source())  # the spec's lines and shapes
    assert set(_comments(plain)) <= {MYPY_DIRECTIVE}
    assert ast.dump(ast.parse(plain)) == ast.dump(ast.parse(spec.source()))


def test_compile_model_no_comments(tmp_path: Path) -> None:
    files = []
    for name in EXAMPLE_NAMES:
        out = tmp_path / f"{name}.py"
        spec = Path(load_example(name).path)
        assert compile_main([str(spec), "--no-comments", "-q", "-o", str(out)]) == 0
        assert out.read_text(encoding="utf-8") == load_example(name).source(
            comments=False
        )
        files.append(out)
    assert ruff_format_check(files) is None


def test_branches_are_named_and_a_tuple_is_not_carried_by_the_chain() -> None:
    spec = compile_text(
        """
        inputs: {x: [5, 8]}
        layers:
          - {op: LSTM, name: lstm, hidden_size: 4, batch_first: true}
          - {op: Linear, name: trunk, in: lstm.0, out_features: 4}
          - {op: Linear, name: fc_a, in: trunk, out_features: 4}
          - {op: Linear, name: fc_b, in: trunk, out_features: 4}
          - {op: cat, in: [fc_a, fc_b], dim: -1}
        """
    )
    code = [line.split("  #")[0] for line in _forward_lines(spec.source(), "Net")]
    assert code == [
        "lstm = self.lstm(x)",
        "trunk = self.trunk(lstm[0])",
        "fc_a = self.fc_a(trunk)",
        "fc_b = self.fc_b(trunk)",
        "return torch.cat([fc_a, fc_b], dim=-1)",
    ]
    model = spec.build()
    x = torch.randn(2, 5, 8)
    trunk = model.trunk(model.lstm(x)[0])
    expected = torch.cat([model.fc_a(trunk), model.fc_b(trunk)], dim=-1)
    torch.testing.assert_close(model(x), expected)

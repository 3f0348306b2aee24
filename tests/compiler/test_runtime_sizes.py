"""Sizes known only at run time, creation ops, ``training``, ``call:`` and einsum.

Each compiled module is checked against a hand-written one (copied weights, equal
outputs) at two batch sizes or sequence lengths from the same compiled module, and
its generated lines are read back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnspec.export import export_model

from ..helpers import compile_text, expect_error


def _forward(source: str) -> str:
    return source.split("def forward", 1)[1]


def test_the_batch_size_is_read_in_forward() -> None:
    spec = compile_text(
        """
        inputs: {x: [3, 4, 4]}
        layers:
          - {op: Conv2d, name: conv, out_channels: 8, kernel_size: 1}
          - {op: reshape, shape: ["${x.shape[0]}", -1]}
          - {op: Linear, name: fc, out_features: 5}
        """
    )
    source = spec.source(comments=False)
    assert "torch.reshape(h, shape=[x.shape[0], -1])" in source
    model = spec.build()
    ref_conv, ref_fc = nn.Conv2d(3, 8, 1), nn.Linear(128, 5)
    ref_conv.load_state_dict(model.conv.state_dict())
    ref_fc.load_state_dict(model.fc.state_dict())
    for batch in (2, 5):
        x = torch.randn(batch, 3, 4, 4)
        want = ref_fc(ref_conv(x).reshape(batch, -1))
        torch.testing.assert_close(model(x), want)


POSITIONS = """
inputs:
  input_ids: {shape: [{seq: 16}], dtype: int64}
layers:
  - {op: arange, name: pos, args: ["${input_ids.shape[1]}"], dtype: int64,
     like: input_ids}
  - {op: Embedding, name: wte, in: input_ids, num_embeddings: 100, embedding_dim: 8}
  - {op: Embedding, name: wpe, in: pos, num_embeddings: 64, embedding_dim: 8}
  - {op: add, name: h, in: [wte, wpe]}
  - {op: ones, args: ["${input_ids.shape[1]}", "${input_ids.shape[1]}"],
     dtype: bool, like: input_ids}
  - {op: tril, name: mask}
  - {op: MultiheadAttention, name: attn, in: {query: h, key: h, value: h,
     attn_mask: mask}, num_heads: 2, batch_first: true,
     call: {need_weights: false}}
"""


class _Positions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(100, 8)
        self.wpe = nn.Embedding(64, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        h = self.wte(input_ids) + self.wpe(pos)
        mask = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        return self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]


def test_named_input_sizes_are_never_baked() -> None:
    spec = compile_text(POSITIONS)
    body = _forward(spec.source(comments=False))
    assert (
        "torch.arange(input_ids.shape[1], dtype=torch.int64, device=input_ids.device)"
        in " ".join(body.split()).replace("( ", "(").replace(" )", ")")
    )
    assert "need_weights=False" in body
    assert "16" not in body
    model = spec.build().eval()
    ref = _Positions().eval()
    assert list(ref.state_dict()) == list(model.state_dict())
    ref.load_state_dict(model.state_dict())
    for batch, seq in ((2, 16), (3, 9)):
        ids = torch.randint(0, 100, (batch, seq))
        out, weights = model(ids)
        assert weights is None  # need_weights=False reached forward
        torch.testing.assert_close(out, ref(ids))


def test_a_creation_op_follows_the_device_of_its_reference() -> None:
    model = compile_text(POSITIONS).build(device="meta")
    out, _ = model(torch.zeros(2, 5, dtype=torch.int64, device="meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (2, 5, 8)


def test_export_sees_a_named_size_as_dynamic(tmp_path: Path) -> None:
    spec = compile_text(
        """
        inputs:
          input_ids: {shape: [{seq: 16}], dtype: int64}
        layers:
          - {op: arange, name: pos, args: ["${input_ids.shape[1]}"], like: input_ids}
          - {op: Embedding, name: wte, in: input_ids, num_embeddings: 100,
             embedding_dim: 8}
          - {op: Embedding, name: wpe, in: pos, num_embeddings: 64, embedding_dim: 8}
          - {op: add, in: [wte, wpe]}
        """
    )
    model = spec.build().eval()
    report = export_model(spec, model, tmp_path / "pos.pt2", "pt2")
    assert report.dynamic == {"input_ids": [0, 1]}
    program = torch.export.load(str(tmp_path / "pos.pt2")).module()
    for seq in (7, 30):
        ids = torch.randint(0, 100, (3, seq))
        with torch.no_grad():
            torch.testing.assert_close(program(ids), model(ids))


class _Attention(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, -1)
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.p if self.training else 0.0
        )


ATTENTION = """
inputs: {x: [6, 8]}
blocks:
  Attention:
    params: {p: 0.1}
    layers:
      - {op: Linear, name: qkv, out_features: "${3 * x.shape[-1]}"}
      - {op: chunk, args: [3, -1]}
      - {op: scaled_dot_product_attention, in: [chunk.0, chunk.1, chunk.2],
         dropout_p: "${p if training else 0.0}"}
layers:
  - {op: Attention, name: attn, p: 0.5}
"""


def test_training_is_the_modules_mode() -> None:
    spec = compile_text(ATTENTION)
    source = spec.source(comments=False)
    assert "self.p = p" in source
    assert "dropout_p=self.p if self.training else 0.0" in source
    model = spec.build()
    ref = _Attention(0.5)
    ref.load_state_dict(model.attn.state_dict())
    x = torch.randn(4, 6, 8)
    model.eval(), ref.eval()
    torch.testing.assert_close(model(x), ref(x))
    model.train(), ref.train()
    torch.manual_seed(3)
    got = model(x)
    torch.manual_seed(3)
    torch.testing.assert_close(got, ref(x))
    model.eval()
    assert not torch.allclose(got, model(x))  # dropout ran in training mode only


def test_einsum_takes_its_equation_first() -> None:
    spec = compile_text(
        """
        inputs: {q: [2, 5, 4], k: [2, 7, 4]}
        layers:
          - {op: einsum, args: ["bhqd,bhkd->bhqk"], in: [q, k]}
        """
    )
    assert 'torch.einsum("bhqd,bhkd->bhqk", q, k)' in spec.source(comments=False)
    model = spec.build()
    for batch in (1, 3):
        q, k = torch.randn(batch, 2, 5, 4), torch.randn(batch, 2, 7, 4)
        out = model(q, k)
        assert tuple(out.shape) == (batch, 2, 5, 7)
        torch.testing.assert_close(out, torch.einsum("bhqd,bhkd->bhqk", q, k))


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        (
            """
            inputs: {x: [8]}
            layers:
              - {op: Dropout, p: "${0.5 if training else 0.0}"}
            """,
            5,
            22,
            ["p: the module's mode (training)", "known only at run time"],
        ),
        (
            """
            inputs: {x: [8]}
            layers:
              - {op: relu, like: x}
            """,
            5,
            16,
            ["like: gives the device", "arange"],
        ),
        (
            """
            inputs: {x: [8]}
            layers:
              - {op: relu, call: {inplace: true}}
            """,
            5,
            16,
            ["call: gives keyword arguments to a module's forward", "function node"],
        ),
        (
            """
            inputs: {x: [4, 8]}
            layers:
              - {op: Dropout, repeat: 2, call: {inplace: true}}
            """,
            5,
            30,
            ["copies of a repeat"],
        ),
        (
            """
            inputs: {x: [{seq: 4}, 8]}
            layers:
              - {op: Linear, out_features: "${x.shape[1]}"}
            """,
            5,
            32,
            ["out_features: a size known only at run time", "written x.shape[1]"],
        ),
    ],
)
def test_a_run_time_value_where_it_cannot_go(
    body: str, line: int, column: int, words: list[str]
) -> None:
    expect_error(body, line, column, *words)


def test_summary_shows_an_output_that_call_leaves_out() -> None:
    text = str(compile_text(POSITIONS).summary())
    assert "([B,16,8], None)" in text
    assert "arange" in text and "tril" in text

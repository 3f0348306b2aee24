"""nnspec graph's layout options: the direction (--rankdir), the resolution (--dpi),
and labels whose bold title keeps clear of the line below it."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.inspection.graph_render import build_diagram, to_dot, to_mermaid

LENET = Path(__file__).resolve().parents[2] / "examples" / "lenet.yaml"


def test_rankdir_sets_the_direction_in_dot_and_mermaid(capsys) -> None:
    assert main(["graph", str(LENET), "-o", "-", "--rankdir", "LR"]) == 0
    assert "rankdir=LR" in capsys.readouterr().out
    assert (
        main(["graph", str(LENET), "-o", "-", "--format", "mmd", "--rankdir", "BT"])
        == 0
    )
    assert capsys.readouterr().out.startswith("flowchart BT\n")
    diagram = build_diagram(nnspec.load(LENET).summary())
    assert "rankdir=TB" in to_dot(diagram)
    with pytest.raises(ValueError, match="rankdir 'UP'"):
        to_mermaid(diagram, "UP")


def test_bold_titles_are_kept_apart_from_the_next_line() -> None:
    dot = to_dot(build_diagram(nnspec.load(LENET).summary()))
    conv1 = next(line for line in dot.splitlines() if "<b>conv1</b>" in line)
    title_end = conv1.index("</b>")
    gap = conv1.index('<font point-size="3"> </font>')
    subtitle = conv1.index('<font point-size="9">')
    assert title_end < gap < subtitle


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot draws the png")
def test_dpi_scales_a_png(tmp_path: Path) -> None:
    low, high = tmp_path / "low.png", tmp_path / "high.png"
    assert main(["graph", str(LENET), "-o", str(low), "--dpi", "50"]) == 0
    assert main(["graph", str(LENET), "-o", str(high), "--dpi", "200"]) == 0
    (w_low, h_low), (w_high, h_high) = _png_size(low), _png_size(high)
    assert 3.5 < w_high / w_low < 4.5 and 3.5 < h_high / h_low < 4.5


def test_out_of_range_dpi_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["graph", str(LENET), "-o", str(tmp_path / "x.dot"), "--dpi", "5"]) == 2
    assert "dpi 5: between 10 and 2400" in capsys.readouterr().err
    assert not (tmp_path / "x.dot").exists()

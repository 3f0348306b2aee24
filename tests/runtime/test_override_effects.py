"""--set overrides: a warning when another setting makes one irrelevant, and
mistakes shown at the key they concern with the value as it was written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import nnspec
from nnspec.cli import main
from nnspec.commands import parse_overrides
from nnspec.runtime.settings import resolve_settings
from tests.runtime.conftest import TINY_TRAIN

ROOT = Path(__file__).parents[2]
ONE_CYCLE = TINY_TRAIN + "  scheduler: {op: OneCycleLR, max_lr: 0.05, interval: step}\n"


def _train(spec: Path, out: str, *items: str) -> int:
    args = ["train", str(spec), "--out", str(spec.parent / out)]
    for item in items:
        args += ["--set", item]
    return main(args)


def _line_of(spec: Path, text: str) -> int:
    return spec.read_text().splitlines().index(text) + 1


def test_the_readme_override_example_takes_effect() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [command] = [
        line
        for line in readme.splitlines()
        if line.startswith("nnspec train examples/digits.yaml") and "--set" in line
    ]
    words = shlex.split(command.split("#")[0])
    items = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    overrides = parse_overrides(items)
    assert overrides  # the example does override something
    settings = resolve_settings(
        nnspec.load(ROOT / "examples" / "digits.yaml"), overrides
    )
    assert settings.warnings == []
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section == "scheduler":
            assert settings.scheduler_args[name] == value
        elif section == "optimizer":
            assert settings.optimizer_args[name] == value
        else:
            assert getattr(settings.train, name) == value


def test_a_learning_rate_under_one_cycle_is_reported_as_without_effect(
    tiny_spec, capsys
) -> None:
    spec = tiny_spec(ONE_CYCLE.replace("steps: 12", "steps: 2"))
    code = _train(spec, "run", "optimizer.lr=1e-3")
    assert code == 0
    err = capsys.readouterr().err
    line = _line_of(spec, "  optimizer: {op: AdamW, lr: 0.01}")
    assert (
        f"{spec}:{line}:26: warning: --set optimizer.lr=0.001 has no effect: "
        "OneCycleLR sets the learning rate from its max_lr (max_lr / div_factor at "
        "the start); set scheduler.max_lr instead"
    ) in err.splitlines()


def test_a_learning_rate_without_such_a_scheduler_is_not_reported(tiny_spec) -> None:
    spec = tiny_spec()
    settings = resolve_settings(nnspec.load(spec), {"optimizer.lr": 1e-3})
    assert settings.warnings == []
    assert settings.optimizer_args["lr"] == 1e-3


def test_epochs_that_steps_cut_short_are_reported(tiny_spec, capsys) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("steps: 12", "steps: 3"))
    assert _train(spec, "a", "epochs=5") == 0
    err = capsys.readouterr().err
    line = _line_of(spec, "train:")  # the spec has no epochs: key
    assert (
        f"{spec}:{line}:1: warning: --set epochs=5 has no effect: steps: 3 ends "
        "the run first, at step 3"
    ) in err.splitlines()
    # Steps that the epochs end before.
    spec.write_text(spec.read_text().replace("  steps: 3\n", "  epochs: 1\n"))
    assert _train(spec, "b", "steps=500") == 0
    captured = capsys.readouterr()
    assert (
        f"{spec}:{_line_of(spec, 'train:')}:1: warning: --set steps=500 has no "
        "effect: epochs: 1 ends the run first, at step 11"
    ) in captured.err.splitlines()
    assert "11 steps (1 epoch);" in captured.out  # not "1 epochs"


@pytest.mark.parametrize(
    ("item", "key", "shown"),
    [
        ("compile={mode: fast}", "train:", "compile={mode: fast}"),
        ("grad_clip=-1", "train:", "grad_clip=-1"),
        ("data.workers=-1", "  data:", "data.workers=-1"),
        ("compile={backend: nope, fullgraph: true}", "train:", None),
    ],
)
def test_a_mistake_in_a_key_the_spec_lacks_is_shown_at_its_parent_key(
    tiny_spec, capsys, item: str, key: str, shown: str | None
) -> None:
    spec = tiny_spec()
    code = main(["train", str(spec), "--out", str(spec.parent / "run"), "--set", item])
    assert code == 2
    first = capsys.readouterr().err.splitlines()[0]
    line = _line_of(spec, key)
    column = len(key) - len(key.lstrip()) + 1
    assert first.startswith(f"{spec}:{line}:{column}: error: ")
    assert first.endswith(f"(from --set {shown or item})")
    assert not re.search(r"\{'", first)  # YAML, not a Python dict's repr

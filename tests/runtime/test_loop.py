"""The training loop, in process: what a run writes, exact resume, NaN stops,
mixed precision, schedules, and the checks made before the first step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.runtime import NonFiniteLossError, Trainer, TrainError, load_checkpoint
from tests.runtime.conftest import TINY_TRAIN, records, train_losses, write_data


def fit(spec: Path, out: Path, **overrides: object):
    return Trainer(spec, out, overrides=overrides, progress=False).fit()


def test_a_run_writes_metrics_events_and_checkpoints(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    result = fit(spec, out)
    # 90 training samples in batches of 8: 11 steps per epoch; 12 steps in all.
    assert (result.status, result.step, result.epoch) == ("completed", 12, 1)

    assert (out / "spec.yaml").read_text() == spec.read_text()
    assert (out / "model.py").read_text() == nnspec.load(spec).source()
    assert json.loads((out / "train.json").read_text())["train"]["steps"] == 12

    logged = records(out)
    steps = [r for r in logged if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert {"step", "epoch", "loss", "lr", "samples_per_s"} <= set(steps[0])
    assert [r["epoch"] for r in steps] == [1] * 11 + [2]
    assert all(r["lr"] == 0.01 and r["samples_per_s"] > 0 for r in steps)
    vals = [r for r in logged if "val_loss" in r]
    assert [(r["step"], r["epoch"]) for r in vals] == [(11, 1), (12, 2)]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in vals)

    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    model = nnspec.load(spec).build()
    assert list(last["model"]) == list(model.state_dict())
    assert (last["step"], last["epoch"], last["epoch_step"]) == (12, 1, 1)
    assert last["torch_version"] == str(torch.__version__)
    best_record = min(vals, key=lambda r: r["val_loss"])
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == best_record["step"] == result.best["step"]
    assert best["best"]["value"] == best_record["val_loss"]


def test_tensorboard_gets_the_scalars(tiny_spec, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    out = tmp_path / "run"
    fit(tiny_spec(), out, steps=3)
    events = EventAccumulator(str(out))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_s"} <= tags
    assert {"val/loss", "val/accuracy"} <= tags
    logged = train_losses(out)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(
        [logged[1], logged[2], logged[3]]
    )


RESUMABLE = TINY_TRAIN.replace(
    "  steps: 12\n",
    "  steps: 24\n"
    "  accumulate: 2\n"
    "  grad_clip: 1.0\n"
    "  scheduler: {op: OneCycleLR, max_lr: 0.05, total_steps: 24, interval: step}\n",
)


@pytest.mark.parametrize("stop_at", [7, 10])  # mid-epoch, and an epoch's end
def test_stop_and_resume_repeats_the_straight_run_exactly(
    tiny_spec, tmp_path: Path, stop_at: int
) -> None:
    # 90 samples, batches of 8, accumulate 2: 5 steps per epoch; dropout draws
    # random numbers, so the random state must come back too.
    spec = tiny_spec(RESUMABLE)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    first = fit(spec, stopped, steps=stop_at)
    assert first.step == stop_at
    resumed = Trainer(spec, stopped, resume=True, progress=False).fit()
    assert resumed.step == 24

    expected, got = train_losses(straight), train_losses(stopped)
    assert list(got) == list(range(1, 25))
    assert [got[s] for s in range(stop_at + 1, 25)] == [
        expected[s] for s in range(stop_at + 1, 25)
    ]
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(stopped / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 24


def test_resume_carries_the_unlogged_losses_over(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(RESUMABLE.replace("log_every: 1", "log_every: 4"))
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    fit(spec, straight)
    fit(spec, stopped, steps=6)  # logs step 4, then the partial window at 6
    Trainer(spec, stopped, resume=True, progress=False).fit()
    expected, got = train_losses(straight), train_losses(stopped)
    assert list(expected) == [4, 8, 12, 16, 20, 24]
    assert list(got) == [4, 6, 8, 12, 16, 20, 24]
    # The window 5..8 spans the stop: it is the same mean as the straight run's.
    assert [got[s] for s in expected] == list(expected.values())


def test_resume_refuses_a_changed_model(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    fit(spec, out, steps=2)
    with pytest.raises(TrainError) as info:
        Trainer(spec, out, params={"width": 8}, resume=True, progress=False).fit()
    assert "param width: 16 then, 8 now" in str(info.value)
    spec.write_text(spec.read_text().replace("p: 0.2", "p: 0.5"))
    with pytest.raises(TrainError, match="the layers, init or freeze rules changed"):
        Trainer(spec, out, resume=True, progress=False).fit()


def test_a_run_directory_is_not_reused_by_accident(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    fit(spec, out, steps=2)
    with pytest.raises(
        TrainError, match=r"already holds a run .*resume=True.*overwrite=True.*out_dir"
    ):
        fit(spec, out, steps=2)
    result = Trainer(
        spec, out, overrides={"steps": 1}, overwrite=True, progress=False
    ).fit()
    assert result.step == 1
    assert list(train_losses(out)) == [1]


def test_resume_without_a_checkpoint_starts_over_with_overwrite(
    tiny_spec, tmp_path: Path
) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".nnspec-run").write_text('{"format": 1}\n')
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')
    with pytest.raises(TrainError, match=r"cannot resume: .*last\.pt does not exist"):
        Trainer(spec, out, resume=True, progress=False).fit()
    assert "9.0" in (out / "metrics.jsonl").read_text()  # untouched
    result = Trainer(
        spec, out, resume=True, overwrite=True, overrides={"steps": 2}, progress=False
    )
    assert result.fit().step == 2
    assert list(train_losses(out)) == [1, 2]
    assert train_losses(out)[1] != 9.0


def test_a_nan_loss_stops_at_its_step_and_keeps_the_good_checkpoint(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    x = torch.randn(100, 6)
    x[40:44] = float("nan")  # batch 11 (samples 40..43) of an unshuffled epoch
    torch.save({"x": x, "label": torch.randint(0, 3, (100,))}, tmp_path / "data.pt")
    from tests.runtime.conftest import TINY_MODEL

    spec = tmp_path / "nan.yaml"
    spec.write_text(
        TINY_MODEL + "train:\n"
        "  data: {source: {pt: data.pt}, batch_size: 4, shuffle: false}\n"
        "  loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
        "  steps: 20\n"
        "  log_every: 4\n"
        "  checkpoint_every: 5\n"
    )
    with pytest.raises(NonFiniteLossError) as info:
        fit(spec, tmp_path / "run")
    assert info.value.step == 11
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert str(info.value).startswith(
        f"the loss became nan at step 11; training stopped and the last good "
        f"checkpoint is {last} (step 10)."
    )
    saved = load_checkpoint(last)
    assert saved["step"] == 10
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert list(train_losses(tmp_path / "run")) == [4, 8]  # noticed at step 12


def test_bf16_mixed_runs_the_layers_in_bfloat16_on_cpu(
    tiny_spec, tmp_path: Path
) -> None:
    dtypes: dict[str, set[torch.dtype]] = {"32-true": set(), "bf16-mixed": set()}
    current: list[str] = []

    def hook(module: torch.nn.Module, args: object, output: object) -> None:
        if isinstance(module, torch.nn.Linear) and module.training:
            dtypes[current[0]].add(output.dtype)  # type: ignore[attr-defined]

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        for precision in dtypes:
            current[:] = [precision]
            fit(tiny_spec(), tmp_path / precision, steps=3, precision=precision)
    finally:
        handle.remove()
    assert dtypes == {"32-true": {torch.float32}, "bf16-mixed": {torch.bfloat16}}
    losses = train_losses(tmp_path / "bf16-mixed")
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    weights = load_checkpoint(tmp_path / "bf16-mixed" / "checkpoints" / "last.pt")
    assert {v.dtype for v in weights["model"].values()} == {torch.float32}


def test_float16_mixed_on_cpu_is_an_error_at_its_line(tiny_spec) -> None:
    spec = tiny_spec(TINY_TRAIN + "  precision: 16-mixed\n  device: cpu\n")
    with pytest.raises(nnspec.SpecError) as info:
        Trainer(spec, progress=False)
    assert (info.value.line, info.value.column) == (23, 14)
    assert "needs a CUDA device" in info.value.message


def test_an_epoch_scheduler_steps_at_epoch_ends(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(
        TINY_TRAIN.replace("steps: 12", "epochs: 3")
        + "  scheduler: {op: StepLR, step_size: 1, gamma: 0.5, interval: epoch}\n"
    )
    fit(spec, tmp_path / "run")
    lrs = {r["step"]: r["lr"] for r in records(tmp_path / "run") if "lr" in r}
    assert [lrs[1], lrs[10], lrs[12], lrs[22], lrs[23], lrs[33]] == [
        0.01,
        0.01,
        0.005,
        0.005,
        0.0025,
        0.0025,
    ]


def test_one_cycle_gets_the_planned_length(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(
        TINY_TRAIN + "  scheduler: {op: OneCycleLR, max_lr: 0.1, interval: step}\n"
    )
    fit(spec, tmp_path / "run", steps=7)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["scheduler"]["total_steps"] == 7
    # Resuming with more steps extends the schedule instead of overrunning it.
    Trainer(
        spec, tmp_path / "run", overrides={"steps": 9}, resume=True, progress=False
    ).fit()
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["scheduler"]["total_steps"] == 9


def test_weighted_loss_terms_are_summed_and_logged(tmp_path: Path) -> None:
    write_data(tmp_path / "data.pt")
    spec = tmp_path / "two.yaml"
    spec.write_text(
        "nnspec: 1\nname: Two\ninputs: {x: [6]}\n"
        "layers:\n"
        "  - {op: Linear, name: trunk, out_features: 8}\n"
        "  - {op: Linear, name: head, out_features: 3}\n"
        "  - {op: Linear, name: aux, in: trunk, out_features: 3}\n"
        "outputs: {logits: head, extra: aux}\n"
        "train:\n"
        "  data: {source: {pt: data.pt}, batch_size: 10, val_fraction: 0.2}\n"
        "  loss:\n"
        "    logits: {op: CrossEntropyLoss, target: label}\n"
        "    extra: {op: CrossEntropyLoss, target: label, weight: 0.3}\n"
        "  metrics: {logits: [accuracy], extra: [accuracy]}\n"
        "  steps: 3\n"
        "  log_every: 1\n"
    )
    fit(spec, tmp_path / "run")
    logged = records(tmp_path / "run")
    for r in (r for r in logged if "loss" in r):
        assert r["loss"] == pytest.approx(r["loss_logits"] + 0.3 * r["loss_extra"])
    val = [r for r in logged if "val_loss" in r][-1]
    assert val["val_loss"] == pytest.approx(
        val["val_loss_logits"] + 0.3 * val["val_loss_extra"]
    )
    assert {"val_logits_accuracy", "val_extra_accuracy"} <= set(val)


def test_a_loss_that_cannot_take_its_target_is_a_spec_error(tmp_path: Path) -> None:
    torch.save(
        {"x": torch.randn(20, 6), "label": torch.randn(20, 5)}, tmp_path / "data.pt"
    )
    from tests.runtime.conftest import TINY_MODEL

    spec = tmp_path / "bad.yaml"
    spec.write_text(
        TINY_MODEL + "train:\n"
        "  data: {source: {pt: data.pt}, batch_size: 4}\n"
        "  loss: {logits: {op: MSELoss, target: label}}\n"
    )
    with pytest.raises(nnspec.SpecError) as info:
        fit(spec, tmp_path / "run")
    assert (info.value.line, info.value.column) == (15, 18)
    assert info.value.message == (
        "loss MSELoss cannot compare output 'logits' [4, 3] (float32) with target "
        "'label' [4, 5] (float32): the shapes differ, and the loss would broadcast"
    )
    spec.write_text(spec.read_text().replace("MSELoss", "CrossEntropyLoss"))
    torch.save(
        {"x": torch.randn(20, 6), "label": torch.randint(0, 3, (20, 2))},
        tmp_path / "data.pt",
    )
    with pytest.raises(nnspec.SpecError) as info:
        fit(spec, tmp_path / "run2")
    assert info.value.message.startswith(
        "loss CrossEntropyLoss cannot compare output 'logits' [4, 3] (float32) with "
        "target 'label' [4, 2] (int64): "
    )


def test_a_batch_larger_than_the_data_is_a_spec_error(tiny_spec, tmp_path) -> None:
    spec = tiny_spec(TINY_TRAIN.replace("batch_size: 8", "batch_size: 128"))
    with pytest.raises(nnspec.SpecError) as info:
        Trainer(spec, tmp_path / "run", progress=False).fit()
    assert (info.value.line, info.value.column) == (16, 17)
    assert info.value.message == (
        "a step takes batch_size x accumulate = 128 samples, but there are 90 "
        "training samples"
    )


def test_reduce_on_plateau_needs_validation(tiny_spec, tmp_path: Path) -> None:
    spec = tiny_spec(
        TINY_TRAIN.replace("    val_fraction: 0.1\n", "")
        + "  scheduler: {op: ReduceLROnPlateau, patience: 0}\n"
    )
    with pytest.raises(nnspec.SpecError, match="ReduceLROnPlateau steps on a valid"):
        fit(spec, tmp_path / "run")


def test_plain_lines_without_a_terminal_and_a_bar_with_one(
    tiny_spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec()
    fit(spec, tmp_path / "plain", steps=2)
    out = capsys.readouterr().out
    assert "epoch 1/1  step 1/2  loss " in out
    assert "samples/s" in out
    assert "done at step 2" in out
    Trainer(spec, tmp_path / "bar", overrides={"steps": 2}, progress=True).fit()
    captured = capsys.readouterr()
    assert "step 1/2" not in captured.out  # the bar replaces the lines
    assert "epoch 1/1" in captured.err and "2/2" in captured.err
    assert "loss=" in captured.err and "samples_s=" in captured.err


def test_resume_completes_a_best_checkpoint_cut_short(
    tiny_spec, tmp_path: Path
) -> None:
    spec = tiny_spec()
    out = tmp_path / "run"
    fit(spec, out, steps=11)  # one validation, at step 11: the best so far
    best = out / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["step"] == 11
    best.unlink()  # as if killed between writing last.pt and copying it
    result = Trainer(spec, out, resume=True, progress=False).fit()
    assert load_checkpoint(best)["step"] == result.best["step"]


def test_a_dataset_with_workers_resumes_exactly(tiny_spec, tmp_path: Path) -> None:
    train = (
        "train:\n"
        "  data:\n"
        "    source: 'tests.runtime.data_functions:as_dataset'\n"
        "    batch_size: 8\n"
        "    workers: 1\n"
        "  loss: {logits: {op: CrossEntropyLoss, target: label}}\n"
        "  metrics: {logits: [accuracy]}\n"
        "  steps: 8\n"
        "  log_every: 1\n"
    )
    spec = tiny_spec(train)

    def run(out: Path, **kwargs: object):
        return Trainer(
            spec, out, allow_imports=["tests"], progress=False, **kwargs
        ).fit()

    straight = run(tmp_path / "straight")
    assert straight.last_validation is not None  # the function's validation set
    run(tmp_path / "stopped", overrides={"steps": 3})  # 5 steps per epoch: mid-epoch
    run(tmp_path / "stopped", resume=True)
    assert train_losses(tmp_path / "stopped") == train_losses(tmp_path / "straight")


def test_validation_and_checkpoints_follow_their_intervals(
    tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnspec.runtime import distributed

    saved_steps: list[int] = []
    real_save = distributed.save_checkpoint

    def recording_save(state: dict, path: Path) -> None:
        saved_steps.append(state["step"])
        real_save(state, path)

    monkeypatch.setattr(distributed, "save_checkpoint", recording_save)
    spec = tiny_spec(TINY_TRAIN + "  val_every: 4\n  checkpoint_every: 5\n")
    fit(spec, tmp_path / "run")
    vals = [r for r in records(tmp_path / "run") if "val_loss" in r]
    assert [r["step"] for r in vals] == [4, 8, 11, 12]  # every 4, epoch end, end
    improved, best = set(), float("inf")
    for r in vals:
        if r["val_loss"] < best:
            improved.add(r["step"])
            best = r["val_loss"]
    # Every 5 steps, the epoch end, the end, and each new best val_loss.
    assert saved_steps == sorted({5, 10, 11, 12} | improved)

"""Crash safety without training: a torn metrics line, half-saved checkpoints and adapters, pickled weights.

Each folder is built by hand as a run killed at the wrong moment would leave it; the real
checkpoint marker callback and the real adapter publishing code then decide what counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import ModelConfig
from patarm_kit.data.pairs import DataError
from patarm_kit.judging.models import ModelError, adapter_staging, load_model, publish_adapter, save_adapter
from patarm_kit.runs.files import RunError
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run
from patarm_kit.training.checkpoints import (
    CHECKPOINT_COMPLETE,
    carry_checkpoints,
    checkpoint_is_complete,
    checkpoint_marker,
    latest_checkpoint,
    remove_partial_saves,
)
from patarm_kit.training.grpo import keep_metrics_up_to, read_metrics

ROWS = [{"step": 1, "par/reward_mean": 0.5}, {"step": 2, "par/reward_mean": 0.75}, {"step": 3, "par/reward_mean": 1.0}]


def log_text(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# ---------------------------------------------------------------- par/metrics.jsonl


def test_a_torn_last_line_is_dropped_with_a_warning_and_cut_off_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(log_text(ROWS[:2]) + '{"step": 3, "par/rew')  # killed in the middle of writing step 3
    with pytest.warns(UserWarning, match=r"metrics.jsonl: line 3 has no newline"):
        assert read_metrics(path) == ROWS[:2]

    with pytest.warns(UserWarning):
        keep_metrics_up_to(path, step=2)  # what resume does before training goes on
    assert path.read_text() == log_text(ROWS[:2])


def test_a_last_line_without_its_newline_does_not_count_even_when_it_parses(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(log_text(ROWS).rstrip("\n"))
    with pytest.warns(UserWarning, match="line 3"):
        assert read_metrics(path) == ROWS[:2]


def test_a_damaged_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(log_text(ROWS[:1]) + "{not json\n" + log_text(ROWS[2:]))
    with pytest.raises(DataError, match=r"metrics.jsonl: line 2: not valid JSON"):
        read_metrics(path)
    path.write_text(log_text(ROWS[:1]) + "[1, 2]\n" + log_text(ROWS[2:]))
    with pytest.raises(DataError, match=r"line 2: not a step record"):
        read_metrics(path)


def test_a_clean_log_reads_whole_without_warnings(tmp_path, recwarn):
    path = tmp_path / "metrics.jsonl"
    path.write_text(log_text(ROWS))
    assert read_metrics(path) == ROWS and not recwarn.list
    assert read_metrics(tmp_path / "absent.jsonl") == []


# ---------------------------------------------------------------- checkpoints


def make_run(tmp_path: Path) -> Run:
    return Run.create("carried", load_config("smoke"), results_dir=tmp_path)


def save_checkpoint(checkpoints: Path, step: int, marked: bool = True) -> Path:
    """The files transformers writes into checkpoint-N, then (when `marked`) the kit's marker callback."""
    folder = checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 100)
    (folder / "optimizer.pt").write_bytes(b"o" * 200)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if marked:
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        checkpoint_marker().on_save(SimpleNamespace(output_dir=str(checkpoints)), state, None)
    return folder


@pytest.mark.parametrize("keep_adapters", [True, False])
def test_a_carried_run_keeps_its_latest_checkpoint_whole_and_older_adapters_complete(tmp_path, keep_adapters):
    """Carried across sessions (results/in-progress): the latest checkpoint resumes as before; older
    ones keep their adapter for the learning curve and still count as complete, or go."""
    run = make_run(tmp_path)
    layout = run.layout.for_par("par-shuffled")  # a variant's checkpoints, as a carry meets them
    checkpoints = layout.par_checkpoints
    older, latest = save_checkpoint(checkpoints, 32), save_checkpoint(checkpoints, 64)
    (older / "rng_state.pth").write_bytes(b"r" * 10)  # trainer state beside the optimizer's: it goes too
    older_marker = json.loads((older / CHECKPOINT_COMPLETE).read_text())
    save_checkpoint(checkpoints, 96, marked=False)  # killed before its marker
    staging = adapter_staging(layout.par_adapter)  # killed while publishing its adapter
    staging.mkdir(parents=True)
    whole = {p.name: p.read_bytes() for p in latest.iterdir()}

    carry_checkpoints(run, "par-shuffled", keep_adapters)
    assert "left_out" not in run.manifest(), "an unfinished training's stage has recorded none of these files"
    assert not staging.exists() and not list(layout.par_dir.glob(".*")), "half-written files are not carried"
    assert {p.name: p.read_bytes() for p in latest.iterdir()} == whole and latest_checkpoint(checkpoints) == latest
    if keep_adapters:
        assert [p.name for p in sorted(checkpoints.iterdir())] == ["checkpoint-32", "checkpoint-64"]
        assert sorted(p.name for p in older.iterdir()) == sorted([CHECKPOINT_COMPLETE, "adapter_model.safetensors", "trainer_state.json"])
        assert checkpoint_is_complete(older), "the curve would skip it and a resume would delete it"
        marker = json.loads((older / CHECKPOINT_COMPLETE).read_text())
        assert marker["step"] == 32 and set(marker["files"]) == {"adapter_model.safetensors", "trainer_state.json"}
        assert marker["carried"] and set(older_marker["files"]) > set(marker["files"])
    else:
        assert [p.name for p in checkpoints.iterdir()] == ["checkpoint-64"]


@pytest.mark.parametrize("keep_adapters", [True, False])
def test_a_finished_training_is_carried_without_optimizer_state_and_its_manifest_says_so(tmp_path, keep_adapters):
    """Once the adapter is published nothing resumes from a checkpoint: the latest loses its optimizer
    state too, and since the stage recorded those files, `left_out` names each one with why."""
    run = make_run(tmp_path)
    layout = run.layout.for_par("par")
    checkpoints = layout.par_checkpoints
    older, latest = save_checkpoint(checkpoints, 32), save_checkpoint(checkpoints, 64)
    layout.par_adapter.mkdir(parents=True)
    (layout.par_adapter / "adapter_model.safetensors").write_bytes(b"a" * 100)  # published: the training is done
    run.update("training", "par", {"status": "done"})

    deleted = carry_checkpoints(run, "par", keep_adapters)
    left_out = run.manifest()["left_out"]
    assert sorted(left_out) == sorted(run.layout.key(p) for p in deleted) and set(left_out.values()) == {"GRPO checkpoints"}
    if keep_adapters:
        assert {p.name for p in deleted} == {"optimizer.pt"} and len(deleted) == 2
        for folder in (older, latest):
            assert checkpoint_is_complete(folder) and not (folder / "optimizer.pt").exists()
    else:
        assert sorted(left_out) == ["par/checkpoints/checkpoint-32", "par/checkpoints/checkpoint-64"]
        assert not list(checkpoints.iterdir())
    assert (layout.par_adapter / "adapter_model.safetensors").is_file()


def test_a_run_refuses_to_record_a_file_it_must_keep_as_left_out(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(RunError, match=r"eval/x.json is not a file a run may leave out"):
        run.record_left_out([run.dir / "par/checkpoints/checkpoint-1/optimizer.pt", run.dir / "eval/x.json"])
    assert "left_out" not in run.manifest(), "nothing is recorded when one path is refused"


def test_resume_takes_the_last_complete_checkpoint_and_removes_half_saved_ones(tmp_path):
    layout = RunLayout(tmp_path / "run")
    first = save_checkpoint(layout.par_checkpoints, 1)
    assert json.loads((first / CHECKPOINT_COMPLETE).read_text())["files"]["optimizer.pt"] == 200
    save_checkpoint(layout.par_checkpoints, 2, marked=False)  # killed before the marker
    cut = save_checkpoint(layout.par_checkpoints, 10)
    (cut / "optimizer.pt").write_bytes(b"o" * 50)  # a file shorter than the marker says
    assert latest_checkpoint(layout.par_checkpoints) == first  # 10 sorts after 2 by step, not by name

    staged = adapter_staging(layout.par_adapter)
    staged.mkdir()
    (staged / "adapter_config.json").write_text("{}")
    tmp_file = layout.par_dir / ".metrics.jsonl.abc123.tmp"  # an atomic write that never got renamed
    tmp_file.write_text("partial")
    layout.par_metrics.write_text(log_text(ROWS[:1]))

    removed = remove_partial_saves(layout)
    assert {p.name for p in removed} == {"checkpoint-2", "checkpoint-10", staged.name, tmp_file.name}
    assert [p.name for p in layout.par_checkpoints.iterdir()] == ["checkpoint-1"]
    assert sorted(p.name for p in layout.par_dir.iterdir()) == ["checkpoints", "metrics.jsonl"]
    assert latest_checkpoint(layout.par_checkpoints) == first


def test_no_checkpoint_when_none_is_complete(tmp_path):
    save_checkpoint(tmp_path, 1, marked=False)
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "absent") is None


# ---------------------------------------------------------------- adapters: whole or absent, safetensors only


class FakeTrained:
    """Writes what a PEFT model writes; `fail` stops it midway, as a crash would."""

    def __init__(self, weights: bytes, fail: bool = False):
        self.weights, self.fail = weights, fail

    def named_parameters(self):
        return iter(())  # no adapter tensor a process holds only in part (ZeRO-3)

    def save_pretrained(self, folder, safe_serialization: bool = True, state_dict=None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_config.json").write_text("{}")
        if self.fail:
            raise OSError("disk full")
        (folder / "adapter_model.safetensors").write_bytes(self.weights)


class FakeTokenizer:
    def save_pretrained(self, folder) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")


def test_an_adapter_is_replaced_whole_and_a_failed_save_leaves_the_old_one(tmp_path):
    target = tmp_path / "par" / "adapter"
    save_adapter(FakeTrained(b"old"), FakeTokenizer(), target, "# card\n")
    assert (target / "adapter_model.safetensors").read_bytes() == b"old" and (target / "README.md").read_text() == "# card\n"

    with pytest.raises(OSError, match="disk full"):
        save_adapter(FakeTrained(b"new", fail=True), FakeTokenizer(), target, "# new card\n")
    assert (target / "adapter_model.safetensors").read_bytes() == b"old"

    save_adapter(FakeTrained(b"new"), FakeTokenizer(), target, "# new card\n")  # cleans the failed staging
    assert (target / "adapter_model.safetensors").read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["adapter"]


def test_an_adapter_with_pickled_files_is_never_published(tmp_path):
    staged, target = tmp_path / ".adapter.partial", tmp_path / "adapter"
    FakeTrained(b"w").save_pretrained(staged)
    (staged / "training_args.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match=r"training_args.bin: pickled weights are refused"):
        publish_adapter(staged, target)
    assert not target.exists()


def test_pickled_adapter_weights_are_refused_before_any_model_loads(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match=r"adapter_model.bin: pickled weights are refused, the kit loads safetensors only"):
        load_model(ModelConfig(), adapter=adapter)
    (adapter / "adapter_model.bin").unlink()
    with pytest.raises(ModelError, match="no adapter_model.safetensors"):
        load_model(ModelConfig(), adapter=adapter)


def test_pickled_weights_beside_safetensors_in_a_model_folder_are_refused(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (model / name).write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match=r"my-model/pytorch_model.bin: pickled weights are refused"):
        load_model(ModelConfig(name=str(model)))


def test_the_bt_scorer_refuses_pickled_adapter_weights(tmp_path):
    from patarm_kit.judging.bt_scorer import BTScorer

    adapter = tmp_path / "bt"
    adapter.mkdir()
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="adapter_model.bin"):
        BTScorer(adapter, load_config("smoke"))

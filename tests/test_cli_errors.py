"""Every command, given bad input, prints one `error:` line naming the file, row or key, exits 2,
shows no traceback and writes nothing. No model is loaded: judges `length`/`random`, tiny limits."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.loader import load_config
from patarm_kit.runs import run as results  # RESULTS_DIR lives there
from patarm_kit.runs.run import Run

GOOD_ROW = {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No.", "task": "chat"}


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_error(result, *names: object) -> str:
    """Exit 2, exactly one non-empty line `error: ...` that names every one of `names`, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped the command
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what 'nothing written or changed' is checked against."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_rows(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run made with the smoke profile (manifest only), as `patarm-kit run` starts one."""
    return Run.create("run", load_config("smoke"), tmp_path / "runs").dir


def eval_args(tmp_path: Path, *extra: object) -> list[object]:
    return ["eval", "--judge", "length", "--bench", "rewardbench", "--profile", "smoke", "--limit", "1",
            "--out", tmp_path / "out" / "metrics.json", *extra]


# ---------------------------------------------------------------- unreadable and malformed files


def test_a_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b"\xff\xfe" + json.dumps(GOOD_ROW).encode())
    assert_one_error(invoke("data", "--source", path), path, "cannot be read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_names_the_file(tmp_path):
    path = write_rows(tmp_path / "secret.jsonl", [GOOD_ROW])
    path.chmod(0)
    assert_one_error(invoke("data", "--source", path), path)


def test_a_malformed_yaml_profile_names_the_file_and_line(tmp_path):
    profile = tmp_path / "broken.yaml"
    profile.write_text("extends: smoke\neval: {n_boot: [1, 2\n")
    assert_one_error(invoke("data", "--profile", profile), profile, "not valid YAML", "line")


def test_a_profile_that_is_not_utf8_names_the_file(tmp_path):
    profile = tmp_path / "latin.yaml"
    profile.write_bytes(b"seed: \xff\n")
    assert_one_error(invoke("data", "--profile", profile), profile, "cannot be read")


def test_a_malformed_override_names_the_key(tmp_path):
    assert_one_error(invoke(*eval_args(tmp_path, "--set", "eval.limit={rmbench: [1")), "override eval.limit")
    assert not (tmp_path / "out").exists()


def test_a_truncated_gz_names_the_file_not_aborted(tmp_path):
    data = gzip.compress("".join(json.dumps({**GOOD_ROW, "prompt": f"p{i}"}) + "\n" for i in range(200)).encode())
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_one_error(invoke("data", "--source", path), path, "truncated")


def test_out_pointing_at_a_folder_writes_nothing(tmp_path):
    folder = tmp_path / "results-folder"
    folder.mkdir()
    before = snapshot(tmp_path)
    assert_one_error(invoke(*eval_args(tmp_path)[:-1], folder), folder, "is a folder")
    assert snapshot(tmp_path) == before and not any(tmp_path.glob("*.judgments.jsonl"))


def test_a_corrupt_metrics_file_in_compare_names_the_file(run_dir, tmp_path):
    other = Run.create("other", load_config("smoke"), tmp_path / "runs").dir
    for run in (run_dir, other):
        (run / "eval").mkdir()
    (run_dir / "eval" / "length-rewardbench.json").write_text('{"acc": 0.5}')
    (other / "eval" / "length-rewardbench.json").write_text('{"acc": ')  # half-written
    assert_one_error(invoke("compare", run_dir, other), "length-rewardbench.json")


# ---------------------------------------------------------------- a half-written manifest, every command that opens a run


@pytest.mark.parametrize("command", [
    ["verify", "{run}"],
    ["compare", "{run}", "{run}"],
    ["summary", "{run}"],
    ["export", "{run}", "--out", "{run}-exported"],
    ["show", "{run}", "--bench", "rmbench"],
    ["train-bt", "--profile", "smoke", "--run-dir", "{run}"],
    ["train", "--profile", "smoke", "--run-dir", "{run}", "--set", "sft.enabled=false"],
    ["sft", "--profile", "smoke", "--run-dir", "{run}", "--no-checks"],
])
def test_a_half_written_manifest_names_the_manifest(command, run_dir):
    manifest = run_dir / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    before = snapshot(run_dir)
    assert_one_error(invoke(*[part.format(run=run_dir) for part in command]), manifest)
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["verify", "compare", "summary", "export", "show"])
def test_a_folder_that_is_no_run(command, tmp_path):
    args = {"compare": [tmp_path, tmp_path], "export": [tmp_path, "--out", tmp_path.parent / "exported"],
            "show": [tmp_path, "--bench", "rmbench"]}.get(command, [tmp_path])
    assert_one_error(invoke(command, *args), tmp_path, "manifest.json")
    assert not (tmp_path.parent / "exported").exists()


# ---------------------------------------------------------------- counts and fractions checked where the config is read


@pytest.mark.parametrize("override, key", [
    ("eval.n_boot=0", "eval.n_boot"),
    ("eval.sampling.n=0", "eval.sampling.n"),
    ("eval.limit={rewardbench: 0}", "eval.limit.rewardbench"),
    ("judge.preview_pairs=0", "judge.preview_pairs"),
    ("data.split_fractions={train: 0, dev: 0, test: 0}", "data.split_fractions"),
    ("data.split_fractions={train: 1.2, dev: -0.2}", "data.split_fractions.dev"),
])
def test_eval_refuses_bad_counts_and_fractions_before_writing(override, key, tmp_path):
    assert_one_error(invoke(*eval_args(tmp_path, "--set", override)), key)
    assert not (tmp_path / "out").exists()


def test_a_profile_with_zero_votes_names_the_key(tmp_path):
    profile = tmp_path / "zero-votes.yaml"
    profile.write_text("extends: smoke\neval:\n  sampling: {n: 0}\n")
    args = eval_args(tmp_path)
    args[args.index("smoke")] = profile
    assert_one_error(invoke(*args), "eval.sampling.n: must be at least 1, got 0")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value, named", [
    ("--votes", "-1", "votes"), ("--votes", "0", "votes"), ("--limit", "0", "--limit"), ("--ties", "third", "ties"),
])
def test_eval_flags_out_of_range_write_nothing(flag, value, named, tmp_path):
    assert_one_error(invoke(*eval_args(tmp_path, flag, value)), named, value)
    assert not (tmp_path / "out").exists()


# every command: a count that must be >= 1, refused before anything runs
STAGE_COMMANDS = {
    "run": ["run", "--profile", "smoke", "--run-name", "counted"],
    "data": ["data", "--profile", "{profile}"],
    "sft": ["sft", "--profile", "smoke", "--run-dir", "{run}"],
    "train": ["train", "--profile", "smoke", "--run-dir", "{run}"],
    "train-bt": ["train-bt", "--profile", "smoke", "--run-dir", "{run}"],
    "policies": ["policies", "--profile", "smoke", "--run-dir", "{run}"],
    "downstream": ["downstream", "--profile", "smoke", "--run-dir", "{run}"],
    "probe-score": ["probe-score", "--profile", "smoke", "--run-dir", "{run}"],
    "eval": ["eval", "--judge", "length", "--bench", "rewardbench", "--profile", "smoke", "--out", "{tmp}/m.json"],
    "plan": ["plan", "--profile", "smoke"],
}


@pytest.mark.parametrize("command", sorted(STAGE_COMMANDS))
def test_every_command_checks_counts_where_the_config_is_read(command, run_dir, tmp_path):
    profile = tmp_path / "zero-steps.yaml"
    profile.write_text("extends: smoke\npar:\n  max_steps: 0\n")
    args = [a.format(run=run_dir, tmp=tmp_path, profile=profile) for a in STAGE_COMMANDS[command]]
    if command != "data":  # `data` takes no --set; its profile carries the bad count
        args += ["--set", "par.max_steps=0"]
    before = snapshot(tmp_path)
    assert_one_error(invoke(*args), "par.max_steps: must be at least 1, got 0")
    assert snapshot(tmp_path) == before
    assert not results.RESULTS_DIR.exists() or not any(results.RESULTS_DIR.iterdir())


def test_every_command_is_covered_here():
    """A new command needs its bad-input test: the funnel covers it, this test makes sure it is tried."""
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert names <= set(STAGE_COMMANDS) | {"verify", "compare", "summary", "export", "show"}, names - set(STAGE_COMMANDS)


# ---------------------------------------------------------------- duplicate or null ids, empty sources


def test_duplicate_ids_are_refused_with_file_and_row(tmp_path):
    path = write_rows(tmp_path / "same-id.jsonl", [{**GOOD_ROW, "id": "x", "prompt": f"p{i}"} for i in range(20)])
    out = tmp_path / "out" / "metrics.json"
    result = invoke("eval", "--judge", "length", "--bench", f"pairs:{path}", "--limit", "all", "--out", out)
    assert_one_error(result, path, "row 2", "field id", "'same-id/x'")
    assert not out.parent.exists()


@pytest.mark.parametrize("value", [None, "", "  ", True, ["a"]])
def test_null_or_empty_ids_are_refused(value, tmp_path):
    path = write_rows(tmp_path / "ids.jsonl", [{**GOOD_ROW, "id": "a"}, {**GOOD_ROW, "prompt": "other", "id": value}])
    assert_one_error(invoke("data", "--source", path), path, "row 2", "field id")


def test_an_empty_pair_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert_one_error(invoke("data", "--source", path), path, "no pairs")


def test_a_source_whose_rows_are_all_skipped_is_an_error(tmp_path):
    path = write_rows(tmp_path / "all-bad.jsonl", [{**GOOD_ROW, "rejected": "Hi!"}])
    assert_one_error(invoke("data", "--source", path, "--skip-bad-rows"), path, "no pairs", "1 skipped")


@pytest.mark.parametrize("rows, names", [
    ([], ["no pairs"]),
    ([{"id": "a"}], ["row 1", "field source"]),
    (["dup", "dup"], ["row 2", "field id"]),
])
def test_train_bt_checks_the_runs_pair_file_before_any_model(rows, names, run_dir):
    pair = {"id": "hh/1", "source": "hh", "task": "chat", "prompt": [{"role": "user", "content": "q"}],
            "chosen": "a", "rejected": "b"}
    rows = [{**pair, "chosen": f"a{i}"} if row == "dup" else row for i, row in enumerate(rows)]
    (run_dir / "pairs").mkdir()
    path = write_rows(run_dir / "pairs" / "train.jsonl", rows)
    before = snapshot(run_dir)
    assert_one_error(invoke("train-bt", "--profile", "smoke", "--run-dir", run_dir), path, *names)
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- relative paths resolve against the caller's directory


def test_run_resolves_relative_profile_and_data_dir_before_anything(tmp_path, monkeypatch):
    import patarm_kit.chain as chain
    import patarm_kit.cli as cli

    (tmp_path / "mine.yaml").write_text("extends: smoke\n")
    (tmp_path / "data").mkdir()
    seen = {}

    def fake_chain(profile, run_name, overrides, data_dir, *rest, **kwargs):
        seen.update(profile=profile, data_dir=data_dir, config=load_config(profile))
        raise chain.ChainError("stopped by the test")

    monkeypatch.setattr(cli, "run_chain", fake_chain)  # the chain as the command calls it
    monkeypatch.chdir(tmp_path)
    assert_one_error(invoke("run", "--profile", "mine.yaml", "--data-dir", "data", "--run-name", "r"), "stopped")
    assert seen["profile"] == str(tmp_path / "mine.yaml") and seen["data_dir"] == str(tmp_path / "data")
    monkeypatch.chdir(tmp_path.parent)  # as notebooks run from notebooks/: the absolute paths still hold
    assert load_config(seen["profile"]).profile == "mine"


def test_a_relative_data_dir_that_does_not_exist_is_named_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_error(invoke("data", "--profile", "smoke", "--data-dir", "nowhere"), tmp_path / "nowhere")


# ---------------------------------------------------------------- real bugs keep their traceback


def test_an_unexpected_error_is_not_swallowed(monkeypatch):
    import patarm_kit.cli as cli

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "load_config", broken)
    result = invoke("data", "--profile", "smoke")
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


# ---------------------------------------------------------------- results/chain (the lead's part)


@pytest.mark.parametrize("name", ["..", "../escape", "{tmp}/absolute", "", "a/b"])
def test_run_names_that_leave_the_results_folder_are_refused(name, tmp_path):
    before = snapshot(tmp_path)
    assert_one_error(invoke("run", "--profile", "smoke", "--run-name", name.format(tmp=tmp_path)), "run name")
    assert snapshot(tmp_path) == before  # the results folder is tmp_path/results


def test_resume_needs_an_existing_run():
    assert_one_error(invoke("run", "--profile", "smoke", "--run-name", "never-made", "--resume"), "never-made")
    assert not (results.RESULTS_DIR / "never-made").exists()


def test_a_profile_may_only_name_notebooks_in_notebooks(tmp_path):
    profile = tmp_path / "escape.yaml"
    profile.write_text("extends: smoke\nnotebooks: [../README]\n")
    assert_one_error(invoke("run", "--profile", profile, "--run-name", "nb"), "../README")
    assert not (results.RESULTS_DIR / "nb").exists()


def test_a_config_mismatch_is_refused_before_anything_runs(tmp_path):
    run = Run.create("mismatch", load_config("smoke"))
    before = snapshot(run.dir)
    result = invoke("run", "--profile", "smoke", "--run-name", "mismatch", "--resume", "--set", "seed=7")
    assert_one_error(result, "another config")
    assert snapshot(run.dir) == before


def test_evaluation_of_zero_items_is_an_error_not_a_metric(tmp_path):
    """A training source's test split is empty when split_fractions gives it nothing: no NaN metric."""
    out = tmp_path / "out" / "metrics.json"
    result = invoke("eval", "--judge", "length", "--bench", "pairs:hh-rlhf", "--profile", "smoke", "--limit", "1",
                    "--set", "data.split_fractions={train: 1}", "--out", out)
    assert_one_error(result, "pairs:hh-rlhf")
    assert not out.parent.exists()


@pytest.mark.parametrize("command", ["sft", "train", "train-bt", "policies", "downstream"])
def test_a_multi_process_launch_does_not_create_a_run(command, tmp_path, monkeypatch):
    """Under `accelerate launch` every process would make the run folder and its manifest at once."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = invoke(command, "--profile", "smoke", "--run-dir", tmp_path / "new-run")
    assert_one_error(result, "new-run: no run here, and 2 processes cannot create one together")
    assert not (tmp_path / "new-run").exists()

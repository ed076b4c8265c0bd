"""One writer per run: a second writer is refused naming the holder, a killed holder's lock is taken over."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from patarm_kit.chain import run_chain
from patarm_kit.cli import app
from patarm_kit.config.loader import load_config
from patarm_kit.runs.files import RunError
from patarm_kit.runs.lock import lock_path, writer_lock
from patarm_kit.runs.run import Run, run_folder

runner = CliRunner()


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", ["sft", "train", "train-bt", "policies", "downstream", "probe-score"])
def test_a_second_writer_is_refused_naming_the_holder(command, tmp_path):
    run = Run.create("held", load_config("smoke"), results_dir=tmp_path)
    before = snapshot(run.dir)
    with writer_lock(run.dir):
        holder = json.loads(lock_path(run.dir).read_text())
        result = runner.invoke(app, [command, "--run-dir", str(run.dir)])
    assert result.exit_code == 2
    assert f"another command is writing this run (pid {holder['pid']}, since {holder['started']}" in result.output
    assert snapshot(run.dir) == before


def test_two_chains_on_one_new_run_name_one_is_refused_before_it_creates_anything():
    with writer_lock(run_folder("twin")):
        with pytest.raises(RunError, match="another command is writing this run"):
            run_chain("smoke", "twin", only=["01_data_pairing"])
        assert not run_folder("twin").exists()


def test_a_killed_writers_lock_is_taken_over_and_said(tmp_path, capsys):
    folder = tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended: as if killed while holding the lock
    lock_path(folder).write_text(json.dumps({"pid": pid, "started": "2026-12-06T00:00:00+00:00", "command": "patarm-kit train"}))
    with writer_lock(folder):
        assert json.loads(lock_path(folder).read_text())["pid"] != pid
    assert f"taking over the writer lock of pid {pid} (patarm-kit train, since 2026-12-06T00:00:00+00:00)" in capsys.readouterr().err
    assert lock_path(folder).read_text() == ""  # released: it names no holder
    with writer_lock(folder):
        pass
    assert "taking over" not in capsys.readouterr().err  # a lock released normally is not a takeover


def test_an_empty_run_dir_is_refused_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--run-dir", ""])
    assert result.exit_code == 2 and "--run-dir is empty" in result.output
    assert list(tmp_path.iterdir()) == []

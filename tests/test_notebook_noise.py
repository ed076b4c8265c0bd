"""Executed notebooks show results, not machinery (issue "Readers first", item 2).

`report.noise` counts what a reader would stop at in an executed notebook: stderr outputs,
warning lines, bars saved at "0%", absolute paths. The committed runs' notebooks hold none;
`patarm-kit run --refresh` executes a finished run's notebooks again from its recorded stages,
which is how notebooks executed by an older kit were brought to today's quiet outputs.
"""

import json
import shutil

import pytest

from patarm_kit import stages
from patarm_kit.chain import ChainError, run_chain
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.judging.judge import read_judgments
from patarm_kit.report.noise import Noise, notebook_noise, run_noise
from patarm_kit.report.verify import verify_run
from patarm_kit.runs import run as results
from patarm_kit.runs.files import RunError
from patarm_kit.runs.run import Run

COMMITTED = sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/notebooks"))


def write_notebook(path, outputs):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["Read /work/shared/data with care: warnings, 0%"]},
             {"cell_type": "code", "metadata": {}, "source": [], "execution_count": 1, "outputs": outputs}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_noise_counts_what_a_reader_sees(tmp_path):
    widget_bar = {"output_type": "display_data", "metadata": {},
                  "data": {"text/plain": ["  0%|          | 0/3 [00:00<?, ?it/s]"], "application/vnd.jupyter.widget-view+json": {}}}
    text_bar = {"output_type": "stream", "name": "stdout", "text": ["sft:   0%| 0/3\rsft: 100%| 3/3 [00:02]\n"]}
    first_frame = {"output_type": "stream", "name": "stdout", "text": ["warm-up:   0%| 0/3"]}  # then its last frame
    last_frame = {"output_type": "stream", "name": "stdout", "text": ["\rwarm-up: 100%| 3/3 [00:02]\n"]}
    stderr = {"output_type": "stream", "name": "stderr",
              "text": ["/work/main/.venv/lib/x.py:1: FutureWarning: old name\n", "UserWarning: again\n"]}
    result = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/plain": ["accuracy 10% and 0.0% ties, run results/reference-cpu"]}}
    noisy = write_notebook(tmp_path / "noisy.ipynb", [widget_bar, text_bar, stderr, result])
    # the widget stays at 0% for good; the text bar's last frame is 100%; prose is the kit's own
    assert notebook_noise(noisy) == Noise(stderr_outputs=1, warning_lines=2, zero_bars=1, absolute_paths=1)
    assert notebook_noise(write_notebook(tmp_path / "quiet.ipynb", [text_bar, first_frame, last_frame, result])) == Noise()
    assert notebook_noise(write_notebook(tmp_path / "stopped.ipynb", [first_frame])) == Noise(zero_bars=1)


# Every committed run's notebooks were executed by an older kit, whose stage 01 wrote other pair files
# than today's (benches judged from stage 01's files since "one pipe"; decontamination since "PAR
# learns"): executing them again would show today's data beside the older kit's training, so they
# keep what they showed (Run.restore_outputs refuses to resume them: test_stage_records.py).
EXECUTED_BY_AN_OLDER_KIT = set(COMMITTED)


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_runs_executed_notebooks_are_quiet_or_named(name):
    noisy = {notebook: noise for notebook, noise in run_noise(REPO_ROOT / "results" / name).items() if noise != Noise()}
    if name in EXECUTED_BY_AN_OLDER_KIT:
        assert noisy, f"{name}: its notebooks are quiet now; take it off EXECUTED_BY_AN_OLDER_KIT"
    else:
        assert noisy == {}, f"{name}: execute its notebooks again (patarm-kit run --run-name {name} --refresh)"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXECUTED_BY_AN_OLDER_KIT))
def test_a_run_named_as_executed_by_an_older_kit_cannot_be_refreshed(name):
    """The reason given above, checked: today's stage 01 makes other pair files than the run recorded."""
    shutil.copytree(REPO_ROOT / "results" / name, results.RESULTS_DIR / name)
    with pytest.raises(RunError, match="other than it recorded"):
        stages.data(Run.open(results.RESULTS_DIR / name), resume=True)


def test_refresh_executes_a_finished_runs_notebooks_again_and_makes_nothing():
    """A finished run's notebook executed again from its records (a notebook changed since it ran):
    no stage is made again, the stage-01 files come back as recorded, and the run verifies."""
    run_chain("smoke", "quiet", only=["01_data_pairing"])
    copy = results.RESULTS_DIR / "quiet"
    before = json.loads((copy / "manifest.json").read_text())
    shutil.rmtree(copy / "pairs")  # as a committed run leaves them out
    with pytest.raises(ChainError, match="pass one of them"):
        run_chain("smoke", "quiet", refresh=True, force=True)
    with pytest.raises(ChainError, match="--refresh 03_par_training: not finished"):
        run_chain("smoke", "quiet", only=["03_par_training"], refresh=True)
    run_chain("cpu", "quiet", only=["01_data_pairing"], refresh=True)  # not the run's profile: a refresh shows the recorded one
    after = json.loads((copy / "manifest.json").read_text())
    assert after["stages"] == before["stages"] and after["config_fingerprint"] == before["config_fingerprint"]
    assert after["notebooks"]["01_data_pairing"]["finished"] > before["notebooks"]["01_data_pairing"]["finished"]
    assert run_noise(copy) == {"01_data_pairing.ipynb": Noise()}
    cells = json.loads((copy / "notebooks" / "01_data_pairing.ipynb").read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'profile = "smoke"' in "".join(injected["source"])
    report = verify_run(copy)
    assert report.ok, report.summary()


def test_a_resumed_preview_is_read_back_not_judged_again(monkeypatch):
    """Stage 02 on --resume (and so on --refresh): the recorded judgments and metrics, the prompt
    rendered again by the tokenizer alone; no judge is built and the stage record is unchanged."""
    settings = {"judge.engine": "hf", "judge.preview_pairs": 1, "judge.preview": {"n": 1, "max_new_tokens": 8}}
    run = Run.create("preview", load_config("smoke", settings))
    stages.data(run)
    made = stages.preview(run)
    before = run.manifest()["stages"]["preview"]

    def no_judge(*args, **kwargs):
        raise AssertionError("a resumed preview built a judge")

    monkeypatch.setattr(stages, "build_judge", no_judge)
    preview = stages.preview(run, resume=True)
    assert run.manifest()["stages"]["preview"] == before
    assert preview.judgments == made.judgments == read_judgments(run.layout.preview_judgments)
    assert (preview.summary, preview.criteria, preview.prompt) == (made.summary, made.criteria, made.prompt)

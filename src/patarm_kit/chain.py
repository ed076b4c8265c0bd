"""The headless chain: run the numbered notebooks in order with papermill.

Each notebook gets the same parameters (profile, run directory, data directory, overrides),
so every stage reads one configuration. Executed notebooks are written into the run
directory, never into `notebooks/`. The chain stops at the first failing notebook and says
which notebook and which cell failed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import REPO_ROOT, RunConfig, load_config
from .results import Run, now

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"  # the kernel of the interpreter that runs the chain (the kit's venv)


class ChainError(RuntimeError):
    """A notebook of the chain failed; the message names the notebook and the cell."""


def notebook_path(name: str) -> Path:
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.is_file():
        raise ChainError(f"notebook {name} is not in {NOTEBOOK_DIR}")
    return path


def start_notebook(
    profile: str, run_dir: str, data_dir: str | None, overrides: dict[str, Any], stage: str
) -> tuple[RunConfig, Run]:
    """What every notebook does first: resolve the config and open (or create) its run.

    From the chain, `run_dir` is the chain's run and its manifest must hold the same
    config. Run by hand with an empty `run_dir`, the notebook uses results/interactive-<profile>.
    """
    overrides = dict(overrides)
    if data_dir:
        overrides["data.data_dir"] = data_dir
    config = load_config(profile, overrides)
    if run_dir:
        run = Run.open(run_dir)
        recorded = run.manifest()["config_fingerprint"]
        if recorded != config.fingerprint():
            raise ChainError(f"{run_dir}: the run was made with another config; pass the same profile and overrides")
    else:
        run = Run.create(f"interactive-{config.profile}", config, resume=True)
    run.update("stages", stage, {"status": "running", "started": now()})
    return config, run


def finish_notebook(run: Run, stage: str, **facts: Any) -> None:
    """Mark a stage done in the manifest, with whatever facts the stage wants recorded."""
    entry = run.manifest()["stages"].get(stage, {})
    run.update("stages", stage, {**entry, **facts, "status": "done", "finished": now()})


def select_notebooks(config: RunConfig, only: list[str] | None, start_from: str | None) -> list[str]:
    chain = list(config.notebooks)
    if only:
        unknown = [n for n in only if n not in chain]
        if unknown:
            raise ChainError(f"--only {unknown[0]}: not in this profile's chain ({', '.join(chain)})")
        return [n for n in chain if n in only]
    if start_from:
        if start_from not in chain:
            raise ChainError(f"--from {start_from}: not in this profile's chain ({', '.join(chain)})")
        return chain[chain.index(start_from):]
    return chain


def run_chain(
    profile: str,
    run_name: str,
    overrides: dict[str, Any] | None = None,
    data_dir: str | None = None,
    only: list[str] | None = None,
    start_from: str | None = None,
    resume: bool = False,
) -> Run:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    overrides = dict(overrides or {})
    config = load_config(profile, {**overrides, **({"data.data_dir": data_dir} if data_dir else {})})
    names = select_notebooks(config, only, start_from)
    run = Run.create(run_name, config, resume=resume or bool(only or start_from))
    for name in names:
        source = notebook_path(name)
        output = run.path("notebooks", f"{name}.ipynb")
        print(f"[chain] {name} -> {output}", flush=True)
        started = time.monotonic()
        try:
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters={"profile": profile, "run_dir": str(run.dir), "data_dir": data_dir, "overrides": overrides},
                kernel_name=KERNEL_NAME,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as err:
            run.update("stages", name, {"status": "failed", "cell": err.exec_count, "error": f"{err.ename}: {err.evalue}"})
            raise ChainError(
                f"notebook {name} failed at cell {err.exec_count} ({err.ename}: {err.evalue}); "
                f"the executed notebook is {output}"
            ) from None
        print(f"[chain] {name} done in {time.monotonic() - started:.0f} s", flush=True)
    run.finish()
    return run

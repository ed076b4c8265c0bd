"""Run directories and provenance: every result records what produced it.

A run lives in `results/<run-name>/`. Its `manifest.json` holds the profile, the resolved
config, the sha256 of every data file read, package versions, the git commit, times and
machine facts. Files are written atomically (temp file + rename), so a crash never leaves a
half-written result, and an existing run is never silently overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import REPO_ROOT, RunConfig

# Tests point PATARM_RESULTS_DIR at a temporary folder so they never touch results/.
RESULTS_DIR = Path(os.environ.get("PATARM_RESULTS_DIR") or REPO_ROOT / "results")
TRACKED_PACKAGES = (
    "patarm-kit", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
    "gguf", "papermill", "nbval", "numpy", "pandas", "matplotlib", "deepspeed", "vllm",
)


class RunExistsError(FileExistsError):
    """The run directory holds another run; pick a new name or pass resume/overwrite."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The commit the code ran at, and whether the work tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
        facts["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return facts


def within_run(path: str | Path, run_dir: str | Path) -> str:
    """A path as run files record it: `<run>/...` inside the run folder, unchanged elsewhere,
    so the files do not depend on where the run folder lives (moved, committed, a second run)."""
    try:
        inside = Path(path).resolve().relative_to(Path(run_dir).resolve())
    except ValueError:
        return str(path)
    return f"<run>/{inside.as_posix()}"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Run:
    """A run directory and its manifest. Stages add sections; every update is an atomic write."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @classmethod
    def create(cls, name: str, config: RunConfig, results_dir: Path | None = None, resume: bool = False) -> "Run":
        """Start a run; an existing run of that name is reused only when `resume` is set."""
        run = cls(Path(results_dir or RESULTS_DIR) / name)
        if run.manifest_path.exists():
            if not resume:
                raise RunExistsError(
                    f"{run.dir} already holds a run; choose another --run-name or pass --resume to continue it"
                )
            return run
        write_json(
            run.manifest_path,
            {
                "run_name": name,
                "profile": config.profile,
                "config": config.to_dict(),
                "config_fingerprint": config.fingerprint(),
                "packages": package_versions(),
                "git": git_commit(),
                "machine": machine_facts(),
                "started": now(),
                "finished": None,
                "data": {},
                "stages": {},
            },
        )
        return run

    @classmethod
    def open(cls, directory: Path | str) -> "Run":
        run = cls(Path(directory))
        if not run.manifest_path.exists():
            raise FileNotFoundError(f"{run.dir}: no manifest.json (not a run directory)")
        return run

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path)

    def config(self) -> RunConfig:
        from .config import _build

        return _build(RunConfig, self.manifest()["config"], "")

    def update(self, section: str, key: str, value: Any) -> None:
        """Set manifest[section][key] = value (e.g. the data hashes of a source, a stage's status)."""
        manifest = self.manifest()
        manifest.setdefault(section, {})[key] = value
        manifest["updated"] = now()
        write_json(self.manifest_path, manifest)

    def finish(self) -> None:
        manifest = self.manifest()
        manifest["finished"] = now()
        write_json(self.manifest_path, manifest)

    def path(self, *parts: str) -> Path:
        target = self.dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

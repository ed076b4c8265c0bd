"""Run directories and provenance: every result records what produced it.

A run lives in `results/<run-name>/`. Its `manifest.json` holds the profile, the resolved
config, the sha256 of every data file read, package versions, the git commit, times and
machine facts. Files are written atomically (temp file + rename), so a crash never leaves a
half-written result, and an existing run is never silently overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patarm_kit.config.build import build_section
from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.schema import RunConfig
from patarm_kit.runs.env import git_commit, machine_facts, now, package_versions
from patarm_kit.runs.files import RunError, read_json, sha256_of, write_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.notebooks import current_name

# Tests point PATARM_RESULTS_DIR at a temporary folder so they never touch results/.
RESULTS_DIR = Path(os.environ.get("PATARM_RESULTS_DIR") or REPO_ROOT / "results")


class RunExistsError(FileExistsError):
    """The run directory holds another run; pick a new name or pass resume/overwrite."""


class OutputExistsError(FileExistsError):
    """A stage would overwrite a finished result; it refuses unless asked with --force."""


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
_SCRATCH = ".rebuilt-"  # restore_outputs builds a stage again in <run>/.rebuilt-*


def validate_run_name(name: str) -> str:
    """A run name is one folder name inside the results folder: no separators, no `..`, not empty."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or ".." in name:
        raise RunError(f"run name {name!r}: use letters, digits and . _ + = - (not starting with . or -), "
                       "no path separators and no '..'")
    return name


class Run:
    """A run directory and its manifest. Stages add sections; every update is an atomic write."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.layout = RunLayout(self.dir)

    @property
    def manifest_path(self) -> Path:
        return self.layout.manifest

    @classmethod
    def create(cls, name: str, config: RunConfig, results_dir: Path | None = None, resume: bool = False,
               must_exist: bool = False) -> "Run":
        """Start a run; an existing run of that name is reused only when `resume` is set.

        `must_exist` (the CLI's --resume) refuses to create a run that is not there: a typo in
        the name would otherwise start a new run silently.
        """
        run = cls(run_folder(name, results_dir))
        if run.manifest_path.exists():
            if not resume:
                raise RunExistsError(
                    f"{run.dir} already holds a run; choose another --run-name or pass --resume to continue it"
                )
            cls.open(run.dir).check_config(config)
            for stale in run.dir.glob(".manifest.json.*.tmp"):  # left by a process killed mid-write
                stale.unlink()
            return run
        if must_exist:
            raise RunError(f"{run.dir}: no run to resume (no manifest.json); drop --resume to start it")
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
        if not run.manifest_path.is_file():
            raise RunError(f"{run.dir}: no manifest.json (not a run directory)")
        run.manifest()  # an unreadable manifest is reported here, before anything runs
        return run

    def manifest(self) -> dict[str, Any]:
        try:
            manifest = read_json(self.manifest_path)
        except (OSError, RunError) as err:
            raise RunError(f"{self.manifest_path}: unreadable manifest ({str(err).removeprefix(f'{self.manifest_path}: ')}); "
                           "the run folder is damaged") from None
        missing = [k for k in ("config", "config_fingerprint", "stages") if k not in manifest]
        if not isinstance(manifest, dict) or missing:
            raise RunError(f"{self.manifest_path}: not a kit manifest (missing {', '.join(missing) or 'a mapping'})")
        return manifest

    def config(self) -> RunConfig:
        """The config the run was made with, as recorded: notebooks and stages read this one."""

        return build_section(RunConfig, self.manifest()["config"], "")

    def check_config(self, config: RunConfig) -> None:
        """Refuse to work on this run with another config (checked before anything runs or is written)."""
        own = self.config()
        renamed = dataclasses.replace(own, notebooks=[current_name(n) for n in own.notebooks])  # made before the renumbering
        if config.fingerprint() not in (self.manifest()["config_fingerprint"], renamed.fingerprint()):
            ours, theirs = config.to_dict(), self.manifest()["config"]
            changed = sorted(_changed_keys(ours, theirs))
            raise RunError(f"{self.dir}: the run was made with another config (differs in {', '.join(changed[:5]) or 'its fingerprint'}); "
                           "use the run's own settings or start a new run")

    # ------------------------------------------------------------ stage records

    def check_stage(self, name: str, config: RunConfig, outputs: Iterable[Path], force: bool = False,
                    resume: bool = False) -> list[Path]:
        """What `stage` checks before it runs (config, existing outputs); stages call it before
        they read their inputs too, so a refusal comes first and bad input leaves no record."""
        self.check_config(config)
        existing = [p for p in map(Path, outputs) if p.exists() and not (p.is_dir() and not any(p.iterdir()))]
        if existing and not (force or resume):
            raise OutputExistsError(f"{existing[0]} already exists (stage {name} of run {self.dir.name}); "
                                    "pass --force to replace it, or use a new run")
        return existing

    @contextlib.contextmanager
    def stage(self, name: str, config: RunConfig, inputs: Iterable[Path] = (), outputs: Iterable[Path] = (),
              force: bool = False, resume: bool = False) -> Iterator["StageRecord"]:
        """Run a library stage and record it in the manifest (inputs' and outputs' sha256, config, status).

        Before anything runs: the config must be the run's, every declared input must be there (a
        file, or a folder with files), and no declared output may exist unless `force` (then the old
        outputs are removed first, so stale files never mix with new ones) or `resume` (the stage
        continues its own partial outputs). With several processes every one checks, and the main
        process alone writes the record.
        """
        inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
        existing = self.check_stage(name, config, outputs, force, resume)
        missing = next((p for p in inputs if not (p.is_file() or p.is_dir() and any(p.iterdir()))), None)
        if missing is not None:  # before the record and before any model loads: the run is left as it was
            raise RunError(f"stage {name} of run {self.dir.name}: its input {self.layout.key(missing)} is not there; "
                           "make it first (the chain makes a run's stages in order: patarm-kit run ... --resume)")
        if os.environ.get("RANK", "0") != "0":  # under `accelerate launch` only the main process records and removes
            yield StageRecord(name, {})
            return
        if force and not resume:
            for path in existing:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        record = StageRecord(name, {self.layout.key(p): sha256_of(p) for p in _files(inputs)})
        self.update("stages", name, {"status": "running", "started": now(), "config_fingerprint": config.fingerprint(),
                                     "inputs": record.inputs})
        try:
            yield record
        except BaseException as err:
            self.update("stages", name, {**self.manifest()["stages"][name], "status": "failed", "finished": now(),
                                         "error": f"{type(err).__name__}: {err}"[:500]})
            raise
        produced = [*outputs, *record.extra_outputs]
        self.update("stages", name, {
            **self.manifest()["stages"][name], "status": "done", "finished": now(), "facts": record.facts,
            "outputs": {self.layout.key(p): sha256_of(p) for p in _files(produced)},
        })

    def mark_interrupted(self) -> list[str]:
        """Records still "running" when a writer takes the run's lock were left by a process that was
        killed (no other writer can be running): they become "interrupted", so no reader takes a dead
        stage for a live one. Returns what was marked, as section.name."""
        manifest, marked = self.manifest(), []
        for section in ("stages", "notebooks", "training"):
            for name, entry in manifest.get(section, {}).items():
                if isinstance(entry, dict) and entry.get("status") == "running":
                    entry.update(status="interrupted", interrupted=now())
                    marked.append(f"{section}.{name}")
        if marked:
            write_json(self.manifest_path, manifest)
        return marked

    def stage_done(self, name: str) -> bool:
        """Whether the manifest records library stage `name` as done."""
        return self.manifest()["stages"].get(name, {}).get("status") == "done"

    def restore_outputs(self, name: str, build: Callable[[Path], Iterable[Path]]) -> list[Path]:
        """A finished stage's files made again by `build` in a scratch run folder, each checked against
        the sha256 its record holds; those missing here (a committed run leaves its pair files out) are
        put in place, and the record is not touched. Refuses, changing nothing, when a file comes out
        other than recorded: the run was made by an older kit, and resuming it would mix two. Returns
        the files' paths in the run. A scratch folder a killed restore left behind is removed first."""
        recorded = self.manifest()["stages"][name].get("outputs")
        for leftover in self.dir.glob(f"{_SCRATCH}*"):
            shutil.rmtree(leftover)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=_SCRATCH) as scratch:
            built = {Path(path).relative_to(scratch).as_posix(): Path(path) for path in build(Path(scratch))}
            for relative, path in sorted(built.items()):
                if not isinstance(recorded, dict) or recorded.get(relative) != sha256_of(path):
                    raise RunError(f"{self.dir}: stage {name} makes {relative} other than it recorded (made by an "
                                   "older kit): it cannot be resumed or refreshed with this one; nothing was changed")
            for relative, path in built.items():
                if not (self.dir / relative).exists():
                    (self.dir / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, self.dir / relative)
        return [self.dir / relative for relative in built]

    def update(self, section: str, key: str, value: Any) -> None:
        """Set manifest[section][key] = value (e.g. the data hashes of a source, a stage's status)."""
        manifest = self.manifest()
        manifest.setdefault(section, {})[key] = value
        manifest["updated"] = now()
        write_json(self.manifest_path, manifest)

    def record_left_out(self, paths: Iterable[Path]) -> dict[str, str]:
        """Name deleted run files in manifest["left_out"] with why (layout.LOCAL_ONLY), so `verify`
        knows they are missing on purpose; a file no run may leave out is refused first. Returns
        the whole record."""
        reasons = {key: RunLayout.local_only_reason(key) for key in map(self.layout.key, paths)}
        refused = next((key for key, why in reasons.items() if why is None), None)
        if refused is not None:
            raise RunError(f"{self.dir}: {refused} is not a file a run may leave out (layout.LOCAL_ONLY)")
        manifest = self.manifest()
        left_out = manifest.setdefault("left_out", {})
        left_out.update(reasons)
        write_json(self.manifest_path, manifest)
        return left_out

    def finish(self) -> None:
        manifest = self.manifest()
        manifest["finished"] = now()
        write_json(self.manifest_path, manifest)


def refuse_writing_over(outputs: Iterable[Path], reads: Iterable[Path], flag: str = "--out") -> None:
    """A command never writes where it reads: an output that is a file it reads, or lies inside a
    folder it reads, is refused in one line before anything runs (callers list the files an output
    derives from too, such as the judgments file beside a metrics file)."""
    reads = [Path(r).resolve() for r in reads]
    for output in map(Path, outputs):
        target = output.resolve()
        for read in reads:
            if target == read or (read.is_dir() and target.is_relative_to(read)):
                raise RunError(f"{flag} {output}: this command reads {read}; writing there would replace its own input, "
                               "choose another path")


def refuse_writing_into_run(output: Path | str, flag: str = "--out") -> None:
    """A command outside the chain never writes into a run folder: a run's files have one writer each
    (its stages), and `verify` holds them to their recorded hashes."""
    target = Path(output).resolve()
    run_dir = next((d for d in [target, *target.parents] if RunLayout(d).manifest.is_file()), None)
    if run_dir is not None:
        raise RunError(f"{flag} {output}: inside the run {run_dir}, whose files have one writer each (its stages); "
                       "write outside it")


def run_folder(name: str, results_dir: Path | None = None) -> Path:
    """The folder a run of this name lives in (results/<name>, or under `results_dir`); the name is checked."""
    return Path(results_dir or RESULTS_DIR) / validate_run_name(name)


@dataclass
class StageRecord:
    """What a running stage adds to its manifest record: facts, and outputs found only while running."""

    name: str
    inputs: dict[str, str]
    facts: dict[str, Any] = field(default_factory=dict)
    extra_outputs: list[Path] = field(default_factory=list)


def _files(paths: Iterable[Path]) -> list[Path]:
    """Files named, and the files inside folders named (sorted); absent paths are skipped."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
    return found


def _changed_keys(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys where two config dicts differ (for the one-line mismatch error)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from _changed_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    elif a != b:
        yield prefix

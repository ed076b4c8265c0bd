"""Re-check a run from its files alone (`patarm-kit verify`), or list how two runs differ (`compare`).

Every number the kit reports is a pure function of stored judgments (`evaluate.compute_metrics`),
and every data file read is recorded in the manifest with its sha256. So a reviewer without
the model can rebuild each metric, see that no file was edited by hand, and check that their
data is the data the run read. Nothing here loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataError, resolve_data_dir, sha256_of
from .evaluate import metrics_file, paired_difference, recompute_metrics, summary_row, votes_point
from .judge import read_judgments
from .config import fingerprint_of
from .results import Run, read_json

TOLERANCE = 1e-12
BENCHMARKS_SUMMARY = Path("metrics") / "04_benchmarks.json"
_ABSENT = object()  # a key one side does not have


@dataclass(frozen=True)
class Difference:
    """One disagreement: the file it is in, the field (a dotted path) and what differs."""

    file: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.detail}"


@dataclass
class VerifyReport:
    """What `verify_run` checked, what it could not check (notes), and every difference found."""

    run_dir: Path
    differences: list[Difference] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    def summary(self) -> str:
        done = ", ".join(f"{n} {what}" for what, n in self.checked.items()) or "nothing"
        head = f"OK {self.run_dir}: checked {done}" if self.ok else f"FAILED {self.run_dir}: {len(self.differences)} differences"
        return "\n".join([head, *(f"  {d}" for d in self.differences), *(f"  note: {n}" for n in self.notes)])


# ---------------------------------------------------------------- comparing JSON values


def _absent(value: Any) -> bool:
    """A missing key, None and NaN all mean "no value" (pandas writes NaN where a row has no column)."""
    return value is _ABSENT or value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field_differences(a: Any, b: Any, path: str, tolerance: float) -> Iterator[tuple[str, Any, Any]]:
    """(field, a, b) wherever two JSON values differ: numbers beyond `tolerance`, the rest exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            yield from _field_differences(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{path}.{key}" if path else str(key), tolerance)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path} (length)", len(a), len(b)
        else:
            for index, (x, y) in enumerate(zip(a, b)):
                yield from _field_differences(x, y, f"{path}[{index}]", tolerance)
    elif _absent(a) and _absent(b):
        return
    elif _is_number(a) and _is_number(b):
        if not abs(a - b) <= tolerance:
            yield path, a, b
    elif a != b or isinstance(a, bool) != isinstance(b, bool):  # JSON true is not 1
        yield path, a, b


def value_differences(a: Any, b: Any, file: str, labels: tuple[str, str], path: str = "", tolerance: float = TOLERANCE) -> list[Difference]:
    """Every field where `a` and `b` differ, as Differences naming `file` and the field."""
    show = lambda value: "(absent)" if value is _ABSENT else repr(value)  # noqa: E731
    return [Difference(file, where, f"{labels[0]} {show(x)}, {labels[1]} {show(y)}")
            for where, x, y in _field_differences(a, b, path, tolerance)]


def _count_numbers(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_count_numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_numbers(v) for v in value)
    return int(_is_number(value))


# ---------------------------------------------------------------- verify


def _suite_metrics(run: Run, report: VerifyReport) -> dict[str, dict[str, Any]]:
    """Each eval/*.json rebuilt from its judgments and checked field by field; the rebuilt files by name."""
    recomputed = {}
    for path in sorted(run.dir.glob("eval/*.json")):
        name = str(path.relative_to(run.dir))
        try:
            stored, again = read_json(path), recompute_metrics(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            report.differences.append(Difference(name, "(file)", f"cannot be recomputed ({type(err).__name__}: {err})"))
            continue
        report.differences += value_differences({k: stored.get(k, _ABSENT) for k in again}, again, name, ("stored", "recomputed"))
        report.count("metrics files")
        report.count("numbers", _count_numbers(again))
        recomputed[path.name] = {**stored, **again}
    if not recomputed:
        report.notes.append("no eval/*.json metrics files (stage 04 not run)")
    return recomputed


def _data_root(manifest: dict[str, Any], data_dir: str | None) -> Path | None:
    """Where relative data paths point: --data-dir, else the folder the run recorded, else the default."""
    if data_dir:
        return Path(data_dir)
    recorded = [s["data_dir"] for s in manifest.get("data", {}).values() if s.get("data_dir")]
    if recorded:
        return Path(recorded[0])
    try:
        return resolve_data_dir(manifest["config"]["data"]["data_dir"])
    except DataError:
        return None


def _check_data(run: Run, recomputed: dict[str, dict[str, Any]], data_dir: str | None, report: VerifyReport) -> None:
    """Every data hash recorded (manifest data section, eval files' data_files) against the file on disk."""
    manifest = run.manifest()
    root = _data_root(manifest, data_dir)
    recorded = [("manifest.json", f"data.{source}.files.{key}", key, sha)
                for source, facts in manifest.get("data", {}).items() for key, sha in facts.get("files", {}).items()]
    recorded += [(f"eval/{name}", f"data_files.{key}", key, sha)
                 for name, metrics in recomputed.items() for key, sha in metrics.get("data_files", {}).items()]
    on_disk: dict[Path, str | None] = {}
    for file, where, key, sha in recorded:
        if key.startswith("hub:"):
            report.notes.append(f"{file}: {where}: a hub dataset, not checked offline")
            continue
        path = Path(key) if Path(key).is_absolute() or root is None else root / key
        if path not in on_disk:
            on_disk[path] = sha256_of(path) if path.is_file() else None
            report.count("data files")
        if on_disk[path] is None:
            report.differences.append(Difference(file, where, f"{path} not found (pass --data-dir?)"))
        elif on_disk[path] != sha:
            report.differences.append(Difference(file, where, f"recorded sha256 {sha}, on disk {on_disk[path]} ({path})"))
    if not recorded:
        report.notes.append("no data hashes recorded (stage 01 not run)")


def _check_benchmark_summary(run: Run, recomputed: dict[str, dict[str, Any]], report: VerifyReport) -> None:
    """metrics/04_benchmarks.json: table, paired and votes-curve rows rebuilt from the eval files."""
    path = run.dir / BENCHMARKS_SUMMARY
    if not path.is_file():
        report.notes.append(f"no {BENCHMARKS_SUMMARY} (stage 04 not run)")
        return
    name, summary, config = str(BENCHMARKS_SUMMARY), read_json(path), run.manifest()["config"]
    eval_dir = run.dir / "eval"

    def metrics_of(section: str, index: int, judge: str, bench: str) -> dict[str, Any] | None:
        """The recomputed eval file a row was made from (a missing one is a difference)."""
        file = metrics_file(eval_dir, judge, bench).name
        if file not in recomputed:
            report.differences.append(Difference(name, f"{section}[{index}]", f"eval/{file} is missing or unreadable"))
        return recomputed.get(file)

    def check(section: str, index: int, row: dict[str, Any], again: dict[str, Any]) -> None:
        report.differences += value_differences(row, again, name, ("stored", "recomputed"), f"{section}[{index}]")
        report.count(f"{section} rows")

    for index, row in enumerate(summary.get("table", [])):
        if metrics := metrics_of("table", index, row["judge"], row["bench"]):
            check("table", index, row, summary_row(metrics))
    for index, row in enumerate(summary.get("paired", [])):
        a, b = metrics_of("paired", index, row["a"], row["bench"]), metrics_of("paired", index, row["b"], row["bench"])
        if a and b:
            check("paired", index, row, paired_difference(a, b, config["eval"]["n_boot"], config["seed"]))
    curve = summary.get("votes_curve", [])
    for index, row in enumerate(curve):  # the curve rescored one file: the judge's run with the most votes
        most = max(r["votes"] for r in curve if (r["judge"], r["bench"]) == (row["judge"], row["bench"]))
        if stored := metrics_of("votes_curve", index, f"{row['judge']}-votes{most}", row["bench"]):
            judgments = read_judgments(eval_dir / stored["judgments_file"])
            check("votes_curve", index, row, votes_point(stored, judgments, row["votes"]))


def _check_config(run: Run, recomputed: dict[str, dict[str, Any]], report: VerifyReport) -> None:
    """The manifest's config matches its fingerprint, and every eval file was made with that config."""
    manifest = run.manifest()
    # Hash the config as recorded, not a RunConfig rebuilt by today's code (which may have
    # gained keys), so a newer kit can check an older run.
    recorded, actual = manifest["config_fingerprint"], fingerprint_of(manifest["config"])
    if actual != recorded:
        report.differences.append(Difference("manifest.json", "config_fingerprint", f"recorded {recorded}, config hashes to {actual}"))
    for name, metrics in recomputed.items():
        if metrics.get("config_fingerprint") != recorded:
            report.differences.append(Difference(f"eval/{name}", "config_fingerprint",
                                                 f"{metrics.get('config_fingerprint')}, the run's config is {recorded}"))


def verify_run(run_dir: Path | str, data_dir: str | None = None) -> VerifyReport:
    """Recompute every metric of a run from its stored judgments and check every recorded data hash."""
    run = Run.open(run_dir)
    report = VerifyReport(run.dir)
    recomputed = _suite_metrics(run, report)
    _check_config(run, recomputed, report)
    _check_data(run, recomputed, data_dir, report)
    _check_benchmark_summary(run, recomputed, report)
    return report


# ---------------------------------------------------------------- compare


def compare_runs(run_a: Path | str, run_b: Path | str) -> list[Difference]:
    """How two runs differ: accuracy and interval per eval file (judge x bench), and config keys."""
    a, b = Run.open(run_a), Run.open(run_b)
    labels = ("A", "B")
    differences = value_differences(a.manifest()["config"], b.manifest()["config"], "manifest.json", labels, "config")
    files_a = {p.name: p for p in a.dir.glob("eval/*.json")}
    files_b = {p.name: p for p in b.dir.glob("eval/*.json")}
    for name in sorted(files_a.keys() | files_b.keys()):
        if name not in files_a or name not in files_b:
            differences.append(Difference(f"eval/{name}", "(file)", f"only in {'A' if name in files_a else 'B'}"))
            continue
        metrics_a, metrics_b = read_json(files_a[name]), read_json(files_b[name])
        for key in ("acc", "ci95"):
            differences += value_differences(metrics_a.get(key), metrics_b.get(key), f"eval/{name}", labels, key)
    return differences

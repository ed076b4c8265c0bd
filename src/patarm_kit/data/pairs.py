"""Preference pairs: one record type, a loader per source, validation, task tags and splits.

Every source ends as `PreferencePair` records. Loaders read rows one at a time and convert
them with a small function that raises `RowProblem(field, message)` on bad input; the
driver turns that into one error line naming the file, the row and the field, or, when the
source is configured with `bad_rows: skip`, drops the row and counts the reason.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.runs.files import sha256_of, write_jsonl

DATA_DIR_ENV = "PATARM_DATA_DIR"

TASKS = ("chat", "math", "code", "safety", "instruction")  # the task types a pair may have; one rubric each


class DataError(ValueError):
    """Bad input: the message names the file, the row and the field, and says what to do."""


class RowProblem(ValueError):
    """Raised by a row converter; the loader adds the file and row number."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) response.

    `prompt` is a list of chat messages ending with a user turn. RM-Bench pairs also carry
    the three style variants of each side (0 concise, 1 detailed, 2 detailed markdown);
    `chosen` and `rejected` then hold the concise variant.
    """

    id: str
    source: str
    task: str
    prompt: tuple[dict[str, str], ...]
    chosen: str
    rejected: str
    subset: str = ""
    chosen_variants: tuple[str, ...] = ()
    rejected_variants: tuple[str, ...] = ()
    split_key: str = ""  # what the split is drawn from when not the prompt (built pairs: their base prompt)
    # Built instruction-following pairs: the instructions the prompt states, as their checker reads
    # them ({"instruction_id", "kwargs"}); the warm-up's criteria and facts name them (training/facts.py).
    instructions: tuple[dict[str, Any], ...] = ()

    @property
    def prompt_text(self) -> str:
        """The prompt as one string, for hashing and display."""
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["prompt"] = list(self.prompt)
        row["chosen_variants"] = list(self.chosen_variants)
        row["rejected_variants"] = list(self.rejected_variants)
        row["instructions"] = list(self.instructions)
        if not self.instructions:  # pair files of sources without instructions keep their layout
            del row["instructions"]
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "PreferencePair":
        return cls(
            id=row["id"],
            source=row["source"],
            task=row["task"],
            prompt=tuple(dict(m) for m in row["prompt"]),
            chosen=row["chosen"],
            rejected=row["rejected"],
            subset=row.get("subset", ""),
            chosen_variants=tuple(row.get("chosen_variants") or ()),
            rejected_variants=tuple(row.get("rejected_variants") or ()),
            split_key=row.get("split_key", ""),
            instructions=tuple(dict(i) for i in row.get("instructions") or ()),
        )


@dataclass
class SourceReport:
    """What a load read and kept: the manifest records it, the `data` command prints it."""

    source: str
    data_dir: str | None = None  # built-in sources: file keys below are relative to it
    files: dict[str, str] = field(default_factory=dict)  # file -> sha256
    missing_files: list[str] = field(default_factory=list)
    rows: int = 0
    pairs: int = 0
    duplicates: int = 0
    limited_to: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)
    built_with: dict[str, Any] = field(default_factory=dict)  # built sources: what made and checked the pairs
    decontaminated: dict[str, Any] = field(default_factory=dict)  # stage 01: pairs removed for sharing a held-out prompt

    def local_paths(self) -> list[Path]:
        """The local files read, as paths (a hub dataset is none): so a command can refuse to write over them."""
        base = Path(self.data_dir) if self.data_dir else Path.cwd()
        return [base / key for key in self.files if not key.startswith("hub:")]

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_examples) < 5:
            self.skipped_examples.append(where)


# ---------------------------------------------------------------- locating the data


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: explicit argument, else $PATARM_DATA_DIR, else ../shared/data."""
    candidates = [
        ("the data_dir parameter", explicit),
        (f"${DATA_DIR_ENV}", os.environ.get(DATA_DIR_ENV)),
    ]
    for origin, value in candidates:
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise DataError(f"data directory {path} (from {origin}) does not exist")
            return path.resolve()
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default.resolve()
    raise DataError(
        "no data directory: pass data_dir, or set PATARM_DATA_DIR to a folder laid out as "
        "described in data/README.md, or use hub dataset ids (hub:allenai/reward-bench, ...)"
    )


def read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON array or a (gzipped) JSON-lines file, numbered from 1.

    Every way a file can fail to read (missing, a folder, no permission, not UTF-8, not JSON,
    a truncated or corrupt .gz) is one DataError naming the file, and the row where known.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    is_lines = ".jsonl" in path.suffixes
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            if not is_lines:
                data = json.load(handle)
                if not isinstance(data, list):
                    raise DataError(f"{path}: expected a JSON array of rows")
                yield from enumerate(data, start=1)
                return
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}: row {number}: not valid JSON ({err.msg})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON at line {err.lineno} ({err.msg})") from None
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as err:
        where = f" row {number + 1}:" if number else ""
        reason = getattr(err, "strerror", None) or str(err)
        truncated = " (a truncated file?)" if isinstance(err, EOFError) else ""
        raise DataError(f"{path}:{where} cannot be read ({reason}){truncated}") from None


# ---------------------------------------------------------------- field checks


def text_field(row: Any, name: str) -> str:
    if not isinstance(row, dict):
        raise RowProblem("(row)", f"expected an object, got {type(row).__name__}")
    if name not in row:
        raise RowProblem(name, "missing field")
    value = row[name]
    if not isinstance(value, str):
        raise RowProblem(name, f"expected text, got {type(value).__name__}")
    if not value.strip():
        raise RowProblem(name, "empty text")
    return value


def check_task(task: Any) -> str:
    if task not in TASKS:
        raise RowProblem("task", f"unknown task {task!r} (known: {', '.join(TASKS)})")
    return task


def responses_field(row: dict[str, Any], name: str, count: int | None = None, what: str = "") -> tuple[str, ...]:
    """A field holding a list of non-empty responses (exactly `count` of them when given)."""
    value = row.get(name)
    if not isinstance(value, list) or not value or (count is not None and len(value) != count):
        raise RowProblem(name, f"expected a list of {count or 'one or more'} responses{what}")
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise RowProblem(f"{name}[{i}]", "empty or non-text response")
    return tuple(value)


def check_distinct(chosen: str, rejected: str, name: str = "rejected") -> None:
    if chosen.strip() == rejected.strip():
        raise RowProblem(name, "chosen and rejected responses are identical")


def user_prompt(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def messages_field(value: Any, name: str) -> tuple[dict[str, str], ...]:
    """A prompt given as text (one user turn) or as a non-empty list of {role, content} messages."""
    if isinstance(value, str) and value.strip():
        return user_prompt(value)
    if isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return tuple({"role": m["role"], "content": m["content"]} for m in value)
    raise RowProblem(name, "expected text or a non-empty list of {role, content} messages")


def row_id(row: dict[str, Any], default: int | None = None) -> str:
    """A row's own id (text or a number), else `default` (its row number); null or empty ids are
    refused, since evaluation keys its outcomes by pair id."""
    if "id" not in row:
        if default is None:
            raise RowProblem("id", "missing field")
        return str(default)
    value = row["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise RowProblem("id", f"expected a non-empty text or number, got {value!r}")
    return str(value)


def draw_order(key: str) -> str:
    """The order of a deterministic, well-mixed draw: by the sha256 of each item's key."""
    return hashlib.sha256(key.encode()).hexdigest()


def subsample(pairs: list[PreferencePair], limit: int) -> list[PreferencePair]:
    """A deterministic, well-mixed subset: the `limit` pairs whose id hashes lowest."""
    return sorted(pairs, key=lambda p: draw_order(p.id))[:limit]


def _check_unique_id(pair: PreferencePair, number: int, first_row: dict[str, tuple[int, tuple[str, str, str]]]) -> None:
    """A repeated pair is a duplicate (counted and dropped later); another pair under a used id is
    an error: evaluation keys outcomes by id, so 20 pairs sharing an id would be scored as one."""
    content = (pair.prompt_text, pair.chosen, pair.rejected)
    row, first_content = first_row.setdefault(pair.id, (number, content))
    if first_content != content:
        raise RowProblem("id", f"id {pair.id!r} is already used by row {row} for another pair; ids must be unique")


# ---------------------------------------------------------------- the load driver


def convert_rows(
    rows: Iterable[tuple[int, Any]],
    where: str,
    convert: Callable[[Any, int], PreferencePair | list[PreferencePair]],
    report: SourceReport,
    bad_rows: str,
    hint: str = "fix the row, or set bad_rows: skip for this source",
) -> list[PreferencePair]:
    pairs: list[PreferencePair] = []
    first_row: dict[str, tuple[int, tuple[str, str, str]]] = {}
    for number, row in rows:
        report.rows += 1
        try:
            converted = convert(row, number)
            converted = converted if isinstance(converted, list) else [converted]
            for pair in converted:
                _check_unique_id(pair, number, first_row)
        except RowProblem as problem:
            message = f"{where}: row {number}: field {problem.field}: {problem}"
            if bad_rows != "skip":
                raise DataError(f"{message} ({hint})") from None
            report.skip(f"{problem.field}: {problem}", message)
            continue
        pairs.extend(converted)
    return pairs


def save_pairs(pairs: Iterable[PreferencePair], path: Path) -> None:
    """Write pairs as JSON lines (readable by `datasets.load_dataset("json", ...)`), atomically."""

    write_jsonl(path, (p.to_row() for p in pairs))


def stored_pair(row: Any, number: int) -> PreferencePair:
    """A row as `save_pairs` wrote it, checked field by field: pair files can be edited by hand."""
    for name in ("id", "source", "chosen", "rejected"):
        text_field(row, name)
    check_task(row.get("task"))
    if not isinstance(row.get("prompt"), list):
        raise RowProblem("prompt", "expected a non-empty list of {role, content} messages")
    messages_field(row["prompt"], "prompt")
    instructions = row.get("instructions", [])
    if not isinstance(instructions, list) or not all(
            isinstance(i, dict) and isinstance(i.get("instruction_id"), str) and isinstance(i.get("kwargs"), dict)
            for i in instructions):
        raise RowProblem("instructions", "expected a list of {instruction_id, kwargs} objects")
    return PreferencePair.from_row(row)


def read_pairs(path: Path) -> list[PreferencePair]:
    """The pairs of a pair file (pairs/<split>.jsonl); a bad row, a repeated id or no pairs at all is a DataError."""
    path = Path(path)
    report = SourceReport(source=str(path))
    pairs = convert_rows(read_json_rows(path), str(path), stored_pair, report, "error",
                          hint="the data stage writes these files; was it changed by hand?")
    if not pairs:
        raise DataError(f"{path}: no pairs in the file (a split can be empty when data.split_fractions gives it little or nothing)")
    return pairs


def local_files(report: SourceReport, folder: Path, names: Iterable[str],
                optional: tuple[str, ...] = ()) -> Iterator[tuple[str, Path]]:
    """The files of a built-in source that exist; the missing ones are recorded, not fatal, except
    those ending in `optional` (a data folder may hold a source's test files only)."""
    for name in names:
        path = folder / name
        if path.is_file():
            report.files[str(path.relative_to(report.data_dir or "/"))] = sha256_of(path)
            yield name, path
        elif not (optional and name.endswith(optional)):
            report.missing_files.append(str(path))


def pairs_from_files(report: SourceReport, folder: Path, names: Iterable[str], bad_rows: str,
                     convert: Callable[[Any, int, str], PreferencePair | list[PreferencePair]],
                     optional: tuple[str, ...] = ()) -> list[PreferencePair]:
    """Every row of a built-in source's files that exist, as `convert(row, number, file_name)` makes it."""
    pairs: list[PreferencePair] = []
    for name, path in local_files(report, folder, names, optional):
        pairs += convert_rows(read_json_rows(path), str(path), lambda row, number: convert(row, number, name), report, bad_rows)
    return pairs


def dedupe(pairs: list[PreferencePair], report: SourceReport) -> list[PreferencePair]:
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for pair in pairs:  # all responses count: RewardBench 2's Ties has prompts that differ in their later ones only
        key = (pair.prompt_text, pair.chosen, pair.rejected, pair.chosen_variants, pair.rejected_variants)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept


def require_files(report: SourceReport, name: str, data_dir: Path) -> None:
    """A built-in source with none of its files is an error that says where they belong."""
    if not report.files:
        raise DataError(f"source {name}: no files found under {data_dir} (see data/README.md for the layout)")

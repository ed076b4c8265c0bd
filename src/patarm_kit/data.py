"""Preference pairs: one record type, a loader per source, validation, task tags and splits.

Every source ends as `PreferencePair` records. Loaders read rows one at a time and convert
them with a small function that raises `RowProblem(field, message)` on bad input; the
driver turns that into one error line naming the file, the row and the field, or, when the
source is configured with `bad_rows: skip`, drops the row and counts the reason.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import REPO_ROOT, DataConfig, SourceConfig
from .rubrics import TASKS

DATA_DIR_ENV = "PATARM_DATA_DIR"


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
    # them ({"instruction_id", "kwargs"}); the warm-up's criteria and facts name them (facts.py).
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json_rows(path: Path) -> Iterator[tuple[int, Any]]:
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


def _text(row: Any, name: str) -> str:
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


def _check_task(task: Any) -> str:
    if task not in TASKS:
        raise RowProblem("task", f"unknown task {task!r} (known: {', '.join(TASKS)})")
    return task


def _distinct(chosen: str, rejected: str, name: str = "rejected") -> None:
    if chosen.strip() == rejected.strip():
        raise RowProblem(name, "chosen and rejected responses are identical")


def _user_prompt(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def _messages(value: Any, name: str) -> tuple[dict[str, str], ...]:
    """A prompt given as text (one user turn) or as a non-empty list of {role, content} messages."""
    if isinstance(value, str) and value.strip():
        return _user_prompt(value)
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


# ---------------------------------------------------------------- converters per source

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def hh_dialogue(text: str, field_name: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into chat messages."""
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 5:
        raise RowProblem(field_name, "not a '\\n\\nHuman: ... \\n\\nAssistant: ...' dialogue")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()} for who, said in zip(parts[1::2], parts[2::2])]


def hh_pair(row: Any, subset: str, number: int) -> PreferencePair:
    chosen_dialogue = hh_dialogue(_text(row, "chosen"), "chosen")
    rejected_dialogue = hh_dialogue(_text(row, "rejected"), "rejected")
    for name, dialogue in (("chosen", chosen_dialogue), ("rejected", rejected_dialogue)):
        if dialogue[-1]["role"] != "assistant":
            raise RowProblem(name, "the dialogue does not end with an assistant turn")
        if not dialogue[-1]["content"]:
            raise RowProblem(name, "empty final assistant response")
    if chosen_dialogue[:-1] != rejected_dialogue[:-1]:
        raise RowProblem("rejected", "chosen and rejected dialogues differ before the final turn")
    chosen, rejected = chosen_dialogue[-1]["content"], rejected_dialogue[-1]["content"]
    _distinct(chosen, rejected)
    return PreferencePair(
        id=f"hh-rlhf/{subset}/{number}",
        source="hh-rlhf",
        task="safety" if subset.startswith("harmless") else "chat",
        prompt=tuple(chosen_dialogue[:-1]),
        chosen=chosen,
        rejected=rejected,
        subset=subset,
    )


FINEGRAINED_ORDER = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


def finegrained_pairs(row: Any, subset: str, number: int, report: SourceReport) -> list[PreferencePair]:
    """Each strict preference among the 4 predictions becomes a pair; ties are counted, not kept."""
    question = _text(row, "question")
    predictions = {k: _text(row, f"prediction {k}") for k in range(1, 5)}
    preference = row.get("preference")
    if not isinstance(preference, list) or len(preference) != 6:
        raise RowProblem("preference", "expected a list of 6 comparisons (1v2, 1v3, 1v4, 2v3, 2v4, 3v4)")
    pairs = []
    for (a, b), value in zip(FINEGRAINED_ORDER, preference):
        if value not in (0, 1, 2) or isinstance(value, bool):
            raise RowProblem("preference", f"comparison {a}v{b} is {value!r}; expected 0, 1 or 2")
        if value == 0:
            report.skip("tie (no preference)", f"row {number} {a}v{b}")
            continue
        chosen, rejected = (predictions[a], predictions[b]) if value == 1 else (predictions[b], predictions[a])
        _distinct(chosen, rejected, f"prediction {b}")
        pairs.append(
            PreferencePair(
                id=f"finegrained-qa/{subset}/{number}/{a}v{b}",
                source="finegrained-qa",
                task="chat",
                prompt=_user_prompt(question),
                chosen=chosen,
                rejected=rejected,
                subset=subset,
            )
        )
    return pairs


def _last_content(value: Any, name: str) -> str:
    """A response given as text or as a chat transcript (take the final assistant message)."""
    if isinstance(value, list):
        if not value or not isinstance(value[-1], dict) or "content" not in value[-1]:
            raise RowProblem(name, "expected text or a list of {role, content} messages")
        value = value[-1]["content"]
    if not isinstance(value, str) or not value.strip():
        raise RowProblem(name, "empty or non-text response")
    return value


def generic_pair(row: Any, source: str, number: int, default_task: str = "chat") -> PreferencePair:
    """A row with prompt/chosen/rejected columns (text or chat messages); optional id, task, subset."""
    if not isinstance(row, dict):
        raise RowProblem("(row)", f"expected an object, got {type(row).__name__}")
    for name in ("prompt", "chosen", "rejected"):
        if name not in row:
            raise RowProblem(name, "missing field")
    prompt = _messages(row["prompt"], "prompt")
    chosen, rejected = _last_content(row["chosen"], "chosen"), _last_content(row["rejected"], "rejected")
    _distinct(chosen, rejected)
    task = _check_task(row.get("task", default_task))
    return PreferencePair(
        id=f"{source}/{row_id(row, number)}",
        source=source,
        task=task,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        subset=str(row.get("subset", "")),
    )


# ---------------------------------------------------------------- the load driver


def _convert_rows(
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


def _check_unique_id(pair: PreferencePair, number: int, first_row: dict[str, tuple[int, tuple[str, str, str]]]) -> None:
    """A repeated pair is a duplicate (counted and dropped later); another pair under a used id is
    an error: evaluation keys outcomes by id, so 20 pairs sharing an id would be scored as one."""
    content = (pair.prompt_text, pair.chosen, pair.rejected)
    row, first_content = first_row.setdefault(pair.id, (number, content))
    if first_content != content:
        raise RowProblem("id", f"id {pair.id!r} is already used by row {row} for another pair; ids must be unique")


def _local_files(report: SourceReport, folder: Path, names: Iterable[str]) -> Iterator[tuple[str, Path]]:
    """The files of a built-in source that exist; the missing ones are recorded, not fatal."""
    for name in names:
        path = folder / name
        if path.is_file():
            report.files[str(path.relative_to(report.data_dir or "/"))] = sha256_of(path)
            yield name, path
        else:
            report.missing_files.append(str(path))


def _load_builtin(name: str, data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    pairs: list[PreferencePair] = []
    if name == "rm-bench":
        from .bench.rmbench import DATA_FILES, rmbench_pair  # a benchmark's rows are its module's business

        for file_name, path in _local_files(report, data_dir / "rm-bench", DATA_FILES):
            domain = file_name.removesuffix("_filtered.json")
            pairs += _convert_rows(_read_json_rows(path), str(path), lambda r, n: rmbench_pair(r, domain), report, bad_rows)
    elif name == "llmbar":
        from .bench.rewardbench import LLMBAR_FILES_TO_SUBSETS, llmbar_pair

        for file_name, path in _local_files(report, data_dir / "llmbar", [f"{s}.json" for s in LLMBAR_FILES_TO_SUBSETS]):
            subset = file_name.removesuffix(".json")
            pairs += _convert_rows(_read_json_rows(path), str(path), lambda r, n: llmbar_pair(r, subset, n), report, bad_rows)
    elif name == "hh-rlhf":
        subsets = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
        files = [f"{s}_{split}.jsonl.gz" for s in subsets for split in ("train", "test")]
        for file_name, path in _local_files(report, data_dir / "hh-rlhf", files):
            subset = file_name.removesuffix(".jsonl.gz")
            pairs += _convert_rows(_read_json_rows(path), str(path), lambda r, n: hh_pair(r, subset, n), report, bad_rows)
        report.missing_files = [f for f in report.missing_files if not f.endswith("_train.jsonl.gz")]
    elif name == "finegrained-qa":
        folder = data_dir / "finegrained-rlhf-qa-feedback"
        for file_name, path in _local_files(report, folder, ["train_feedback.json", "dev_feedback.json"]):
            subset = file_name.removesuffix("_feedback.json")
            pairs += _convert_rows(
                _read_json_rows(path), str(path), lambda r, n: finegrained_pairs(r, subset, n, report), report, bad_rows
            )
        report.missing_files = [f for f in report.missing_files if not f.endswith("train_feedback.json")]
    else:  # pragma: no cover - guarded by BUILTIN_SOURCES
        raise AssertionError(name)
    if not report.files:
        raise DataError(f"source {name}: no files found under {data_dir} (see data/README.md for the layout)")
    return pairs


BUILTIN_SOURCES = ("rm-bench", "llmbar", "hh-rlhf", "finegrained-qa")
# Sources the kit builds from the built-in ones (ifpairs.py): the trained instruction types, and
# the held-out types on test-split prompts only (the transfer test).
BUILT_SOURCES = ("verifiable-if", "verifiable-if-transfer")


def verifiable_builds(name: str, data_dir: Path, report: SourceReport,
                      fractions: dict[str, float]) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """(split key, base prompt's source id, ifpairs.BuiltPair) for every checker-verified instruction
    of a built source, and the base questions they were built on."""
    from . import ifpairs

    chat = []
    for source in ("hh-rlhf", "finegrained-qa"):
        loaded = SourceReport(source=source, data_dir=report.data_dir)
        chat += [p for p in _dedupe(_load_builtin(source, data_dir, loaded, "skip"), loaded) if split_of(p, fractions) == "train"]
        report.files.update(loaded.files)
    bases = ifpairs.base_prompts(chat)
    report.rows = len(bases)
    transfer = name == "verifiable-if-transfer"
    builds = []
    for base in bases:
        key = f"{BUILT_KEY_PREFIX}{base.question}"
        if transfer and split_of_key(key, fractions) != "test":
            continue
        types, wanted = (ifpairs.HELD_OUT, 1) if transfer else (ifpairs.TRAINED, ifpairs.TYPES_PER_PROMPT)
        builds += [(key, base.source_id, built) for built in ifpairs.build_for(base, types, wanted, report.skip)]
    return builds, [b.question for b in bases]


def verifiable_pairs(name: str, data_dir: Path, report: SourceReport, fractions: dict[str, float]) -> list[PreferencePair]:
    """Instruction-following pairs labelled by IFEval's checkers, on training-split chat prompts (ifpairs.py)."""
    from . import ifcheck, ifpairs

    transfer = name == "verifiable-if-transfer"
    builds, questions = verifiable_builds(name, data_dir, report, fractions)
    pairs = [
        PreferencePair(
            id=f"{name}/{source_id}/{built.instruction_id}", source=name, task=ifpairs.TASK,
            prompt=({"role": "user", "content": built.prompt},), chosen=built.chosen, rejected=built.rejected,
            subset=built.instruction_id, split_key=key,
            instructions=({"instruction_id": built.instruction_id, "kwargs": built.kwargs},),
        )
        for key, source_id, built in builds
    ]
    ifeval, _ = load_ifeval(data_dir)
    report.built_with = {
        "checker": ifcheck.checker_record(),
        "base_prompts": f"single-turn chat prompts of the train split of hh-rlhf and finegrained-qa, "
                        f"{ifpairs.WORDS[0]}-{ifpairs.WORDS[1]}-word responses",
        "instruction_types": list(ifpairs.HELD_OUT if transfer else ifpairs.TRAINED),
        "held_out_types": list(ifpairs.HELD_OUT),
        "ifeval_prompt_overlap": ifpairs.ifeval_overlap(questions, [p.prompt for p in ifeval]),
    }
    return pairs

# Hub datasets: id -> (load_dataset kwargs, row converter). Only used by people who have a hub.
HUB_DATASETS: dict[str, dict[str, Any]] = {
    "allenai/reward-bench": {"split": "filtered"},
    "THU-KEG/RM-Bench": {"split": "train"},
    "Anthropic/hh-rlhf": {"split": "test"},
    "AIJian/PaTaRM": {"data_files": "rl_train_mix_41.7k.jsonl", "split": "train"},
    "Skywork/Skywork-Reward-Preference-80K-v0.2": {"split": "train"},
}


def _hub_converter(hub_id: str) -> Callable[[Any, int], PreferencePair]:
    """The row converter of a hub dataset: the benchmarks' own, hh-rlhf's, else generic columns."""
    from .bench import rewardbench, rmbench

    converters: dict[str, Callable[[Any, int], PreferencePair]] = {
        "allenai/reward-bench": rewardbench.hub_pair,
        "THU-KEG/RM-Bench": rmbench.hub_pair,
        "Anthropic/hh-rlhf": lambda row, number: hh_pair(row, "hub", number),
    }
    return converters.get(hub_id, lambda row, number: generic_pair(row, hub_id, number))


def _load_hub(hub_id: str, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    import datasets  # imported here: loading local files needs no Arrow

    kwargs = HUB_DATASETS.get(hub_id, {"split": "train"})
    try:
        dataset = datasets.load_dataset(hub_id, **kwargs)
    except Exception as err:  # the hub raises many kinds; one clear line is what the user needs
        raise DataError(f"hub dataset {hub_id}: cannot be loaded ({type(err).__name__}: {err})") from None
    report.files[f"hub:{hub_id}"] = getattr(dataset, "_fingerprint", "")
    rows = enumerate(dataset, start=1)
    return _convert_rows(rows, f"hub:{hub_id}", _hub_converter(hub_id), report, bad_rows)


def _load_file(path: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    report.files[str(path)] = sha256_of(path)
    if path.suffix == ".parquet":
        import datasets

        rows: Iterable[tuple[int, Any]] = enumerate(datasets.Dataset.from_parquet(str(path)), start=1)
    elif path.suffix in (".json", ".jsonl", ".gz"):
        rows = _read_json_rows(path)
    else:
        raise DataError(f"{path}: unsupported file type (use .json, .jsonl, .jsonl.gz or .parquet)")
    source = path.stem.split(".")[0]
    return _convert_rows(rows, str(path), lambda r, n: generic_pair(r, source, n), report, bad_rows)


def subsample(pairs: list[PreferencePair], limit: int) -> list[PreferencePair]:
    """A deterministic, well-mixed subset: the `limit` pairs whose id hashes lowest."""
    return sorted(pairs, key=lambda p: hashlib.sha256(p.id.encode()).hexdigest())[:limit]


def load_source(
    spec: SourceConfig | str, data_dir: str | os.PathLike | None = None, fractions: dict[str, float] | None = None
) -> tuple[list[PreferencePair], SourceReport]:
    """Load one source: a built-in name, a file path, or a hub id (`hub:owner/name` or a known id).

    `fractions` (data.split_fractions) tells built sources which prompts are training prompts.
    """
    spec = SourceConfig(name=spec) if isinstance(spec, str) else spec
    if spec.role not in ("train", "bench"):
        raise DataError(f"source {spec.name}: role must be 'train' or 'bench', not {spec.role!r}")
    if spec.bad_rows not in ("error", "skip"):
        raise DataError(f"source {spec.name}: bad_rows must be 'error' or 'skip', not {spec.bad_rows!r}")
    report = SourceReport(source=spec.name)
    name = spec.name
    hub_id = name.removeprefix("hub:")
    if name in BUILTIN_SOURCES:
        report.data_dir = str(resolve_data_dir(data_dir))
        pairs = _load_builtin(name, Path(report.data_dir), report, spec.bad_rows)
    elif name in BUILT_SOURCES:
        report.data_dir = str(resolve_data_dir(data_dir))
        pairs = verifiable_pairs(name, Path(report.data_dir), report, fractions or DataConfig().split_fractions)
    elif name.startswith("hub:") or hub_id in HUB_DATASETS:
        pairs = _load_hub(hub_id, report, spec.bad_rows)
    elif Path(name).is_file():
        pairs = _load_file(Path(name), report, spec.bad_rows)
    else:
        raise DataError(
            f"source {name!r} is not a built-in source ({', '.join(BUILTIN_SOURCES)}), "
            "an existing file, or a hub dataset id (hub:owner/name)"
        )
    pairs = _dedupe(pairs, report)
    if spec.subsets is not None:
        unknown = sorted(set(spec.subsets) - {p.subset for p in pairs})
        if unknown:
            raise DataError(f"source {name}: subsets {', '.join(unknown)} have no pairs "
                            f"(its subsets: {', '.join(sorted({p.subset for p in pairs}))})")
        pairs = [p for p in pairs if p.subset in spec.subsets]
    if spec.limit is not None and spec.limit < len(pairs):
        pairs = subsample(pairs, spec.limit)
        report.limited_to = spec.limit
    if not pairs:
        raise DataError(f"source {name}: no pairs in {', '.join(report.files)} "
                        f"({report.rows} rows read, {sum(report.skipped.values())} skipped)")
    report.pairs = len(pairs)
    return pairs, report


def _dedupe(pairs: list[PreferencePair], report: SourceReport) -> list[PreferencePair]:
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for pair in pairs:
        key = (pair.prompt_text, pair.chosen, pair.rejected)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept


# ---------------------------------------------------------------- splits and summaries


def split_of(pair: PreferencePair, fractions: dict[str, float]) -> str:
    """train/dev/test from a hash of the prompt text (or the pair's split_key), so one prompt never crosses splits."""
    return split_of_key(pair.split_key or pair.prompt_text, fractions)


def split_of_key(key: str, fractions: dict[str, float]) -> str:
    """The split a key's hash falls in, the splits laid out in sorted name order.

    Sorted, never the mapping's own order: a YAML profile, a manifest (sorted keys) and a
    default config must give every pair the same split, or a held-out pair of one reader is a
    training pair of another.
    """
    names = sorted(fractions)
    total = sum(fractions.values())
    point = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12
    cumulative = 0.0
    for name in names:
        cumulative += fractions[name] / total
        if point < cumulative:
            return name
    return names[-1]


BUILT_KEY_PREFIX = "verifiable-if/"  # a built pair's split_key: this prefix and its base prompt


def normalised(text: str) -> str:
    """Lower-cased with runs of white space made one space: how prompts are compared across sources."""
    return " ".join(text.lower().split())


def prompt_keys(pair: PreferencePair) -> frozenset[str]:
    """The prompts a pair is about, normalised: every user turn, and a built pair's base prompt
    (a built prompt is its base prompt plus an instruction, so the turn alone would not match)."""
    texts = [m["content"] for m in pair.prompt if m["role"] == "user"]
    if pair.split_key.startswith(BUILT_KEY_PREFIX):
        texts.append(pair.split_key.removeprefix(BUILT_KEY_PREFIX))
    return frozenset(normalised(t) for t in texts)


def count_pairs(pairs: Iterable[PreferencePair], fractions: dict[str, float]) -> dict[str, dict[str, int]]:
    """Counts by task, subset and split: what notebook 01 and `patarm-kit data` show."""
    counts: dict[str, collections.Counter] = {"task": collections.Counter(), "subset": collections.Counter(), "split": collections.Counter()}
    for pair in pairs:
        counts["task"][pair.task] += 1
        counts["subset"][pair.subset] += 1
        counts["split"][split_of(pair, fractions)] += 1
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


def save_pairs(pairs: Iterable[PreferencePair], path: Path) -> None:
    """Write pairs as JSON lines (readable by `datasets.load_dataset("json", ...)`), atomically."""
    from .results import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(p.to_row(), ensure_ascii=False) + "\n" for p in pairs))


def stored_pair(row: Any, number: int) -> PreferencePair:
    """A row as `save_pairs` wrote it, checked field by field: pair files can be edited by hand."""
    for name in ("id", "source", "chosen", "rejected"):
        _text(row, name)
    _check_task(row.get("task"))
    if not isinstance(row.get("prompt"), list):
        raise RowProblem("prompt", "expected a non-empty list of {role, content} messages")
    _messages(row["prompt"], "prompt")
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
    pairs = _convert_rows(_read_json_rows(path), str(path), stored_pair, report, "error",
                          hint="the data stage writes these files; was it changed by hand?")
    if not pairs:
        raise DataError(f"{path}: no pairs in the file (a split can be empty when data.split_fractions gives it little or nothing)")
    return pairs


# ---------------------------------------------------------------- IFEval prompts (downstream stage)


@dataclass(frozen=True)
class InstructionPrompt:
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


def load_ifeval(data_dir: str | os.PathLike | None = None) -> tuple[list[InstructionPrompt], SourceReport]:
    """IFEval's 541 prompts with their instruction ids and checker arguments."""
    report = SourceReport(source="ifeval", data_dir=str(resolve_data_dir(data_dir)))
    prompts = []
    for _, path in _local_files(report, Path(report.data_dir) / "ifeval", ["input_data.jsonl"]):
        for number, row in _read_json_rows(path):
            report.rows += 1
            where = f"{path}: row {number}"
            try:
                ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
                if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
                    raise RowProblem("kwargs", "instruction_id_list and kwargs must be lists of equal length")
                prompts.append(InstructionPrompt(int(row["key"]), _text(row, "prompt"), tuple(ids), tuple(kwargs)))
            except RowProblem as problem:
                raise DataError(f"{where}: field {problem.field}: {problem}") from None
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: field key: missing or not an integer") from None
    if not report.files:
        raise DataError(f"ifeval: {report.missing_files[0]} not found (see data/README.md)")
    report.pairs = len(prompts)
    return prompts, report


# ---------------------------------------------------------------- stage 01: the pairs every later stage reads


@dataclass
class LoadedSource:
    spec: SourceConfig
    pairs: list[PreferencePair]
    report: SourceReport


def load_sources(sources: Iterable[SourceConfig], data_dir: str | None = None,
                 fractions: dict[str, float] | None = None) -> list[LoadedSource]:
    """Load and validate every source first, so a bad row stops the stage before anything is written.

    Pair ids must be unique across sources too: training sources share the split files.
    `fractions` (data.split_fractions) is what built sources draw their base prompts by.
    """
    loaded = [LoadedSource(spec, *load_source(spec, data_dir, fractions)) for spec in sources]
    first_source: dict[str, int] = {}
    for index, source in enumerate(loaded):
        for pair in source.pairs:
            first = first_source.setdefault(pair.id, index)
            if first != index:
                raise DataError(f"sources {loaded[first].spec.name} and {source.spec.name} both have pair id {pair.id!r}; "
                                "ids must be unique across sources (a source listed twice?)")
    return loaded


def decontaminate(loaded: list[LoadedSource], benches: dict[str, list[PreferencePair]],
                  fractions: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Remove every training or dev pair that shares a prompt with a bench, then every dev or test
    pair that shares one with a training pair; count both per source (and per bench) in its report.

    Benchmarks reuse public prompts (RM-Bench's chat subset is HH-RLHF's), and splits go by a hash
    of one key per pair, so two pairs about one prompt (a multi-turn dialogue and its first turn, a
    built pair and its base question) could land on both sides of a split. Either would score a
    judge on what it trained on, or choose its settings by it. A test pair may share a prompt with
    a bench: both are held out (the transfer bench is built on the test split's prompts).
    """
    bench_keys = {name: frozenset().union(*(prompt_keys(p) for p in pairs)) for name, pairs in sorted(benches.items())}
    train_sources = [s for s in loaded if s.spec.role == "train"]
    for source in train_sources:
        by_bench: collections.Counter = collections.Counter()
        kept = []
        for pair in source.pairs:
            keys = prompt_keys(pair)
            hits = [] if split_of(pair, fractions) == "test" else [n for n, bench in bench_keys.items() if keys & bench]
            by_bench.update(hits)
            if not hits:
                kept.append(pair)
        source.report.decontaminated = {"bench_prompt": len(source.pairs) - len(kept), "by_bench": dict(sorted(by_bench.items()))}
        source.pairs = kept
    train_keys = frozenset().union(*(prompt_keys(p) for s in train_sources for p in s.pairs if split_of(p, fractions) == "train"))
    for source in train_sources:
        kept = [p for p in source.pairs if split_of(p, fractions) == "train" or not prompt_keys(p) & train_keys]
        source.report.decontaminated["training_prompt"] = len(source.pairs) - len(kept)
        source.report.pairs = len(kept)
        source.pairs = kept
    return {s.spec.name: s.report.decontaminated for s in train_sources}


def write_stage_pairs(loaded: list[LoadedSource], fractions: dict[str, float], out_dir: Path) -> dict[str, Path]:
    """Training sources go to pairs/{train,dev,test}.jsonl; benchmark sources to pairs/bench-<name>.jsonl."""
    by_file: dict[str, list[PreferencePair]] = {f"{split}.jsonl": [] for split in fractions}
    for source in loaded:
        if source.spec.role == "bench":
            by_file[f"bench-{Path(source.spec.name).stem.replace('/', '_')}.jsonl"] = source.pairs
        else:
            for pair in source.pairs:
                by_file[f"{split_of(pair, fractions)}.jsonl"].append(pair)
    written = {}
    for file_name, pairs in by_file.items():
        save_pairs(pairs, Path(out_dir) / file_name)
        written[file_name] = Path(out_dir) / file_name
    return written


def summary_rows(loaded: list[LoadedSource], fractions: dict[str, float]) -> list[dict[str, Any]]:
    """One row per source: rows read, pairs kept, what was dropped and why, counts by task and split."""
    rows = []
    for source in loaded:
        counts = count_pairs(source.pairs, fractions)
        rows.append(
            {
                "source": source.spec.name,
                "role": source.spec.role,
                "rows read": source.report.rows,
                "pairs": source.report.pairs,
                "duplicates": source.report.duplicates,
                "skipped": sum(source.report.skipped.values()),
                **({"removed: bench prompt": source.report.decontaminated["bench_prompt"],
                    "removed: training prompt": source.report.decontaminated["training_prompt"]}
                   if source.report.decontaminated else {}),
                **{f"task {k}": v for k, v in counts["task"].items()},
                **({f"split {k}": v for k, v in counts["split"].items()} if source.spec.role == "train" else {}),
            }
        )
    return rows

"""Loading one source by name: a built-in source (its module reads its files), a source the kit
builds, a local file or a hub dataset; duplicates dropped, subsets and limits applied, every
row accounted for in the source's report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.schema import DataConfig, SourceConfig
from patarm_kit.data.pairs import (
    DataError,
    PreferencePair,
    SourceReport,
    convert_rows,
    dedupe,
    read_json_rows,
    require_files,
    resolve_data_dir,
    subsample,
)
from patarm_kit.data.sources import finegrained_qa, hh_rlhf, reward_bench, reward_bench2, rm_bench
from patarm_kit.data.sources.generic import generic_pair
from patarm_kit.data.sources.verifiable_if import verifiable_pairs
from patarm_kit.runs.files import sha256_of

# The built-in sources, by the name profiles use: each source's module reads its own files.
BUILTIN_SOURCES: dict[str, Callable[[Path, SourceReport, str], list[PreferencePair]]] = {
    "rm-bench": rm_bench.load,
    "llmbar": reward_bench.load_llmbar,
    "hh-rlhf": hh_rlhf.load,
    "finegrained-qa": finegrained_qa.load,
    "reward-bench-2": reward_bench2.load,
}
# Sources the kit builds from the built-in ones (data/sources/verifiable_if.py): the trained instruction types, and
# the held-out types on test-split prompts only (the transfer test).
BUILT_SOURCES = ("verifiable-if", "verifiable-if-transfer")

# Hub datasets: id -> (load_dataset kwargs, row converter). Only used by people who have a hub.
HUB_DATASETS: dict[str, dict[str, Any]] = {
    "allenai/reward-bench": {"split": "filtered"},
    "allenai/reward-bench-2": {"split": "test"},
    "THU-KEG/RM-Bench": {"split": "train"},
    "Anthropic/hh-rlhf": {"split": "test"},
    "AIJian/PaTaRM": {"data_files": "rl_train_mix_41.7k.jsonl", "split": "train"},
    "Skywork/Skywork-Reward-Preference-80K-v0.2": {"split": "train"},
}


def _hub_converter(hub_id: str) -> Callable[[Any, int], PreferencePair]:
    """The row converter of a hub dataset: the benchmarks' own, hh-rlhf's, else generic columns."""

    converters: dict[str, Callable[[Any, int], PreferencePair]] = {
        "allenai/reward-bench": reward_bench.hub_pair,
        "allenai/reward-bench-2": reward_bench2.rewardbench2_pair,
        "THU-KEG/RM-Bench": rm_bench.hub_pair,
        "Anthropic/hh-rlhf": lambda row, number: hh_rlhf.hh_pair(row, "hub", number),
    }
    return converters.get(hub_id, lambda row, number: generic_pair(row, hub_id, number))


def _load_hub(hub_id: str, revision: str | None, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """A hub dataset at `revision` (data.sources[].revision, a commit; None: the hub's main), recorded as
    hub:<id>@<commit> with the fingerprint of what was read."""
    import datasets  # imported here: loading local files needs no Arrow

    kwargs = HUB_DATASETS.get(hub_id, {"split": "train"})
    try:
        dataset = datasets.load_dataset(hub_id, revision=revision, **kwargs)
    except Exception as err:  # the hub raises many kinds; one clear line is what the user needs
        at = f" at commit {revision}" if revision else ""
        raise DataError(f"hub dataset {hub_id}{at}: cannot be loaded ({type(err).__name__}: {err})") from None
    report.files[f"hub:{hub_id}@{revision or 'main'}"] = getattr(dataset, "_fingerprint", "")
    rows = enumerate(dataset, start=1)
    return convert_rows(rows, f"hub:{hub_id}", _hub_converter(hub_id), report, bad_rows)


def source_file(name: str) -> Path | None:
    """The file a source's name points to, made absolute (so the manifest's hash names it wherever
    `verify` runs): the path as given (absolute, or relative to the current directory), else relative
    to the repository root, which is where a profile names its files from (the chain runs the
    notebooks in notebooks/). None when neither is a file."""
    given = Path(name).expanduser()
    for path in (given, REPO_ROOT / given):
        if path.is_file():
            return path.resolve()
    return None


def _load_file(path: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    report.files[str(path)] = sha256_of(path)
    if path.suffix == ".parquet":
        import datasets

        rows: Iterable[tuple[int, Any]] = enumerate(datasets.Dataset.from_parquet(str(path)), start=1)
    elif path.suffix in (".json", ".jsonl", ".gz"):
        rows = read_json_rows(path)
    else:
        raise DataError(f"{path}: unsupported file type (use .json, .jsonl, .jsonl.gz or .parquet)")
    source = path.stem.split(".")[0]
    return convert_rows(rows, str(path), lambda r, n: generic_pair(r, source, n), report, bad_rows)


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
        pairs = BUILTIN_SOURCES[name](Path(report.data_dir), report, spec.bad_rows)
        require_files(report, name, Path(report.data_dir))
    elif name in BUILT_SOURCES:
        report.data_dir = str(resolve_data_dir(data_dir))
        pairs = verifiable_pairs(name, Path(report.data_dir), report, fractions or DataConfig().split_fractions)
    elif name.startswith("hub:") or hub_id in HUB_DATASETS:
        pairs = _load_hub(hub_id, spec.revision, report, spec.bad_rows)
    elif (path := source_file(name)) is not None:
        pairs = _load_file(path, report, spec.bad_rows)
    else:
        raise DataError(
            f"source {name!r} is not a built-in source ({', '.join(BUILTIN_SOURCES)}), "
            "an existing file, or a hub dataset id (hub:owner/name)"
        )
    pairs = dedupe(pairs, report)
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

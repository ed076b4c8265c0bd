"""Stage 01's work: pairs decontaminated against every bench of the run, split, and written to
pairs/{train,dev,test}.jsonl and pairs/bench-<bench>.jsonl, with counts per source.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from patarm_kit.data.loading import LoadedSource
from patarm_kit.data.pairs import PreferencePair, save_pairs
from patarm_kit.data.splits import count_pairs, prompt_keys, split_of


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


def write_stage_pairs(loaded: list[LoadedSource], fractions: dict[str, float], out_dir: Path,
                      bench_files: dict[str, list[PreferencePair]] | None = None) -> dict[str, Path]:
    """Training sources go to pairs/{train,dev,test}.jsonl; `bench_files` (file name -> pairs) are
    the pairs each bench of the run judges, so that evaluation inside the run reads stage 01's files
    and nothing else."""
    by_file: dict[str, list[PreferencePair]] = {f"{split}.jsonl": [] for split in fractions}
    for source in loaded:
        if source.spec.role == "train":
            for pair in source.pairs:
                by_file[f"{split_of(pair, fractions)}.jsonl"].append(pair)
    by_file.update(bench_files or {})
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

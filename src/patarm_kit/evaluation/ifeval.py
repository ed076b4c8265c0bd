"""IFEval: how well a policy's responses follow IFEval's 541 prompts, by IFEval's own checkers.

The downstream evaluation of the paper's second claim (a policy trained with the judge as its
reward). Verdicts come from `ifcheck.check` (PyPI `if-verifiable`, Google's checker code), the
implementation the verifiable pair source uses too. The four official numbers:

    prompt_level_strict   share of prompts whose every instruction passes, strict
    inst_level_strict     share of all instructions that pass, strict
    prompt_level_loose    the same with IFEval's loose variants of the response
    inst_level_loose      (first/last line dropped, markdown asterisks removed)

with seeded bootstrap 95% intervals over prompts, and accuracy per instruction type. Text up
to a closing `</think>` (Qwen3's thinking) is stripped by the wrapped implementation before any
check, always; the metrics file says so. The Punkt source (official or fallback) is recorded.

    patarm-kit eval --bench ifeval --responses FILE.jsonl --out FILE.json
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patarm_kit.data import ifcheck
from patarm_kit.data.pairs import DataError, read_json_rows
from patarm_kit.data.sources.ifeval import InstructionPrompt, load_ifeval
from patarm_kit.evaluation.stats import bootstrap_ci, bootstrap_ci_of
from patarm_kit.runs.env import git_commit, package_versions
from patarm_kit.runs.files import sha256_of, write_json, write_jsonl
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import OutputExistsError, refuse_writing_over

OFFICIAL = ("prompt_level_strict", "inst_level_strict", "prompt_level_loose", "inst_level_loose")
THINKING_RULE = "text through the last </think> is stripped before checking (the wrapped implementation's strip_thinking)"


def read_responses(path: Path, known: Mapping[int, Any]) -> dict[int, str]:
    """A JSON-lines file of {"key": IFEval key, "response": text}; a bad row is one DataError naming it."""
    responses: dict[int, str] = {}
    for number, row in read_json_rows(Path(path)):
        where = f"{path}: row {number}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with key and response")
        key, response = row.get("key"), row.get("response")
        if isinstance(key, bool) or not isinstance(key, int):
            raise DataError(f"{where}: field key: expected IFEval's integer prompt key, got {key!r}")
        if key not in known:
            raise DataError(f"{where}: field key: {key} is not one of IFEval's {len(known)} prompt keys")
        if key in responses:
            raise DataError(f"{where}: field key: {key} has a response already (row numbers start at 1)")
        if not isinstance(response, str):
            raise DataError(f"{where}: field response: expected text, got {type(response).__name__}")
        responses[key] = response
    if not responses:
        raise DataError(f"{path}: no responses in the file")
    return responses


def verdict_rows(prompts: Sequence[InstructionPrompt], responses: Mapping[int, str]) -> list[dict[str, Any]]:
    """One row per prompt with a response: its instructions' strict and loose verdicts."""
    rows = []
    for prompt in prompts:
        if prompt.key not in responses:
            continue
        verdicts = ifcheck.check(responses[prompt.key], prompt.instruction_id_list, prompt.kwargs, prompt.prompt)
        rows.append({"key": prompt.key, "instruction_id_list": list(prompt.instruction_id_list),
                     "strict": [v.strict for v in verdicts], "loose": [v.loose for v in verdicts]})
    return rows


def score_verdicts(rows: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The four official numbers with bootstrap intervals over prompts, and accuracy per instruction type."""
    metrics: dict[str, Any] = {"n_prompts": len(rows), "n_instructions": sum(len(r["strict"]) for r in rows), "ci95": {}}
    for rule in ("strict", "loose"):
        passed = [np.array(r[rule], dtype=float) for r in rows]
        prompt_level = [float(p.all()) for p in passed]
        sums, counts = np.array([p.sum() for p in passed]), np.array([len(p) for p in passed])
        metrics[f"prompt_level_{rule}"] = float(np.mean(prompt_level))
        metrics[f"inst_level_{rule}"] = float(sums.sum() / counts.sum())
        metrics["ci95"][f"prompt_level_{rule}"] = list(bootstrap_ci(prompt_level, n_boot=n_boot, seed=seed))
        metrics["ci95"][f"inst_level_{rule}"] = list(bootstrap_ci_of(
            lambda indices: sums[indices].sum(axis=1) / counts[indices].sum(axis=1), len(rows), n_boot=n_boot, seed=seed))
    by_type: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"strict": [], "loose": []})
    for row in rows:
        for instruction, strict, loose in zip(row["instruction_id_list"], row["strict"], row["loose"]):
            by_type[instruction]["strict"].append(strict)
            by_type[instruction]["loose"].append(loose)
    metrics["per_type"] = {t: {"n": len(v["strict"]), "strict": float(np.mean(v["strict"])), "loose": float(np.mean(v["loose"]))}
                           for t, v in sorted(by_type.items())}
    return metrics


def evaluate_responses(responses_file: Path, out: Path, data_dir: str | None = None, n_boot: int = 1000, seed: int = 0,
                       force: bool = False, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score a responses file on IFEval; write the metrics JSON and the per-prompt verdicts beside it.

    `extra`: what the caller knows of the responses (the downstream stage: which policy, how generated).
    """
    verdicts_file = RunLayout.judgments_of(out)
    for path in (Path(out), verdicts_file):
        if path.exists() and not force:
            raise OutputExistsError(f"{path} already exists; pass --force to replace it, or choose another --out")
    prompts, report = load_ifeval(data_dir)
    refuse_writing_over([out, verdicts_file], [responses_file, *report.local_paths()])
    responses = read_responses(responses_file, {p.key: p for p in prompts})
    rows = verdict_rows(prompts, responses)
    metrics = {"bench": "ifeval", **score_verdicts(rows, n_boot, seed),
               "coverage": f"{len(rows)} of IFEval's {len(prompts)} prompts" + ("" if len(rows) == len(prompts) else
                                                                             " (a partial run: not the official numbers)"),
               "checker": ifcheck.checker_record(), "thinking": THINKING_RULE,
               "responses_file": {"path": str(responses_file), "sha256": sha256_of(Path(responses_file))},
               "data_files": report.files, "n_boot": n_boot, "seed": seed, "packages": package_versions(), "git": git_commit(),
               "verdicts_file": verdicts_file.name, **(extra or {})}
    write_jsonl(verdicts_file, rows, ensure_ascii=True)
    write_json(out, metrics)
    return metrics


def format_ifeval(metrics: Mapping[str, Any]) -> str:
    """The four official numbers and where the verdicts came from, for the terminal."""
    numbers = "; ".join(f"{name} {100 * metrics[name]:.1f} [{100 * metrics['ci95'][name][0]:.1f}, "
                        f"{100 * metrics['ci95'][name][1]:.1f}]" for name in OFFICIAL)
    return (f"IFEval, {metrics['coverage']}: {numbers}\n  checker {metrics['checker']['package']} "
            f"{metrics['checker']['version']}; punkt: {metrics['checker']['punkt']}")

"""RM-Bench scoring: the 3x3 style matrix and its Easy / Normal / Hard scores.

Each RM-Bench prompt has 3 chosen and 3 rejected responses in a fixed style order:
[0] concise, [1] detailed plain text, [2] detailed markdown. A pointwise judge scores the 6
responses once each, which fills the whole matrix M[i][j] = fraction of prompts where
chosen_i scores above rejected_j (rows chosen, columns rejected). Definitions from the
THU-KEG/RM-Bench README ("how to compute the accuracy", "Clarity on Avg Calculation").

The benchmark itself (`RMBench`, registry name `rmbench`) is at the end: its rows, the six
requests per prompt, and its metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from patarm_kit.data.pairs import PreferencePair
from patarm_kit.data.sources.rm_bench import DOMAINS, domain_of
from patarm_kit.evaluation.benches.base import Benchmark, Scoring
from patarm_kit.evaluation.stats import bootstrap_ci_of
from patarm_kit.judging.judge import EvalError, JudgeRequest, Judgment, requests_for_style_variants, voted_scores
from patarm_kit.judging.outcome import pair_outcomes

STYLES = ("concise", "detailed_plain", "detailed_markdown")
SCORE_KEYS = ("easy", "normal", "hard", "avg")
_TOLERANCE = 1e-9


def _outcome_cube(chosen_scores: ArrayLike, rejected_scores: ArrayLike, ties: str) -> np.ndarray:
    """Per-prompt comparison outcomes, shape (n_prompts, 3, 3): [p, i, j] = chosen_i vs rejected_j."""
    chosen = np.asarray(chosen_scores, dtype=float)  # None (invalid) becomes NaN
    rejected = np.asarray(rejected_scores, dtype=float)
    if chosen.ndim != 2 or chosen.shape[1] != len(STYLES) or chosen.shape != rejected.shape:
        raise ValueError(
            f"expected chosen and rejected scores of shape (n_prompts, 3), got "
            f"{chosen.shape} and {rejected.shape}"
        )
    if len(chosen) == 0:
        raise ValueError("no prompts to score")
    return pair_outcomes(chosen[:, :, None], rejected[:, None, :], ties)


def style_matrix(
    chosen_scores: ArrayLike, rejected_scores: ArrayLike, ties: str = "half"
) -> np.ndarray:
    """The 3x3 matrix M[i][j] = mean over prompts of 1[score(chosen_i) > score(rejected_j)].

    `ties="zero"` is RM-Bench's own strict `>`; `ties="half"` (the kit's default, PAPER.md)
    counts an equal pair 0.5, which matters for a judge with integer scores: report both.
    A comparison involving an invalid (NaN/None) score counts as a tie under the same policy.
    """
    return _outcome_cube(chosen_scores, rejected_scores, ties).mean(axis=0)


# The cells of the 3x3 style matrix each score averages (row: chosen's style, column: rejected's).
_DIFFICULTY_CELLS = {
    "easy": np.tril_indices(3, k=-1),  # i > j: chosen fancier
    "normal": np.diag_indices(3),
    "hard": np.triu_indices(3, k=1),  # i < j: chosen plainer
    "avg": np.indices((3, 3)).reshape(2, 9),  # all 9
}


def difficulty_scores(matrix: ArrayLike) -> dict[str, float]:
    """Easy (i > j: chosen fancier), Normal (diagonal), Hard (i < j: chosen plainer), avg (all 9)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3):
        raise ValueError(f"expected a 3x3 style matrix, got shape {m.shape}")
    return {key: _difficulty_score(m, key) for key in _DIFFICULTY_CELLS}


def _difficulty_score(m: np.ndarray, key: str) -> float:
    return float(m[_DIFFICULTY_CELLS[key]].mean())


def _unpack(item: Mapping[str, Any] | tuple) -> tuple[str, Any, Any]:
    if isinstance(item, Mapping):
        return item["domain"], item["chosen_scores"], item["rejected_scores"]
    domain, chosen, rejected = item
    return domain, chosen, rejected


def _check_consistency(domains: dict[str, dict], overall: dict[str, float]) -> None:
    """RM-Bench requires Overall avg = mean of domain avgs = mean(Easy, Normal, Hard)."""
    for name, scores in {**domains, "overall": overall}.items():
        expected = {"mean of easy/normal/hard": float(np.mean([scores[k] for k in SCORE_KEYS[:3]]))}
        if name == "overall":
            expected["mean of domain avgs"] = float(np.mean([d["avg"] for d in domains.values()]))
        for what, value in expected.items():
            if abs(scores["avg"] - value) > _TOLERANCE:
                raise RuntimeError(
                    f"RM-Bench score mismatch in {name}: avg {scores['avg']!r} != {what} "
                    f"{value!r}; the RM-Bench README requires them to be equal"
                )


def _domain_interval(cube: np.ndarray, key: str, n_boot: int, seed: int) -> list[float]:
    rows, columns = _DIFFICULTY_CELLS[key]

    def statistic(indices: np.ndarray) -> np.ndarray:  # each resample's mean matrix, then the key's cells
        return cube[indices].mean(axis=1)[:, rows, columns].mean(axis=1)

    return list(bootstrap_ci_of(statistic, len(cube), n_boot=n_boot, seed=seed))


def _add_intervals(cubes: dict[str, np.ndarray], result: dict, n_boot: int, seed: int) -> None:
    """Bootstrap 95% intervals by resampling prompts, within each domain for the overall avg."""
    for domain, cube in cubes.items():
        result["domains"][domain]["ci95"] = {
            key: _domain_interval(cube, key, n_boot, seed) for key in SCORE_KEYS
        }
    all_prompts = np.concatenate(list(cubes.values()))
    labels = np.repeat(list(cubes), [len(cube) for cube in cubes.values()])

    def overall_avg(indices: np.ndarray) -> np.ndarray:  # the mean of the domains' avgs (strata keep their places)
        domain_avgs = [all_prompts[indices[:, labels == d]].reshape(len(indices), -1).mean(axis=1) for d in cubes]
        return np.stack(domain_avgs, axis=1).mean(axis=1)

    interval = bootstrap_ci_of(overall_avg, len(all_prompts), n_boot=n_boot, seed=seed, strata=labels)
    result["overall"]["ci95"] = {"avg": list(interval)}


def score_rmbench(
    items: Iterable[Mapping[str, Any] | tuple],
    ties: str = "half",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """RM-Bench scores from records (domain, chosen_scores[3], rejected_scores[3]).

    Records are mappings with those keys or plain tuples. Per domain: easy, normal, hard,
    avg, n and the matrix; overall: each score averaged over the domains PRESENT, listed
    with the missing ones so a partial run is visible. `n_boot > 0` adds `ci95` intervals
    (prompts resampled, seeded); `n_boot=0` skips them.
    """
    grouped: dict[str, tuple[list, list]] = {}
    for item in items:
        domain, chosen, rejected = _unpack(item)
        chosen_rows, rejected_rows = grouped.setdefault(domain_of(domain), ([], []))
        chosen_rows.append(chosen)
        rejected_rows.append(rejected)
    if not grouped:
        raise ValueError("no RM-Bench items to score")

    cubes = {d: _outcome_cube(*grouped[d], ties) for d in DOMAINS if d in grouped}
    domains = {}
    for domain, cube in cubes.items():
        matrix = cube.mean(axis=0)
        domains[domain] = {**difficulty_scores(matrix), "n": len(cube), "matrix": matrix.tolist()}
    overall = {key: float(np.mean([d[key] for d in domains.values()])) for key in SCORE_KEYS}
    _check_consistency(domains, overall)
    result = {
        "ties": ties,
        "domains": domains,
        "overall": overall,
        "domains_missing": [d for d in DOMAINS if d not in domains],
    }
    if n_boot > 0:
        _add_intervals(cubes, result, n_boot, seed)
    return result


class RMBench(Benchmark):
    """RM-Bench: a pointwise judge scores the 3 chosen and 3 rejected style variants of each prompt,
    which fills the 3x3 style matrix; metrics per domain and overall (easy, normal, hard, avg)."""

    name = "rmbench"
    label = "RM-Bench"
    sources = ("rm-bench", "THU-KEG/RM-Bench")
    pairwise = False  # 9 comparisons x 2 orders per prompt instead of 6 pointwise judgments
    style_matrix = True

    def group(self, pair: PreferencePair) -> str:
        return domain_of(pair.subset)

    def requests(self, pairs: Sequence[PreferencePair]) -> list[JudgeRequest]:
        """All 3 chosen and 3 rejected style variants: 6 requests per prompt (sides chosen_0 .. rejected_2)."""
        return requests_for_style_variants(pairs)

    def score(self, judgments: Sequence[Judgment], groups: Mapping[str, str], rules: Scoring) -> tuple[dict[str, float], dict[str, Any]]:
        """RM-Bench's scores; a pair's outcome is its mean over the 9 style comparisons."""
        if rules.pairwise:
            raise EvalError("the pairwise judge is not run on rmbench (9 comparisons x 2 orders per prompt)")
        voted = voted_scores(judgments, rules.voting, rules.votes, rules.readout)
        pair_ids = list(groups)
        scores = {side: [[voted.get((pid, f"{side}_{i}")) for i in range(3)] for pid in pair_ids] for side in ("chosen", "rejected")}
        items = [{"domain": groups[pid], "chosen_scores": c, "rejected_scores": r}
                 for pid, c, r in zip(pair_ids, scores["chosen"], scores["rejected"])]
        result = score_rmbench(items, ties=rules.ties, n_boot=rules.n_boot, seed=rules.seed)
        cube = _outcome_cube(scores["chosen"], scores["rejected"], rules.ties)
        outcomes = dict(zip(pair_ids, cube.reshape(len(pair_ids), 9).mean(axis=1).tolist()))
        return outcomes, {"domains": result["domains"], "overall": result["overall"], "domains_missing": result["domains_missing"],
                          "acc": result["overall"]["avg"], "ci95": {"acc": result["overall"].get("ci95", {}).get("avg")}}

    def count(self, metrics: Mapping[str, Any]) -> int:
        return sum(d["n"] for d in metrics["domains"].values())

    def table_extras(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        return {f"rm_{k}": metrics["overall"][k] for k in ("easy", "normal", "hard")}

    def coverage(self, metrics: Mapping[str, Any]) -> str:
        domains = ", ".join(f"{d} (n={f['n']})" for d, f in metrics["domains"].items())
        missing = f"; {', '.join(metrics['domains_missing'])} missing" if metrics.get("domains_missing") else ""
        return f"RM-Bench: {domains}{missing}"

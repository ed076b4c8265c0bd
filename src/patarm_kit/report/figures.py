"""Plots and tables drawn from results: the notebooks call these, never draw by hand."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patarm_kit.config.rules import READOUTS
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.evaluate import SECTIONED, read_eval_metrics, readout_field, summary_row
from patarm_kit.judging.judge import EvalError, Judgment, read_judgments
from patarm_kit.judging.prompts import SCORE_RANGE
from patarm_kit.runs.files import atomic_write_text, display_path, read_json, read_jsonl
from patarm_kit.runs.layout import RunLayout
from patarm_kit.training.grpo import read_metrics  # the log's reader: a torn last line is dropped with a warning

if TYPE_CHECKING:  # imported for the annotations only: importing this module stays light
    import pandas as pd
    from matplotlib.figure import Figure


def plot_length_distributions(pairs_by_source: Mapping[str, Sequence[PreferencePair]]) -> Any:
    """Chosen vs rejected response lengths per source: the first look at length bias."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n, pairs in pairs_by_source.items() if pairs]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        pairs = pairs_by_source[name]
        chosen = np.array([len(p.chosen) for p in pairs])
        rejected = np.array([len(p.rejected) for p in pairs])
        bins = np.logspace(np.log10(max(1, min(chosen.min(), rejected.min()))), np.log10(max(chosen.max(), rejected.max()) + 1), 30)
        ax.hist(chosen, bins=bins, alpha=0.6, label="chosen")
        ax.hist(rejected, bins=bins, alpha=0.6, label="rejected")
        ax.set_xscale("log")
        longer = float(np.mean(chosen > rejected))
        ax.set_title(f"{name}\nchosen longer in {longer:.0%} of {len(pairs)}", fontsize=9)
        ax.set_xlabel("response length (characters)")
    axes[0][0].set_ylabel("pairs")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def plot_score_distributions(judgments_by_label: Mapping[str, Sequence[Any]], title: str = "") -> Any:
    """Histograms of valid scores, chosen vs rejected, one panel per judge; parse rate in each title."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(judgments_by_label), figsize=(4.2 * len(judgments_by_label), 3.2), squeeze=False)
    bins = np.arange(0.5, 11.5, 1.0)
    for ax, (label, judgments) in zip(axes[0], judgments_by_label.items()):
        for side in ("chosen", "rejected"):
            scores = [j.score for j in judgments if j.side.startswith(side) and j.score is not None]
            ax.hist(scores, bins=bins, alpha=0.6, label=f"{side} (n={len(scores)})")
        parsed = sum(j.score is not None for j in judgments) / max(len(judgments), 1)
        ax.set_title(f"{label}: parse rate {parsed:.0%} of {len(judgments)}", fontsize=9)
        ax.set_xticks(range(1, 11))
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("judgments")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
JUDGE_ORDER = ("length", "random", "bt", "pairwise", "base", "sft", "par")  # baselines first, ours last
STYLE_LABELS = ("concise", "detailed", "markdown")  # RM-Bench's three response styles, in order
# How figures name each readout, and mark it beside the greedy bars.
READOUT_LABELS = {"greedy": "greedy score", "expected": "expected score", "sampled-mean": "sampled-mean score",
                  "sampled-expected": "sampled-expected score"}
READOUT_MARKERS = {"expected": ("D", "tab:orange"), "sampled-mean": ("s", "tab:green"),
                   "sampled-expected": ("^", "tab:purple")}
PAR_CURVES = {  # key in par/metrics.jsonl (one JSON line per step, written by training/grpo.py) -> panel title
    "par/reward_mean": "mean PAR reward",
    "par/pair_accuracy": "rollout pair accuracy",
    "par/parse_rate": "parse rate",
    "par/completion_length_mean": "completion length (tokens)",
    "par/group_reward_std_mean": "reward std within a group",
    "par/zero_std_group_share": "zero-variance group share",
    "seconds_per_step": "seconds per step",
}


def skip(what: str, reason: str) -> None:
    """Say why a figure or table is not drawn: its input is missing."""
    print(f"[figures] skipped {what}: {reason}")


def save_figure(fig: Figure, run_dir: Path | str, name: str, data: pd.DataFrame) -> list[Path]:
    """<run>/figures/<name>.png and .svg (the SVG without a date and with ids salted by its name,
    so a rerun writes the same file), and beside them <name>.csv, the numbers the figure draws:
    `verify` rebuilds and compares it."""
    import matplotlib

    layout = RunLayout(Path(run_dir))
    png, svg, csv = layout.figure(name, "png"), layout.figure(name, "svg"), layout.figure_data(name)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120, bbox_inches="tight")
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    atomic_write_text(csv, data.to_csv(index=False))
    return [png, svg, csv]


def bench_label(bench: str) -> str:
    return get_bench(bench).label


def suite_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """The benchmark stage's files eval/<judge>__<bench>.json (the votes-curve files are named otherwise),
    each checked for its shape; a run whose eval stage did not finish, or whose recorded files are
    not all there, is refused (EvalError naming the run or the first missing file), never read as whole."""
    layout = RunLayout(Path(run_dir))
    if layout.manifest.is_file():
        record = read_json(layout.manifest).get("stages", {}).get("eval", {})
        if record.get("status", "done") != "done":
            raise EvalError(f"{layout.root}: the eval stage is recorded {record['status']!r}, so its evaluations are "
                            "incomplete (run it again, or the chain with --resume)")
        missing = [key for key in record.get("outputs", {}) if key.startswith("eval/") and not (layout.root / key).is_file()]
        if missing:
            raise EvalError(f"{layout.root / missing[0]}: recorded by the eval stage but missing"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    found = []
    for path in sorted(layout.eval_dir.glob("*.json")):
        metrics = read_eval_metrics(path)
        if path == layout.eval_metrics(metrics["judge"], metrics["bench"]):
            found.append(metrics)
    rank = {judge: i for i, judge in enumerate(JUDGE_ORDER)}
    return sorted(found, key=lambda m: (m["bench"], rank.get(m["judge"], len(rank)), m["judge"]))


def _grid(n_panels: int, columns: int, size: tuple[float, float]) -> tuple[Figure, list[Any]]:
    """A figure with n panels in rows of `columns` (constrained layout: titles never overlap); unused axes hidden."""
    import matplotlib.pyplot as plt

    rows = math.ceil(n_panels / columns)
    columns = min(columns, n_panels)
    fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def par_curves_data(run_dir: Path | str) -> pd.DataFrame | None:
    """One row per plotted point: metric (a PAR_CURVES key), step, value; None without PAR metrics."""
    import pandas as pd

    rows = read_metrics(RunLayout(Path(run_dir)).par_metrics)
    points = [{"metric": key, "step": row["step"], "value": row[key]}
              for key in PAR_CURVES for row in rows if row.get(key) is not None]
    return pd.DataFrame(points) if points else None


def plot_par_curves(run_dir: Path | str) -> Figure | None:
    """PAR training, step by step: is the reward rising, does the judge keep its format, do groups carry signal?"""
    from matplotlib.ticker import MaxNLocator

    data = par_curves_data(run_dir)
    if data is None:
        path = RunLayout(Path(run_dir)).par_metrics
        return skip("PAR training curves", f"{display_path(path)} not found, empty, or without any curve's key (PAR training not run)")
    curves = dict(tuple(data.groupby("metric", sort=False)))
    for key in PAR_CURVES.keys() - curves.keys():
        print(f"[figures] PAR curves: {key} was never logged")
    fig, axes = _grid(len(curves), 4, (3.4, 2.6))
    for ax, (key, points) in zip(axes, curves.items()):
        ax.plot(points["step"], points["value"], marker="o", markersize=3)
        ax.set_title(PAR_CURVES[key], fontsize=9)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"PAR training ({data['step'].nunique()} logged steps)", fontsize=10)
    save_figure(fig, run_dir, "06_par_curves", data)
    return fig


def benchmark_bars_data(run_dir: Path | str) -> pd.DataFrame | None:
    """One row per bar: judge, bench, n, greedy accuracy and its 95% interval (and each other readout's,
    where judges have it); None before the benchmark stage."""
    import pandas as pd

    results = suite_metrics(run_dir)
    if not results:
        return None
    frame = pd.DataFrame([summary_row(m) for m in results])
    others = [c for r in SECTIONED for c in (readout_field(f, r) for f in ("acc", "ci95_low", "ci95_high")) if c in frame]
    return frame[["judge", "bench", "n", "acc", "ci95_low", "ci95_high", *others]]


def plot_learning_curve(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Dev accuracy against the PAR step under each readout measured (`evaluate.curve_row`), with 95% intervals."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    steps = [r["step"] for r in rows]
    for readout in READOUTS:
        key, interval = readout_field("acc", readout), readout_field("ci95", readout)
        points = [(s, r[key], r[interval]) for s, r in zip(steps, rows) if r.get(key) is not None]
        label = READOUT_LABELS[readout] + (" (ties ½)" if readout == "greedy" else "")
        if points:
            xs, ys, cis = zip(*points)
            ax.errorbar(xs, [100 * y for y in ys], yerr=[[100 * (y - c[0]) for y, c in zip(ys, cis)],
                                                          [100 * (c[1] - y) for y, c in zip(ys, cis)]],
                        marker="o", capsize=3, label=label)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="PAR step (0: the warm-up)", ylabel="dev accuracy (%)", ylim=(0, 100),
           title=f"Learning curve on {rows[0]['n'] if rows else 0} dev pairs")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_score_probe(curves: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """The score-reading probe: teacher-forced dev accuracy and score gap per step, one line per LoRA reach."""
    import matplotlib.pyplot as plt

    fig, (acc_ax, gap_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    for layers, curve in curves.items():
        steps = [point["step"] for point in curve]
        label = "LoRA in every layer" if layers == "all" else f"LoRA in the top {layers} layers"
        acc_ax.plot(steps, [100 * point["accuracy"] for point in curve], marker="o", label=label)
        gap_ax.plot(steps, [point["score_gap"] for point in curve], marker="o", label=label)
    acc_ax.axhline(50, color="grey", lw=0.8, ls="--")
    acc_ax.set(xlabel="probe step", ylabel="dev accuracy (%)", ylim=(0, 100), title="Chosen side scored higher")
    gap_ax.set(xlabel="probe step", ylabel="expected score, chosen - rejected", title="Score gap")
    acc_ax.legend(loc="lower right")
    fig.suptitle("PAR's reward on the score alone (teacher-forced verdicts)")
    fig.tight_layout()
    return fig


def plot_benchmark_bars(run_dir: Path | str) -> Figure | None:
    """One panel per benchmark, one bar per judge with its 95% bootstrap interval (greedy score; markers:
    the other readouts, where measured); 0.5 is chance."""
    data = benchmark_bars_data(run_dir)
    if data is None:
        return skip("benchmark bars", f"no metrics files in {display_path(RunLayout(Path(run_dir)).eval_dir)} (benchmark stage not run)")
    panels = list(data.groupby("bench", sort=False))
    fig, axes = _grid(len(panels), 3, (4.2, 3.2))
    for ax, (bench, rows) in zip(axes, panels):
        acc = rows["acc"].to_numpy(dtype=float)
        low = rows["ci95_low"].astype(float).fillna(rows["acc"]).to_numpy()  # no interval: no error bar
        high = rows["ci95_high"].astype(float).fillna(rows["acc"]).to_numpy()
        ax.bar(rows["judge"], acc, yerr=[acc - low, high - acc], capsize=4, color="tab:blue", alpha=0.75)
        for x, value in enumerate(acc):
            ax.text(x, 0.02, f"{value:.2f}", ha="center", fontsize=8, color="white")
        for readout in SECTIONED:  # the other readouts, where judges have them
            acc_other = readout_field("acc", readout)
            if acc_other in rows and rows[acc_other].notna().any():
                value = rows[acc_other].astype(float).to_numpy()
                err = [value - rows[readout_field("ci95_low", readout)].astype(float).to_numpy(),
                       rows[readout_field("ci95_high", readout)].astype(float).to_numpy() - value]
                marker, color = READOUT_MARKERS[readout]
                ax.errorbar(range(len(rows)), value, yerr=err, fmt=marker, color=color, capsize=3, label=READOUT_LABELS[readout])
                ax.legend(fontsize=7, loc="upper right")
        ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{bench_label(bench)} (n={rows['n'].iloc[0]})", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0].set_ylabel("accuracy (95% interval)")
    save_figure(fig, run_dir, "06_benchmark_bars", data)
    return fig


def rmbench_matrices_data(run_dir: Path | str) -> pd.DataFrame | None:
    """One row per cell of each RM-Bench style matrix: judge, domain ("overall" averages the domains
    present), n, the easy/normal/hard scores, chosen style, rejected style, and the share of
    comparisons the chosen response won. None when RM-Bench was not evaluated."""
    import numpy as np
    import pandas as pd

    results = [m for m in suite_metrics(run_dir) if get_bench(m["bench"]).style_matrix]
    if not results:
        return None
    rows = []
    for metrics in results:
        domains = metrics["domains"]
        overall = {**metrics["overall"], "n": sum(d["n"] for d in domains.values()),
                   "matrix": np.mean([d["matrix"] for d in domains.values()], axis=0)}
        for domain, facts in {**domains, "overall": overall}.items():
            for (i, j), share in np.ndenumerate(np.asarray(facts["matrix"])):
                rows.append({"judge": metrics["judge"], "domain": domain, "n": facts["n"], "easy": facts["easy"],
                             "normal": facts["normal"], "hard": facts["hard"], "chosen_style": STYLE_LABELS[i],
                             "rejected_style": STYLE_LABELS[j], "share": float(share)})
    return pd.DataFrame(rows)


def plot_rmbench_matrices(run_dir: Path | str) -> Figure | None:
    """RM-Bench's 3x3 style matrix per judge and domain: upper triangle = Hard (the right answer is plainer)."""
    import numpy as np

    data = rmbench_matrices_data(run_dir)
    if data is None:
        return skip("RM-Bench matrices", f"no eval/*__rmbench.json in {display_path(run_dir)} (RM-Bench not evaluated)")
    judges = list(dict.fromkeys(data["judge"]))
    columns = [*dict.fromkeys(d for d in data["domain"] if d != "overall"), "overall"]
    panels = dict(tuple(data.groupby(["judge", "domain"], sort=False)))
    fig, axes = _grid(len(judges) * len(columns), len(columns), (2.6, 2.6))
    for row, judge in enumerate(judges):
        for column, domain in enumerate(columns):
            ax = axes[row * len(columns) + column]
            if (judge, domain) not in panels:
                ax.set_axis_off()
                ax.set_title(f"{judge} · {domain}: not scored", fontsize=8)
                continue
            cells = panels[(judge, domain)]
            facts = cells.iloc[0]
            matrix = cells["share"].to_numpy().reshape(3, 3)  # cells run chosen style by rejected style
            image = ax.imshow(matrix, vmin=0, vmax=1, cmap="RdYlGn")
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(3), STYLE_LABELS, fontsize=7, rotation=30)
            ax.set_yticks(range(3), STYLE_LABELS if column == 0 else [""] * 3, fontsize=7)
            ax.set_title(f"{judge} · {domain} (n={facts['n']})\n"
                         f"hard {facts['hard']:.2f} · normal {facts['normal']:.2f} · easy {facts['easy']:.2f}", fontsize=8)
        axes[row * len(columns)].set_ylabel("chosen style")
    for ax in axes[-len(columns):]:
        ax.set_xlabel("rejected style", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="chosen scored higher (share)")
    save_figure(fig, run_dir, "06_rmbench_matrices", data)
    return fig


def votes_curve_data(run_dir: Path | str) -> pd.DataFrame | None:
    """One row per point: judge, bench, votes, accuracy and its 95% interval (from metrics/04_benchmarks.json)."""
    import pandas as pd

    path = RunLayout(Path(run_dir)).benchmarks_summary
    curve = read_json(path).get("votes_curve", []) if path.is_file() else []
    if not curve:
        return None
    return pd.DataFrame(curve)[["judge", "bench", "votes", "acc", "ci95_low", "ci95_high"]]


def plot_votes_curve(run_dir: Path | str) -> Figure | None:
    """Accuracy against the number of sampled judgments averaged per response (test-time voting)."""
    data = votes_curve_data(run_dir)
    if data is None:
        path = RunLayout(Path(run_dir)).benchmarks_summary
        return skip("votes curve", f"no votes_curve rows in {display_path(path)} (eval.votes_curve empty, or stage 04 not run)")
    fig, (ax,) = _grid(1, 1, (4.5, 3.2))
    for (judge, bench), rows in data.groupby(["judge", "bench"], sort=False):
        rows = rows.sort_values("votes")
        ax.plot(rows["votes"], rows["acc"], marker="o", label=f"{judge} on {bench_label(bench)}")
        ax.fill_between(rows["votes"], rows["ci95_low"], rows["ci95_high"], alpha=0.2)
        ax.set_xticks(rows["votes"])
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("votes (judgments averaged per response)")
    ax.set_ylabel("accuracy (95% interval)")
    ax.legend(fontsize=8)
    save_figure(fig, run_dir, "06_votes_curve", data)
    return fig


def score_judgments(run_dir: Path | str) -> dict[str, list[Judgment]]:
    """Every stored set of 1..10 judge scores of a run, before and after training, labelled by origin."""
    layout = RunLayout(Path(run_dir))
    found: dict[str, list[Judgment]] = {}
    if layout.preview_judgments.is_file():
        found["before: base, train pairs (02)"] = read_judgments(layout.preview_judgments)
    checks = layout.sft_check_judgments
    if checks.is_file():
        rows = read_jsonl(checks)
        for judge in dict.fromkeys(row["judge"] for row in rows):
            when = "before" if judge == "base" else "after warm-up"
            found[f"{when}: {judge}, dev pairs (sft checks)"] = [
                Judgment(**{k: v for k, v in row.items() if k != "judge"}) for row in rows if row["judge"] == judge]
    for metrics in suite_metrics(run_dir):
        if metrics["judge"] in ("base", "sft", "par") and get_bench(metrics["bench"]).held_out:
            when = {"base": "before", "sft": "after warm-up", "par": "after PAR"}[metrics["judge"]]
            label = f"{when}: {metrics['judge']}, {bench_label(metrics['bench'])}"
            found[label] = read_judgments(layout.eval_dir / metrics["judgments_file"])
    return found


def score_counts(found: Mapping[str, Sequence[Judgment]]) -> pd.DataFrame:
    """What the score histograms draw: per label and side, how many judgments gave each score 1..10
    (the judge's scale), and how many were invalid or gave a number off the scale (not drawn)."""
    import pandas as pd

    scale = range(SCORE_RANGE[0], SCORE_RANGE[1] + 1)
    rows = []
    for label, judgments in found.items():
        for side in ("chosen", "rejected"):
            counts = Counter(j.score for j in judgments if j.side.startswith(side))
            off_scale = sum(n for score, n in counts.items() if score is not None and score not in scale)
            rows += [{"label": label, "side": side, "score": score, "judgments": counts.get(score, 0)} for score in scale]
            rows += [{"label": label, "side": side, "score": "invalid", "judgments": counts.get(None, 0)},
                     {"label": label, "side": side, "score": "off the scale", "judgments": off_scale}]
    return pd.DataFrame(rows)


def score_shift_data(run_dir: Path | str) -> pd.DataFrame | None:
    """`score_counts` of the run's stored judge scores; None when there are none."""
    found = score_judgments(run_dir)
    return score_counts(found) if found else None


def plot_score_shift(run_dir: Path | str) -> Figure | None:
    """Chosen vs rejected score histograms before and after training: PAR should pull them apart."""
    found = score_judgments(run_dir)
    if not found:
        return skip("score distributions", "no base judgments (02), no sft checks and no base/sft/par eval on held-out pairs")
    if not any(label.startswith("after PAR") for label in found):
        print("[figures] score distributions: no PAR judgments on held-out pairs yet (evaluate the par judge on pairs:SOURCE)")
    fig = plot_score_distributions(found, title="chosen vs rejected scores, before and after training")
    save_figure(fig, run_dir, "06_score_shift", score_counts(found))
    return fig


# ---------------------------------------------------------------- what verify rebuilds
#
# Each saved figure's data and each table, by name, with the function that builds it from the
# run's files alone (no drawing, no writing): `verify` rebuilds them and compares with the files.

FIGURE_DATA = {
    "06_par_curves": par_curves_data,
    "06_benchmark_bars": benchmark_bars_data,
    "06_rmbench_matrices": rmbench_matrices_data,
    "06_votes_curve": votes_curve_data,
    "06_score_shift": score_shift_data,
}

"""Plots and tables drawn from results: the notebooks call these, never draw by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .data import PreferencePair


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

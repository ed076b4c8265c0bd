"""Figures of the training stages: the warm-up's loss, PAR's per-step diagnostics, the policies' rewards.

The stages (stages.py) draw these as they finish; each reads only what its stage returned.
"""

from __future__ import annotations

from typing import Any


def plot_sft_loss(losses: list[float]) -> Any:
    """The warm-up's training loss per logged step."""
    import pandas as pd  # plotting libraries load when a figure is drawn, not when the stages are imported

    ax = pd.Series(losses, name="loss").plot(title="SFT loss (judgment tokens only)", xlabel="logged step")
    return ax.figure


# PAR's per-step log, as notebook 03 plots it: what the rewards do, then whether GRPO still has
# something to learn from (groups with reward variance, pairs that are not ties, spread of scores
# and of the evaluations' first words). Older runs' logs lack the later panels: they are left out.
PAR_PANELS = ("reward_mean", "pair_accuracy", "parse_rate", "zero_std_group_share", "tie_rate", "score_entropy",
              "band_top_share", "kl", "completion_length_mean", "seconds_per_step")  # kl: with par.beta > 0


def plot_par_steps(metrics: list[dict[str, Any]]) -> Any:
    """Each logged quantity per step (dots) with its rolling mean over 8 steps (line)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.DataFrame(metrics).set_index("step")
    columns = [c for name in PAR_PANELS for c in table if c.endswith(name) and table[c].notna().any()]
    n_rows = -(-len(columns) // 3)
    figure, axes = plt.subplots(n_rows, 3, figsize=(12, 2.6 * n_rows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        values = table[column].astype(float)
        ax.plot(values.index, values, ".", alpha=0.35)
        ax.plot(values.index, values.rolling(8, min_periods=1).mean())
        ax.set_title(column.removeprefix("par/"))
        ax.set_xlabel("step")
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def plot_policy_rewards(metrics: dict[str, list[dict[str, Any]]]) -> Any:
    """Each policy's mean reward per GRPO step, on its own rewarder's scale."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for rewarder, rows in metrics.items():
        points = [(row["step"], row["reward"]) for row in rows if "reward" in row]
        if points:
            ax.plot(*zip(*points), marker="o", label=f"rewarded by {rewarder}")
    ax.set(xlabel="GRPO step", ylabel="mean reward (0..1, its own rewarder's scale)", title="Policy training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

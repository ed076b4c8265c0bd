"""Our numbers beside the paper's (results/paper/reference.yaml): the comparison table and the
relative improvements, each labelled with what it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.rules import readout_name
from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.evaluate import readout_field, readout_key
from patarm_kit.evaluation.ifeval import OFFICIAL
from patarm_kit.report.figures import bench_label, suite_metrics
from patarm_kit.report.tables import save_table
from patarm_kit.runs.files import read_json
from patarm_kit.runs.run import Run

if TYPE_CHECKING:  # imported for the annotations only: importing this module stays light
    import pandas as pd


# ---------------------------------------------------------------- notebook 06: figures and tables from results files
#
# Each function below reads one kind of results file of a run folder, draws or tabulates it,
# saves it (figures: PNG + SVG + the numbers drawn as CSV in <run>/figures/, tables: CSV +
# Markdown in <run>/tables/) and returns the figure or table. A figure's numbers come from a
# `*_data` function and a table from a `*_frame` function, which only read: `verify` calls them
# again to check the saved files. When an input does not exist (a stage that was not run) it
# prints a note and returns None: a missing result is shown as missing, never filled in.

REFERENCE_FILE = REPO_ROOT / "results" / "paper" / "reference.yaml"
COMPARABILITY = ("not comparable in size: the paper trains Qwen3-8B/14B judges on 41.7k pairs and scores the full "
                 "benchmarks; a run here trains a far smaller judge for a few CPU steps and scores subsets. The rows say "
                 "which quantity each cell is; read them side by side, not as a replication")

# ---------------------------------------------------------------- paper versus ours


def stated_readout(config: Mapping[str, Any]) -> str:
    """The readout a run states for its comparisons: its primary comparison's, else greedy (the default)."""
    primary = config["eval"].get("primary")
    return readout_name(primary["readout"]) if primary else "greedy"


def undefined_base(metrics: Mapping[str, Any], readout: str) -> str | None:
    """Why a relative improvement over this judge would be arithmetic on ties, or None: a judge whose
    judgments are all invalid, or whose every item is a tie, sits at 50% only because ties count ½."""
    if _section(metrics, readout).get("invalid", {}).get("share") == 1.0:
        return f"every {readout} judgment of the {metrics['judge']} judge on {bench_label(metrics['bench'])} is invalid"
    outcome = readout_field("outcome", readout)
    if metrics["ties"] == "half" and all(item.get(outcome) == 0.5 for item in metrics["items"]):
        return f"every item of the {metrics['judge']} judge on {bench_label(metrics['bench'])} is a tie ({readout} readout)"
    return None


def relative_improvement(results: Sequence[dict[str, Any]], benches: Sequence[str], readout: str = "greedy",
                         trained: str = "par", base: str = "base") -> tuple[float | None, str]:
    """(acc_trained - acc_base) / acc_base in percent under `readout`, averaged over the benches both judges
    ran; and its source. Undefined (None, and why) where the base judge is all invalid or all ties."""
    metrics = {(m["judge"], m["bench"]): m for m in results if _section(m, readout)}
    present = [b for b in benches if (trained, b) in metrics and (base, b) in metrics]
    if not present:
        return None, (f"empty: no {trained} and {base} evaluations on {', '.join(map(bench_label, benches))} "
                      f"with the {readout} readout in this run")
    undefined = [why for b in present if (why := undefined_base(metrics[(base, b)], readout))]
    if undefined:
        return None, f"undefined: {'; '.join(undefined)}, so its accuracy is 50% by the tie rule and no base to improve on"
    accuracy = {(judge, b): _accuracy(metrics[(judge, b)], readout) for judge in (trained, base) for b in present}
    gains = [100 * (accuracy[(trained, b)] - accuracy[(base, b)]) / accuracy[(base, b)] for b in present]
    missing = [bench_label(b) for b in benches if b not in present]
    return sum(gains) / len(gains), (f"({trained} - {base}) / {base}, {readout} readout, mean over "
                                     f"{', '.join(measured_label(metrics[(base, b)]) for b in present)}"
                                     + (f"; {', '.join(missing)} not in this run" if missing else ""))


def _section(metrics: Mapping[str, Any], readout: str) -> Mapping[str, Any]:
    """A metrics file's numbers under one readout (greedy's are the file's top level)."""
    return metrics if readout == "greedy" else metrics.get(readout_key(readout), {})


def _accuracy(metrics: Mapping[str, Any], readout: str) -> float:
    return _section(metrics, readout)["acc"]


def measured_label(metrics: Mapping[str, Any]) -> str:
    """What a metrics file measured, by name: RewardBench run on its LLMBar subsets alone is LLMBar."""
    subsets = list(metrics.get("subsets", {}))
    if metrics["bench"] == "rewardbench" and subsets and all(name.startswith("llmbar") for name in subsets):
        return f"LLMBar ({len(subsets)} of RewardBench's Chat Hard subsets)"
    return bench_label(metrics["bench"])


def policy_relative_improvement(downstream: Mapping[str, Any] | None, trained: str = "par",
                                base: str = "untrained") -> tuple[float | None, str]:
    """(IFEval of the policy rewarded by `trained` - the untrained policy's) / the untrained's, in percent,
    averaged over IFEval's four numbers where the untrained one is above 0; and its source."""

    policies = (downstream or {}).get("policies", {})
    if trained not in policies or base not in policies:
        return None, "empty: no downstream RLHF results (IFEval, InFoBench) in this run"
    present = [name for name in OFFICIAL if policies[base][name] > 0]  # a zero base cannot divide
    if not present:
        return None, f"empty: the {base} policy passes nothing on IFEval, so no relative improvement"
    gains = [100 * (policies[trained][name] - policies[base][name]) / policies[base][name] for name in present]
    return sum(gains) / len(gains), (f"IFEval ({trained}-rewarded policy - {base}) / {base}, mean over "
                                     f"{', '.join(present)}; InFoBench not run (its data is not here)")


def _our_value(claim: Mapping[str, Any], results: Sequence[dict[str, Any]], readout: str,
               downstream: Mapping[str, Any] | None = None) -> tuple[float | None, str]:
    """Our number for the quantity a paper claim measures (see reference.yaml), with where it comes from."""
    if claim["value"] is not None and "not stated" in claim.get("reference", "not stated"):
        return None, "empty: the paper does not say what its number is relative to, so ours cannot be the same quantity"
    if claim["quantity"] == "judge_relative_improvement":
        return relative_improvement(results, claim["benches"], readout)
    if claim["quantity"] == "judge_accuracy":
        measured = [m for m in results if m["judge"] == "par" and m["bench"] in claim["benches"]]
        if not measured:
            return None, "empty: the par judge was not evaluated on this benchmark in this run"
        return (sum(100 * _accuracy(m, readout) for m in measured) / len(measured),
                f"par accuracy, {readout} readout, on {', '.join(map(measured_label, measured))}")
    if claim["quantity"] == "policy_relative_improvement":
        return policy_relative_improvement(downstream)
    raise ValueError(f"reference claim {claim['id']}: unknown quantity {claim['quantity']!r}")


def _coverage(metrics: Mapping[str, Any]) -> str:
    """What part of a benchmark a metrics file covers, read from the file itself."""
    return get_bench(metrics["bench"]).coverage(metrics)


def _our_training(manifest: Mapping[str, Any]) -> str:
    """Our judge's training data and steps, from the run's config and manifest."""
    config = manifest["config"]
    sources = ", ".join(s["name"] + (f" (limit {s['limit']})" if s["limit"] else "")
                        for s in config["data"]["sources"] if s["role"] == "train")
    sft = manifest.get("stages", {}).get("sft")
    par = manifest.get("training", {}).get("par")
    sft_text = f"SFT warm-up: {sft.get('facts', {}).get('steps')} steps" if sft else "no SFT warm-up in this run"
    par_text = f"PAR: {par.get('n_pairs')} pairs, {par.get('global_step')} steps" if par else "no PAR training in this run"
    return f"local data: {sources}; {sft_text}; {par_text}"


def paper_frame(run_dir: Path | str, reference: Path | str = REFERENCE_FILE) -> pd.DataFrame:
    """The paper's numbers (reference.yaml: value, version, place) beside ours, and both settings.

    Every paper cell comes from the reference file; a claim the paper does not give stays empty
    and says why. Our cells come from this run's metrics files; missing ones say what is missing.
    """
    import pandas as pd
    import yaml

    paper = yaml.safe_load(Path(reference).read_text(encoding="utf-8"))
    results = suite_metrics(run_dir)
    run = Run.open(run_dir)
    manifest = run.manifest()
    downstream = read_json(run.layout.downstream_summary) if run.layout.downstream_summary.is_file() else None
    rows = []
    readout = stated_readout(manifest["config"])
    for claim in paper["claims"]:
        ours, our_source = _our_value(claim, results, readout, downstream)
        if claim["value"] is None:
            paper_source = f"empty: {claim['why']}"
        else:
            paper_source = f"{claim['version']}, {claim['place']}" + (f"; reference: {claim['reference']}" if claim.get("reference") else "")
        rows.append({"row": f"{claim['claim']} (%)", "paper": claim["value"], "paper source": paper_source,
                     "ours": None if ours is None else round(ours, 1), "ours source": our_source})  # as the paper prints
    coverage = {m["bench"]: _coverage(m) for m in results}  # the files of one bench share its items
    rows += [
        {"row": "setting: judge model", "paper": ", ".join(paper["paper"]["models"]), "paper source": "paper",
         "ours": manifest["config"]["model"]["name"], "ours source": "manifest.json config.model"},
        {"row": "setting: training data", "paper": paper["paper"]["data"], "paper source": "model card of AIJian/PaTaRM",
         "ours": _our_training(manifest), "ours source": "manifest.json"},
        {"row": "setting: benchmarks", "paper": paper["paper"]["benches"], "paper source": "paper",
         "ours": " · ".join(coverage.values()) or None,
         "ours source": "eval/*.json" if coverage else "empty: no benchmark stage in this run"},
        {"row": "comparability", "paper": None, "paper source": COMPARABILITY, "ours": None, "ours source": COMPARABILITY},
    ]
    return pd.DataFrame(rows)


def paper_table(run_dir: Path | str, reference: Path | str = REFERENCE_FILE) -> pd.DataFrame:
    """`paper_frame`, saved as tables/06_paper_vs_ours.csv and .md."""
    table = paper_frame(run_dir, reference)
    save_table(table, run_dir, "06_paper_vs_ours")
    return table

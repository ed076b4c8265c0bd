"""The chain's stages as library functions: the notebooks and the CLI call these, nothing else.

Each stage reads the config saved in its run, writes its outputs through the run's layout
(`run.layout`) and records itself in the manifest (`Run.stage`: inputs' and outputs' sha256,
config fingerprint, status, facts). A stage refuses to replace a finished output unless
asked (`force=True`, the CLI's `--force`), so a file a reader sees always has one writer a
test can call, and nothing finished is lost by accident.

`resume=True` (the chain's `--resume`, which re-executes the notebook that stopped): a stage
the manifest records done is not run again, it returns what it recorded, read back from its
files (`_recorded`); a stage that stopped half-way continues where that is possible (PAR and
each PAR variant from their last checkpoint, the evaluation from its finished metrics files)
and otherwise starts over, replacing its own partial outputs. A multi-hour run is made across
sessions this way, one `patarm-kit run ... --resume` at a time.

    data -> preview -> sft -> par -> bt -> evaluate -> figures -> policies -> downstream
    (01)     (02)      (03)   (03)   (03)    (04)        (05)       (06)         (06)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import READOUTS, RunConfig
from .results import Run, read_json, write_json

# The library stages each chain notebook runs: the chain refuses to re-run a notebook whose
# stages are recorded as done unless --force, and checks this before any notebook executes.
NOTEBOOK_STAGES = {
    "01_data_pairing": ("data",),
    "02_rubric_generation": ("preview",),
    "03_par_training": ("sft", "par", "par-variants", "learning-curve", "bt"),
    "04_benchmark_eval": ("eval",),
    "05_figures": ("figures",),
    "06_downstream_rlhf": ("policies", "downstream"),
}


def enabled(config: RunConfig, stage: str) -> bool:
    """Whether this config runs library stage `stage`: no warm-up, no PAR (so no variants and no
    learning curve), no curve pairs or no BT judge to evaluate switch a stage off. Notebook 03
    asks this before each stage, and the chain asks it (through notebook_stages) whether a
    notebook is done, so the rule lives here once."""
    switched_off = {
        "sft": not config.sft.enabled,
        "par": not config.par.enabled,
        "par-variants": not config.par.enabled,
        "learning-curve": not (config.par.enabled and config.par.learning_curve_pairs),
        "bt": "bt" not in config.eval.judges,
    }
    return not switched_off.get(stage, False)


def notebook_stages(config: RunConfig, notebook: str) -> list[str]:
    """The library stages `notebook` runs under this config: those NOTEBOOK_STAGES lists that are `enabled`."""
    return [stage for stage in NOTEBOOK_STAGES.get(notebook, ()) if enabled(config, stage)]


def _recorded(run: Run, name: str, resume: bool) -> bool:
    """On resume, whether stage `name` is recorded done, so its results are read back instead of made again."""
    if resume and run.stage_done(name):
        print(f"[{name}] recorded done: read back from its files (--resume)", flush=True)
        return True
    return False


def _save(fig: Any, path: Path) -> Any:
    """Save a figure and close it: the notebook shows the returned figure once, where it wants."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _close(fig)
    return fig


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------- 01 data


@dataclass
class DataStage:
    loaded: list[Any]  # data.LoadedSource per configured source
    written: dict[str, Path]
    figure: Any


def bench_pairs(config: RunConfig) -> dict[str, list[Any]]:
    """Every pair of every bench the run will judge (eval.benches and the votes-curve bench), whole:
    stage 01 removes training pairs that share a prompt with any of them. A `pairs:` bench over a
    training source of the run is its test split, which the split rule already keeps apart."""
    from .bench import get_bench
    from .bench.pairs import PairsBench

    train_sources = {s.name for s in config.data.sources if s.role == "train"}
    specs = list(config.eval.benches) + ([config.eval.votes_curve_bench] if config.eval.votes_curve else [])
    benches = {}
    for spec in dict.fromkeys(specs):
        bench = get_bench(spec)
        if not (isinstance(bench, PairsBench) and bench.source_name in train_sources):
            benches[spec] = bench.load_pairs(config)[0]
    return benches


def data(run: Run, force: bool = False, resume: bool = False) -> DataStage:
    """Load and validate every source, write the split pair files and the length figure (on resume: again,
    a minute's work that gives the same files)."""
    from . import data as data_module
    from .figures import plot_length_distributions

    config, layout = run.config(), run.layout
    figure_path = layout.figure("01_length_distributions")
    force = force or resume
    run.check_stage("data", config, [layout.pairs_dir, figure_path], force)
    fractions = config.data.split_fractions
    loaded = data_module.load_sources(config.data.sources, config.data.data_dir, fractions)  # every row validated first
    benches = bench_pairs(config)
    with run.stage("data", config, outputs=[layout.pairs_dir, figure_path], force=force) as record:
        record.facts["decontaminated"] = data_module.decontaminate(loaded, benches, fractions)
        written = data_module.write_stage_pairs(loaded, fractions, layout.pairs_dir)
        for source in loaded:
            run.update("data", source.spec.name, vars(source.report))
        figure = plot_length_distributions({s.spec.name: s.pairs for s in loaded})
        _save(figure, figure_path)
        record.facts["pairs"] = {name: sum(1 for _ in open(path, encoding="utf-8")) for name, path in written.items()}
    return DataStage(loaded, written, figure)


# ---------------------------------------------------------------- 02 preview: the untrained judge


@dataclass
class PreviewStage:
    prompt: str  # the first judge prompt, as the model reads it
    judgments: list[Any]
    summary: dict[str, Any]
    criteria: dict[str, Any]
    figure: Any


def preview(run: Run, force: bool = False, resume: bool = False) -> PreviewStage:
    """The base judge on a few training pairs: parse rate, criteria and scores before training (on resume:
    again, a few minutes)."""
    from . import judge as judge_module
    from .data import read_pairs, subsample
    from .figures import plot_score_distributions
    from .judges import build_judge
    from .rubrics import criteria_summary, load_rubrics

    config, layout = run.config(), run.layout
    figure_path = layout.figure("02_base_score_distributions")
    outputs = [layout.preview_judgments, layout.preview_metrics, figure_path]
    force = force or resume
    run.check_stage("preview", config, outputs, force)
    train_pairs = read_pairs(layout.pairs("train"))  # bad input stops here, before the stage is recorded
    with run.stage("preview", config, inputs=[layout.pairs("train")], outputs=outputs, force=force) as record:
        sample = subsample(train_pairs, config.judge.preview_pairs)
        requests = judge_module.requests_for_pairs(sample)
        base_judge = build_judge("base", config, config.judge.preview)
        prompt = base_judge.prompt_text(requests[0])[0]
        judgments = base_judge.judge(requests)
        judge_module.save_judgments(judgments, layout.preview_judgments)
        summary = judge_module.judging_summary(judgments)
        criteria = criteria_summary(judgments, load_rubrics(config.judge.rubric_file))
        write_json(layout.preview_metrics, {"judging": summary, "criteria": criteria, "pairs": len(sample),
                                            "engine": base_judge.engine_settings()})
        figure = _save(plot_score_distributions({"base judge": judgments}, title="scores before training"), figure_path)
        record.facts.update(parse_rate=summary["parse_rate"], judgments=len(judgments))
    return PreviewStage(prompt, judgments, summary, criteria, figure)


# ---------------------------------------------------------------- 03 training: SFT warm-up, PAR, BT


@dataclass
class SftStage:
    result: Any  # sft.SftResult
    checks: dict[str, Any] | None


def sft(run: Run, force: bool = False, checks: bool = True, resume: bool = False) -> SftStage:
    """The format warm-up (LoRA SFT) and, with `checks`, base vs warmed-up judge on dev pairs."""
    from . import sft as sft_module

    config, layout = run.config(), run.layout
    if not force and _recorded(run, "sft", resume):
        report = read_json(layout.sft_checks) if checks and layout.sft_checks.is_file() else None
        return SftStage(sft_module.recorded_result(run), report)
    outputs = [layout.sft_adapter, layout.sft_examples, layout.sft_train_log, layout.figure("03_sft_loss")]
    if checks:
        outputs += [layout.sft_checks, layout.sft_check_judgments]
    inputs = [layout.pairs("train"), layout.pairs("dev")] if config.sft.targets != "paper" else []
    with run.stage("sft", config, inputs=inputs, outputs=outputs, force=force or resume) as record:
        result = sft_module.run_sft(config, run)
        record.facts.update(result.facts)
        _save(_loss_figure(result.losses), layout.figure("03_sft_loss"))
        report = sft_module.warmup_checks(config, run, result.adapter_dir) if checks else None
    return SftStage(result, report)


def _loss_figure(losses: list[float]) -> Any:
    import pandas as pd

    ax = pd.Series(losses, name="loss").plot(title="SFT loss (judgment tokens only)", xlabel="logged step")
    return ax.figure


def par(run: Run, force: bool = False, resume: bool = False) -> Any:
    """PAR training (GRPO + LoRA) from the warm-up adapter when SFT is enabled; `resume` continues it."""
    from .train import recorded_par, train_par

    config, layout = run.config(), run.layout
    if not force and _recorded(run, "par", resume):
        return recorded_par(run)
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    if start_adapter is not None and not (start_adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{start_adapter} is missing: run the SFT warm-up first, or set sft.enabled=false")
    inputs = [layout.pairs("train"), *([start_adapter] if start_adapter else [])]
    figure_path = layout.figure("03_par_training")
    with run.stage("par", config, inputs=inputs, outputs=[layout.par_dir, figure_path], force=force, resume=resume) as record:
        result = train_par(config, run, start_adapter, resume)
        record.facts.update(steps=result.global_step, pairs=result.n_pairs)
        if result.metrics and _is_main_process():
            _save(_par_figure(result.metrics), figure_path)
    return result


def par_variants(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """The profile's PAR ablations (par.variants), each from the same warm-up adapter into <run>/par-<name>/.

    On resume, a variant whose training is recorded done is read back and the others continue
    from their last checkpoint: each is as long as PAR itself."""
    from .train import recorded_par, train_par, training_done

    config, layout = run.config(), run.layout
    if not force and _recorded(run, "par-variants", resume):
        return {name: recorded_par(run, f"par-{name}") for name in config.par.variants}
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    outputs = [layout.for_par(f"par-{name}").par_dir for name in config.par.variants]
    results = {}
    with run.stage("par-variants", config, inputs=[layout.pairs("train")], outputs=outputs, force=force,
                   resume=resume) as record:
        for name in config.par.variants:
            judge = f"par-{name}"
            if resume and training_done(run, judge):
                print(f"[par] variant {name}: recorded done, read back (--resume)", flush=True)
                results[name] = recorded_par(run, judge)
            else:
                print(f"[par] variant {name}: {config.par.variants[name]}", flush=True)
                results[name] = train_par(config.par_variant(name), run, start_adapter, resume, judge=judge)
            record.facts[name] = {"steps": results[name].global_step, "pairs": results[name].n_pairs,
                                  "settings": config.par.variants[name]}
    return results


def learning_curve(run: Run, force: bool = False, n_pairs: int | None = None, resume: bool = False) -> Any:
    """Dev accuracy (both readouts) of the warm-up and each saved PAR checkpoint, and its figure.

    `n_pairs` defaults to par.learning_curve_pairs; a run made without a curve can be given one.
    """
    from . import evaluate as evaluation
    from .figures import plot_learning_curve

    config, layout = run.config(), run.layout
    n_pairs = n_pairs or config.par.learning_curve_pairs
    if not n_pairs:
        return None
    figure_path = layout.figure("03_learning_curve")
    if not force and _recorded(run, "learning-curve", resume):
        rows = evaluation.recorded_curve(layout)
        figure = plot_learning_curve(rows)
        _close(figure)
        return rows, figure
    inputs = [layout.pairs("dev"), *(adapter for _, adapter in evaluation.curve_points(config, layout) if adapter)]
    with run.stage("learning-curve", config, inputs=inputs, outputs=[layout.par_curve, figure_path],
                   force=force or resume) as record:
        rows = evaluation.learning_curve(config, layout, n_pairs)
        accuracies = [evaluation.readout_field("acc", readout) for readout in READOUTS]  # one per readout
        record.facts.update(pairs=n_pairs, points=[{"step": r["step"], **{key: r[key] for key in accuracies}} for r in rows])
        figure = _save(plot_learning_curve(rows), figure_path)
    return rows, figure


def score_probe(run: Run, layers: list[int | None], steps: int, learning_rate: float, read_every: int = 10,
                force: bool = False) -> dict[str, Any]:
    """The score-reading probe (score_probe.py) on the run's train and dev pairs, once per `layers`
    setting (None: LoRA in every layer), from the warm-up adapter when SFT is enabled (where PAR
    starts), into probe/score_probe.json and its figure."""
    from . import data
    from .figures import plot_score_probe
    from .score_probe import probe_curve

    config, layout = run.config(), run.layout
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    inputs = [layout.pairs("train"), layout.pairs("dev")]
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
    if start_adapter is not None and not (start_adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{start_adapter} is missing: run the SFT warm-up first, or set sft.enabled=false")
    figure_path = layout.figure("score_probe")
    recorded_inputs = [*inputs, *([start_adapter] if start_adapter else [])]
    with run.stage("score_probe", config, inputs=recorded_inputs, outputs=[layout.score_probe, figure_path], force=force) as record:
        train_pairs, dev_pairs = data.read_pairs(inputs[0]), data.read_pairs(inputs[1])
        settings = {"start": layout.relative(start_adapter) if start_adapter else "fresh LoRA adapter",
                    "steps": steps, "learning_rate": learning_rate, "read_every": read_every,
                    "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs),
                    "pairs_per_step": config.par.pairs_per_step, "samples": config.par.rollouts.n}
        curves = {"all" if n is None else str(n):
                  probe_curve(config, train_pairs, dev_pairs, n, steps, learning_rate, read_every, start_adapter)
                  for n in layers}
        write_json(layout.score_probe, {"settings": settings, "trainable_layers": curves})
        record.facts.update(settings=settings, last={name: curve[-1] for name, curve in curves.items()})
        _save(plot_score_probe(curves), figure_path)
    return curves


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


# PAR's per-step log, as notebook 03 plots it: what the rewards do, then whether GRPO still has
# something to learn from (groups with reward variance, pairs that are not ties, spread of scores
# and of the evaluations' first words). Older runs' logs lack the later panels: they are left out.
PAR_PANELS = ("reward_mean", "pair_accuracy", "parse_rate", "zero_std_group_share", "tie_rate", "score_entropy",
              "band_top_share", "kl", "completion_length_mean", "seconds_per_step")  # kl: with par.beta > 0


def _par_figure(metrics: list[dict[str, Any]]) -> Any:
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


def bt(run: Run, force: bool = False, resume: bool = False) -> Any:
    """The scalar Bradley-Terry baseline on the run's training pairs (on resume: read back when done, else again)."""
    from .bt import recorded_bt, train_bt
    from .data import read_pairs

    config, layout = run.config(), run.layout
    if not force and _recorded(run, "bt", resume):
        return recorded_bt(run.manifest()["stages"]["bt"]["facts"])
    force = force or resume
    run.check_stage("bt", config, [layout.bt_adapter], force)
    pairs = read_pairs(layout.pairs("train"))  # bad input stops here, before the stage is recorded
    with run.stage("bt", config, inputs=[layout.pairs("train")], outputs=[layout.bt_adapter], force=force) as record:
        result = train_bt(config, pairs, layout.bt_adapter)
        record.facts.update(result.summary())
    return result


# ---------------------------------------------------------------- 04 evaluation


@dataclass
class EvalStage:
    results: list[dict[str, Any]]
    table: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    votes_curve: list[dict[str, Any]]


def evaluate(run: Run, force: bool = False, resume: bool = False) -> EvalStage:
    """Every judge of the profile on every benchmark, paired differences and the votes curve.

    On resume, an evaluation whose metrics file is written (the last thing `evaluate` writes) is
    read back, and the others are judged; recorded done, the whole stage is read back."""
    from . import evaluate as evaluation
    from .judges import RUN_ALIASES

    config, layout = run.config(), run.layout
    plan = evaluation.suite_plan(config, layout)
    if not force and _recorded(run, "eval", resume):
        summary = read_json(layout.benchmarks_summary)
        results = [read_json(out) for *_, out in plan]
        return EvalStage(results, summary["table"], summary["paired"], summary["votes_curve"])
    metrics_files = [out for *_, out in plan] + [f for f in [evaluation.votes_curve_file(config, layout)] if f]
    outputs = [*metrics_files, *map(layout.judgments_of, metrics_files), layout.benchmarks_summary]
    inputs = sorted({layout.adapter(judge) for judge, *_ in plan if judge in RUN_ALIASES})
    with run.stage("eval", config, inputs=inputs, outputs=outputs, force=force, resume=resume) as record:
        results = evaluation.run_suite(config, layout, keep_finished=resume)
        curve = evaluation.votes_curve(config, layout, keep_finished=resume)
        summary = write_benchmarks_summary(run, results, curve)
        record.facts["evaluations"] = len(results)
    return EvalStage(results, summary["table"], summary["paired"], curve)


def write_benchmarks_summary(run: Run, results: list[dict[str, Any]], curve: list[dict[str, Any]]) -> dict[str, Any]:
    """metrics/04_benchmarks.json: the comparison table, paired differences and votes curve (verify rebuilds it)."""
    from . import evaluate as evaluation

    config = run.config()
    summary = {
        "table": [evaluation.summary_row(m) for m in results],
        "paired": evaluation.paired_differences(results, config.eval.paired, config.eval.n_boot, config.seed),
        "votes_curve": curve,
    }
    write_json(run.layout.benchmarks_summary, summary)
    return summary


# ---------------------------------------------------------------- 05 figures, tables and the summary


def figures(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Figures (with their data as CSV), tables and SUMMARY.md, from the run's results files only (on
    resume: drawn again, seconds of work)."""
    from . import figures as drawing
    from .summary import write_summary

    config, layout = run.config(), run.layout
    outputs = [*layout.figures_dir.glob("05_*"), layout.tables_dir, layout.summary]
    with run.stage("figures", config, inputs=_result_files(run), outputs=outputs, force=force or resume) as record:
        made = {
            "par_curves": drawing.plot_par_curves(run.dir),
            "benchmark_bars": drawing.plot_benchmark_bars(run.dir),
            "benchmark_table": drawing.benchmark_table(run.dir),
            "rmbench_matrices": drawing.plot_rmbench_matrices(run.dir),
            "votes_curve": drawing.plot_votes_curve(run.dir),
            "score_shift": drawing.plot_score_shift(run.dir),
            "paper_table": drawing.paper_table(run.dir),
        }
        for value in made.values():
            if hasattr(value, "savefig"):
                _close(value)
        write_summary(run.dir)
        record.extra_outputs += [*layout.figures_dir.glob("05_*"), layout.tables_dir, layout.summary]
        record.facts["drawn"] = sorted(name for name, value in made.items() if value is not None)
    return made


def _result_files(run: Run) -> list[Path]:
    """What stage 05 reads: evaluation metrics, the benchmark summary, training logs, checks and
    the downstream summary."""
    layout = run.layout
    return [*sorted(layout.eval_dir.glob("*.json")), layout.benchmarks_summary, layout.par_metrics,
            layout.sft_checks, layout.preview_judgments, layout.downstream_summary]


# ---------------------------------------------------------------- 06 downstream RLHF


def policies(run: Run, force: bool = False) -> dict[str, Any]:
    """One GRPO + LoRA policy per rewarder (policy.rewarders), same prompts and settings, into <run>/policy/."""
    from .policy import train_policy

    config, layout = run.config(), run.layout
    rewarders = config.policy.rewarders
    inputs = [layout.adapter(r) for r in rewarders if r in ("sft", "par") or r.startswith("par-")]
    figure_path = layout.figure("06_policy_rewards")
    outputs = [*(layout.policy_dir(r) for r in rewarders), figure_path]
    results = {}
    with run.stage("policies", config, inputs=inputs, outputs=outputs, force=force) as record:
        for rewarder in rewarders:
            print(f"[policy] rewarded by {rewarder}", flush=True)
            results[rewarder] = train_policy(config, run, rewarder)
            record.facts[rewarder] = {"steps": results[rewarder].global_step, "prompts": results[rewarder].n_prompts}
        if _is_main_process():
            _save(_policy_figure({r: result.metrics for r, result in results.items()}), figure_path)
    return results


def _policy_figure(metrics: dict[str, list[dict[str, Any]]]) -> Any:
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


def downstream(run: Run, force: bool = False) -> dict[str, Any]:
    """IFEval on the untrained policy and on every trained one, and the paired differences between them."""
    from .policy import downstream_summary, evaluate_policy, infobench, policy_names

    config, layout = run.config(), run.layout
    names = policy_names(config)
    metrics_files = [layout.ifeval_metrics(p) for p in names]
    outputs = [*metrics_files, *map(layout.judgments_of, metrics_files), *map(layout.ifeval_responses, names),
               *map(layout.infobench_metrics, names), layout.infobench_record, layout.downstream_summary]
    inputs = [layout.policy_adapter(r) for r in config.policy.rewarders]
    with run.stage("downstream", config, inputs=inputs, outputs=outputs, force=force) as record:
        for policy in names:
            print(f"[downstream] IFEval on the {policy} policy", flush=True)
            evaluate_policy(config, run, policy)
        record.facts["infobench"] = infobench(config, run)
        write_json(layout.infobench_record, record.facts["infobench"])
        print(f"[downstream] InFoBench: {record.facts['infobench']['status']} {record.facts['infobench'].get('why', '')}")
        summary = downstream_summary(run)
        write_json(layout.downstream_summary, summary)
        record.facts["policies"] = names
    if _is_main_process() and run.stage_done("figures"):
        # Notebook 06 comes after 05 when the notebooks run in their numbered order: the summary
        # and tables 05 drew have no downstream rows yet, so they are drawn again from the files.
        print("[downstream] the run's figures predate this stage: drawing them again with the downstream table")
        figures(run, force=True)
    return summary

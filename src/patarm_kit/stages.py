"""The chain's stages as library functions: the notebooks and the CLI call these, nothing else.

Each stage reads the config saved in its run, writes its outputs through the run's layout and
records itself in the manifest (`Run.stage`: inputs' and outputs' sha256, config, status, facts).
It refuses to replace a finished output unless asked (`force=True`, the CLI's `--force`), so a file
a reader sees has one writer a test can call. A switched-off stage (`RunConfig.why_off`) says so and does nothing.

`resume=True` (the chain's `--resume`): a stage recorded done returns what it recorded, read
back from its files (`_recorded`); one that stopped half-way continues where it can (PAR from
its last checkpoint, the evaluation from its finished metrics files), else starts over: a
multi-hour run is made across sessions, one `patarm-kit run ... --resume` at a time.

    data -> preview -> sft -> par -> bt -> evaluate -> policies -> downstream -> figures
    (01)     (02)      (03)   (03)   (03)    (04)        (05)         (05)        (06)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from patarm_kit.config.build import par_variant
from patarm_kit.config.rules import READOUTS
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.loading import load_sources
from patarm_kit.data.pairs import read_pairs, subsample
from patarm_kit.data.policy_prompts import read_policy_prompts, write_policy_prompts
from patarm_kit.data.stage import decontaminate, write_stage_pairs
from patarm_kit.evaluation import curve as learning_curves
from patarm_kit.evaluation import evaluate as evaluation
from patarm_kit.evaluation.benches import bench_files, bench_pairs
from patarm_kit.evaluation.downstream import downstream_summary, evaluate_policy, infobench, policy_names
from patarm_kit.evaluation.warmup_checks import warmup_checks
from patarm_kit.judging.judge import judging_summary, prompt_judge, read_judgments, requests_for_pairs, save_judgments
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.registry import build_judge
from patarm_kit.judging.rubrics import criteria_summary, load_rubrics
from patarm_kit.report.figures import (
    FIGURE_DATA,
    plot_benchmark_bars,
    plot_learning_curve,
    plot_length_distributions,
    plot_par_curves,
    plot_rmbench_matrices,
    plot_score_distributions,
    plot_score_probe,
    plot_score_shift,
    plot_votes_curve,
)
from patarm_kit.report.paper import paper_table
from patarm_kit.report.summary import write_summary
from patarm_kit.report.tables import benchmark_table
from patarm_kit.report.training_figures import plot_par_steps, plot_policy_rewards, plot_sft_loss
from patarm_kit.runs.env import is_main_process
from patarm_kit.runs.files import read_json, write_json
from patarm_kit.runs.layout import RunLayout, is_trained_judge
from patarm_kit.runs.run import Run
from patarm_kit.training.bt import recorded_bt, train_bt
from patarm_kit.training.checkpoints import training_done
from patarm_kit.training.par import recorded_par, train_par
from patarm_kit.training.policies import recorded_policy, train_policy
from patarm_kit.training.score_probe import probe_curve
from patarm_kit.training.sft import recorded_result, run_sft


def enabled(config: RunConfig, stage: str) -> bool:
    """Whether this config runs library stage `stage` (see `RunConfig.why_off`)."""
    return config.why_off(stage) is None


def _switched_off(config: RunConfig, stage: str) -> bool:
    """A switched-off stage says so in one line and does nothing: no record, no file."""
    why = config.why_off(stage)
    if why:
        print(f"[{stage}] nothing to do: {why}", flush=True)
    return why is not None


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
    return _closed(fig)


def _closed(fig: Any) -> Any:
    """A figure drawn for the notebook to show (a recorded stage read back), closed so that it shows once."""
    plt.close(fig)
    return fig


# ---------------------------------------------------------------- 01 data


@dataclass
class DataStage:
    loaded: list[Any]  # data.LoadedSource per configured source
    written: dict[str, Path]
    figure: Any


def data(run: Run, force: bool = False, resume: bool = False) -> DataStage:
    """Every source validated, then the pair files (splits, one per bench) and the length figure.
    On resume a finished stage is made again in a scratch folder and must match its record
    (`Run.restore_outputs`): pair files a committed run left out come back, nothing is re-recorded."""
    config, layout = run.config(), run.layout
    figure_path = layout.figure("01_length_distributions")
    recorded = not force and _recorded(run, "data", resume)
    if not recorded:
        run.check_stage("data", config, [layout.pairs_dir, figure_path], force or resume)
    fractions = config.data.split_fractions
    loaded = load_sources(config.data.sources, config.data.data_dir, fractions)  # every row validated first
    benches = bench_pairs(config)
    decontaminated = decontaminate(loaded, benches, fractions)
    figure = plot_length_distributions({s.spec.name: s.pairs for s in loaded})
    if recorded:
        restored = run.restore_outputs("data", lambda scratch: _write_pairs(config, loaded, benches, RunLayout(scratch)).values())
        return DataStage(loaded, {path.name: path for path in restored}, _closed(figure))
    with run.stage("data", config, outputs=[layout.pairs_dir, figure_path], force=force or resume) as record:
        record.facts["decontaminated"] = decontaminated
        written = _write_pairs(config, loaded, benches, layout)
        for source in loaded:
            run.update("data", source.spec.name, vars(source.report))
        _save(figure, figure_path)
        record.facts["pairs"] = {name: sum(1 for _ in open(path, encoding="utf-8")) for name, path in written.items()}
    return DataStage(loaded, written, figure)


def _write_pairs(config: RunConfig, loaded: list[Any], benches: dict[str, Any], layout: RunLayout) -> dict[str, Path]:
    """Stage 01's files into `layout`: the splits, one file per bench, the policies' prompts."""
    judged = {layout.bench_pairs(spec).name: pairs for spec, pairs in bench_files(config, loaded, benches).items()}
    return {**write_stage_pairs(loaded, config.data.split_fractions, layout.pairs_dir, judged),
            **write_policy_prompts(config, layout.policy_prompts)}


# ---------------------------------------------------------------- 02 preview: the untrained judge


@dataclass
class PreviewStage:
    prompt: str  # the first judge prompt, as the model reads it
    judgments: list[Any]
    summary: dict[str, Any]
    criteria: dict[str, Any]
    figure: Any


def preview(run: Run, force: bool = False, resume: bool = False) -> PreviewStage:
    """The base judge on a few training pairs: parse rate, criteria and scores before training."""
    config, layout = run.config(), run.layout
    figure_path = layout.figure("02_base_score_distributions")
    outputs = [layout.preview_judgments, layout.preview_metrics, figure_path]
    requests = requests_for_pairs(subsample(read_pairs(layout.pairs("train")), config.judge.preview_pairs))  # bad input stops here
    if not force and _recorded(run, "preview", resume):  # the prompt rendered again by the tokenizer alone
        metrics, judgments = read_json(layout.preview_metrics), read_judgments(layout.preview_judgments)
        prompt = prompt_judge(config, load_tokenizer(config.model)).prompt_text(requests[0])[0]
        figure = _closed(plot_score_distributions({"base judge": judgments}, title="scores before training"))
        return PreviewStage(prompt, judgments, metrics["judging"], metrics["criteria"], figure)
    run.check_stage("preview", config, outputs, force or resume)
    with run.stage("preview", config, inputs=[layout.pairs("train")], outputs=outputs, force=force or resume) as record:
        base_judge = build_judge("base", config, config.judge.preview)
        prompt = base_judge.prompt_text(requests[0])[0]
        judgments = base_judge.judge(requests)
        save_judgments(judgments, layout.preview_judgments)
        summary = judging_summary(judgments)
        criteria = criteria_summary(judgments, load_rubrics(config.judge.rubric_file))
        write_json(layout.preview_metrics, {"judging": summary, "criteria": criteria, "pairs": len(requests) // 2,
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
    config, layout = run.config(), run.layout
    if _switched_off(config, "sft"):
        return None
    if not force and _recorded(run, "sft", resume):
        report = read_json(layout.sft_checks) if checks and layout.sft_checks.is_file() else None
        return SftStage(recorded_result(run), report)
    outputs = [layout.sft_adapter, layout.sft_examples, layout.sft_train_log, layout.figure("03_sft_loss")]
    if checks:
        outputs += [layout.sft_checks, layout.sft_check_judgments]
    inputs = [layout.pairs("train"), layout.pairs("dev")] if config.sft.targets != "paper" else []
    with run.stage("sft", config, inputs=inputs, outputs=outputs, force=force or resume) as record:
        result = run_sft(config, run)
        record.facts.update(result.facts)
        if is_main_process():  # under accelerate the other processes are done once the adapter is saved
            _save(plot_sft_loss(result.losses), layout.figure("03_sft_loss"))
        report = warmup_checks(config, run, result.adapter_dir) if checks and is_main_process() else None
    return SftStage(result, report)


def par(run: Run, force: bool = False, resume: bool = False) -> Any:
    """PAR training (GRPO + LoRA) from the warm-up adapter when SFT is enabled; `resume` continues it."""
    config, layout = run.config(), run.layout
    if _switched_off(config, "par"):
        return None
    if not force and _recorded(run, "par", resume):
        return recorded_par(run)
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    inputs = [layout.pairs("train"), *([start_adapter] if start_adapter else [])]
    figure_path = layout.figure("03_par_training")
    with run.stage("par", config, inputs=inputs, outputs=[layout.par_dir, figure_path], force=force, resume=resume) as record:
        result = train_par(config, run, start_adapter, resume)
        record.facts.update(steps=result.global_step, pairs=result.n_pairs)
        if result.metrics and is_main_process():
            _save(plot_par_steps(result.metrics), figure_path)
    return result


def par_variants(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """The profile's PAR ablations (par.variants), each from the same warm-up adapter into <run>/par-<name>/.

    On resume, a variant whose training is recorded done is read back and the others continue
    from their last checkpoint: each is as long as PAR itself."""
    config, layout = run.config(), run.layout
    if _switched_off(config, "par-variants"):
        return {}
    if not force and _recorded(run, "par-variants", resume):
        return {name: recorded_par(run, f"par-{name}") for name in config.par.variants}
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    outputs = [layout.for_par(f"par-{name}").par_dir for name in config.par.variants]
    results = {}
    with run.stage("par-variants", config, inputs=[layout.pairs("train")], outputs=outputs, force=force, resume=resume) as record:
        for name in config.par.variants:
            judge = f"par-{name}"
            if resume and training_done(run, judge):
                print(f"[par] variant {name}: recorded done, read back (--resume)", flush=True)
                results[name] = recorded_par(run, judge)
            else:
                print(f"[par] variant {name}: {config.par.variants[name]}", flush=True)
                results[name] = train_par(par_variant(config, name), run, start_adapter, resume, judge=judge)
            record.facts[name] = {"steps": results[name].global_step, "pairs": results[name].n_pairs,
                                  "settings": config.par.variants[name]}
    return results


def learning_curve(run: Run, force: bool = False, n_pairs: int | None = None, resume: bool = False) -> Any:
    """Dev accuracy (both readouts) of the warm-up and each saved PAR checkpoint, and its figure.

    `n_pairs` defaults to par.learning_curve_pairs; a run made without a curve can be given one.
    """
    config, layout = run.config(), run.layout
    if not (n_pairs and config.par.enabled) and _switched_off(config, "learning-curve"):
        return None
    n_pairs = n_pairs or config.par.learning_curve_pairs
    figure_path = layout.figure("03_learning_curve")
    if not force and _recorded(run, "learning-curve", resume):
        rows = learning_curves.recorded_curve(layout)
        return rows, _closed(plot_learning_curve(rows))
    inputs = [layout.pairs("dev"), *(adapter for _, adapter in learning_curves.curve_points(config, layout) if adapter)]
    with run.stage("learning-curve", config, inputs=inputs, outputs=[layout.par_curve, figure_path], force=force or resume) as record:
        rows = learning_curves.learning_curve(config, layout, n_pairs)
        accuracies = [evaluation.readout_field("acc", readout) for readout in READOUTS]  # one per readout
        record.facts.update(pairs=n_pairs, points=[{"step": r["step"], **{key: r[key] for key in accuracies}} for r in rows])
        figure = _save(plot_learning_curve(rows), figure_path)
    return rows, figure


def score_probe(run: Run, layers: list[int | None], steps: int, learning_rate: float, read_every: int = 10,
                force: bool = False) -> dict[str, Any]:
    """The score-reading probe (training/score_probe.py) on the run's train and dev pairs, once per `layers`
    setting (None: LoRA in every layer), from the warm-up adapter when SFT is enabled (where PAR
    starts), into probe/score_probe.json and its figure."""
    config, layout = run.config(), run.layout
    start_adapter = layout.sft_adapter if config.sft.enabled else None
    inputs = [layout.pairs("train"), layout.pairs("dev"), *([start_adapter] if start_adapter else [])]
    figure_path = layout.figure("score_probe")
    with run.stage("score_probe", config, inputs=inputs, outputs=[layout.score_probe, figure_path], force=force) as record:
        train_pairs, dev_pairs = read_pairs(inputs[0]), read_pairs(inputs[1])
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


def bt(run: Run, force: bool = False, resume: bool = False) -> Any:
    """The scalar Bradley-Terry baseline on the run's training pairs (on resume: read back when done, else again)."""
    config, layout = run.config(), run.layout
    if _switched_off(config, "bt"):
        return None
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
    config, layout = run.config(), run.layout
    plan = evaluation.suite_plan(config, layout)
    if not force and _recorded(run, "eval", resume):
        summary = read_json(layout.benchmarks_summary)
        results = [read_json(out) for *_, out in plan]
        return EvalStage(results, summary["table"], summary["paired"], summary["votes_curve"])
    metrics_files = [out for *_, out in plan] + [f for f in [evaluation.votes_curve_file(config, layout)] if f]
    outputs = [*metrics_files, *map(layout.judgments_of, metrics_files), layout.benchmarks_summary]
    inputs = sorted({layout.adapter(judge) for judge, *_ in plan if is_trained_judge(judge)})
    with run.stage("eval", config, inputs=inputs, outputs=outputs, force=force, resume=resume) as record:
        results = evaluation.run_suite(config, layout, keep_finished=resume)
        curve = evaluation.votes_curve(config, layout, keep_finished=resume)
        summary = evaluation.write_benchmarks_summary(config, run.layout, results, curve)
        record.facts["evaluations"] = len(results)
    return EvalStage(results, summary["table"], summary["paired"], curve)


# ---------------------------------------------------------------- 06 figures, tables and the summary (last)


def figures(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Figures (with their data as CSV), tables and SUMMARY.md from the run's result files (resume: drawn again)."""
    config, layout = run.config(), run.layout
    outputs = [*_figure_files(layout), layout.tables_dir, layout.summary]
    with run.stage("figures", config, inputs=_result_files(run), outputs=outputs, force=force or resume) as record:
        made = {
            "par_curves": plot_par_curves(run.dir),
            "benchmark_bars": plot_benchmark_bars(run.dir),
            "benchmark_table": benchmark_table(run.dir),
            "rmbench_matrices": plot_rmbench_matrices(run.dir),
            "votes_curve": plot_votes_curve(run.dir),
            "score_shift": plot_score_shift(run.dir),
            "paper_table": paper_table(run.dir),
        }
        for value in made.values():
            if hasattr(value, "savefig"):
                plt.close(value)
        write_summary(run.dir)
        record.extra_outputs += _figure_files(layout)  # under the names they were drawn with (layout._as_made)
        record.facts["drawn"] = sorted(name for name, value in made.items() if value is not None)
    return made


def _figure_files(layout: Any) -> list[Path]:
    """The files of the figures stage's figures (each drawn or not): PNG, SVG and the data CSV."""
    return [path for name in FIGURE_DATA for path in (layout.figure(name), layout.figure(name, "svg"), layout.figure_data(name))]


def _result_files(run: Run) -> list[Path]:
    """What stage 06 reads, where the run has it: eval metrics and summary, training logs, checks, downstream summary."""
    layout = run.layout
    return [path for path in [*sorted(layout.eval_dir.glob("*.json")), layout.benchmarks_summary, layout.par_metrics,
                              layout.sft_checks, layout.preview_judgments, layout.downstream_summary] if path.is_file()]


# ---------------------------------------------------------------- 05 downstream RLHF


def policies(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """One GRPO + LoRA policy per rewarder (policy.rewarders) into <run>/policy/ (resume: read back when done)."""
    config, layout = run.config(), run.layout
    rewarders = config.policy.rewarders
    if _switched_off(config, "policies"):
        return {}
    if not force and _recorded(run, "policies", resume):
        return {rewarder: recorded_policy(run, rewarder) for rewarder in rewarders}
    read_policy_prompts(layout.policy_prompts)  # stage 01's prompts: missing or bad stops here, before any record
    inputs = [layout.policy_prompts, *(layout.adapter(r) for r in rewarders if is_trained_judge(r))]
    figure_path = layout.figure("05_policy_rewards")
    outputs = [*(layout.policy_dir(r) for r in rewarders), figure_path]
    results = {}
    with run.stage("policies", config, inputs=inputs, outputs=outputs, force=force or resume) as record:
        for rewarder in rewarders:
            print(f"[policy] rewarded by {rewarder}", flush=True)
            results[rewarder] = train_policy(config, run, rewarder)
            record.facts[rewarder] = {"steps": results[rewarder].global_step, "prompts": results[rewarder].n_prompts}
        if is_main_process():
            _save(plot_policy_rewards({r: result.metrics for r, result in results.items()}), figure_path)
    return results


def downstream(run: Run, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """IFEval on the untrained and every trained policy, and their paired differences (resume: read back when done)."""
    config, layout = run.config(), run.layout
    if _switched_off(config, "downstream"):
        return None
    if not force and _recorded(run, "downstream", resume):
        return read_json(layout.downstream_summary)
    names = policy_names(config)
    metrics_files = [layout.ifeval_metrics(p) for p in names]
    outputs = [*metrics_files, *map(layout.judgments_of, metrics_files), *map(layout.ifeval_responses, names),
               *map(layout.infobench_metrics, names), layout.infobench_record, layout.downstream_summary]
    inputs = [layout.policy_adapter(r) for r in config.policy.rewarders]
    with run.stage("downstream", config, inputs=inputs, outputs=outputs, force=force or resume) as record:
        for policy in names:
            print(f"[downstream] IFEval on the {policy} policy", flush=True)
            evaluate_policy(config, run, policy)
        record.facts["infobench"] = infobench(config, run)
        write_json(layout.infobench_record, record.facts["infobench"])
        print(f"[downstream] InFoBench: {record.facts['infobench']['status']} {record.facts['infobench'].get('why', '')}")
        summary = downstream_summary(run)
        write_json(layout.downstream_summary, summary)
        record.facts["policies"] = names
    return summary

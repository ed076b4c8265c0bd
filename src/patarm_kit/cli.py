"""The `patarm-kit` command: run the chain headless, or one stage, or inspect data."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from patarm_kit import stages
from patarm_kit.chain import ChainError, run_chain
from patarm_kit.config.loader import absolute_profile, load_config, parse_overrides
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import SourceConfig
from patarm_kit.data.loading import load_sources
from patarm_kit.data.pairs import DataError
from patarm_kit.data.splits import count_pairs
from patarm_kit.evaluation.downstream import downstream_frame, paired_frame
from patarm_kit.evaluation.evaluate import evaluate, format_metrics
from patarm_kit.evaluation.ifeval import evaluate_responses, format_ifeval
from patarm_kit.judging.judge import EvalError
from patarm_kit.judging.models import ModelError
from patarm_kit.judging.rubrics import RubricError
from patarm_kit.plan import plan_report
from patarm_kit.report.browse import show_items
from patarm_kit.report.export import FORMATS, export_rewardbench
from patarm_kit.report.summary import render_summary, summary_json
from patarm_kit.report.verify import compare_runs, verify_run
from patarm_kit.runs.env import is_main_process, launched_processes
from patarm_kit.runs.files import RunError
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.lock import writer_lock
from patarm_kit.runs.run import Run, refuse_writing_into_run
from patarm_kit.training.checkpoints import leave_process_group
from patarm_kit.training.sft import SftError

# Bad input, not a bug: the kit's own error classes (each message names the file, row or key)
# and what reading a file raises (OSError: missing, a folder, no permission; JSON or UTF-8
# errors from files read outside the loaders). Anything else is a bug and keeps its traceback.
BAD_INPUT = (ConfigError, DataError, EvalError, SftError, RubricError, RunError, ChainError, ModelError,
             OSError, json.JSONDecodeError, UnicodeDecodeError)


def one_line(err: Exception) -> str:
    """An error as one line; an OS error as `<file>: <reason>`."""
    text = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename and err.strerror else str(err)
    return " ".join(text.split())


def _one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BAD_INPUT as err:
            typer.echo(f"error: {one_line(err)}", err=True)
            raise typer.Exit(code=2) from None
    return guarded


class KitTyper(typer.Typer):
    """A Typer app whose every command ends bad input with one `error:` line and exit code 2."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(*args, **kwargs)
        return lambda command: register(_one_line_errors(command))


def _absolute(path: Optional[str]) -> Optional[str]:
    """A path flag against the caller's directory (notebooks run from notebooks/)."""
    return str(Path(path).expanduser().resolve()) if path else path


app = KitTyper(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def run(
    profile: str = typer.Option("cpu", callback=absolute_profile, help="profile name in configs/ or a YAML path"),
    run_name: str = typer.Option(..., help="results/<run-name> receives the manifest and executed notebooks"),
    only: Optional[list[str]] = typer.Option(None, help="run only these notebooks (repeatable)"),
    start_from: Optional[str] = typer.Option(None, "--from", help="start the chain at this notebook"),
    data_dir: Optional[str] = typer.Option(None, callback=_absolute, help="data directory (default: $PATARM_DATA_DIR or ../shared/data)"),
    resume: bool = typer.Option(False, help="continue an existing run: finished notebooks are skipped"),
    force: bool = typer.Option(False, "--force", help="run the selected notebooks again, replacing their outputs"),
    refresh: bool = typer.Option(False, "--refresh", help="execute a finished run's notebooks again from its recorded stages (nothing is retrained)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Run the profile's notebooks in order with papermill."""

    done = run_chain(profile, run_name, parse_overrides(set_ or []), data_dir, only, start_from, resume, force, refresh)
    typer.echo(f"run complete: {done.dir}")


@app.command()
def data(
    profile: str = typer.Option("cpu", callback=absolute_profile, help="profile whose sources are counted"),
    source: Optional[list[str]] = typer.Option(None, help="validate and count this file or hub id instead"),
    data_dir: Optional[str] = typer.Option(None, callback=_absolute, help="data directory"),
    skip_bad_rows: bool = typer.Option(False, help="with --source: skip bad rows and report them"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Pair counts per source, task and split; validates every row on the way."""

    config = load_config(profile)
    specs = [SourceConfig(name=s, bad_rows="skip" if skip_bad_rows else "error") for s in source] if source else config.data.sources
    summary = {
        loaded.spec.name: {
            "rows": loaded.report.rows,
            "pairs": loaded.report.pairs,
            "duplicates": loaded.report.duplicates,
            "skipped": loaded.report.skipped,
            "missing_files": loaded.report.missing_files,
            **count_pairs(loaded.pairs, config.data.split_fractions),
        }
        for loaded in load_sources(specs, data_dir or config.data.data_dir, config.data.split_fractions)
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for name, facts in summary.items():
        typer.echo(f"{name}: {facts['rows']} rows read, {facts['pairs']} pairs kept, {facts['duplicates']} duplicates")
        for reason, count in facts["skipped"].items():
            typer.echo(f"  skipped {count}: {reason}")
        for missing in facts["missing_files"]:
            typer.echo(f"  missing file: {missing}")
        for key in ("task", "split"):
            typer.echo(f"  by {key}: " + ", ".join(f"{k} {v}" for k, v in facts[key].items()))


@contextlib.contextmanager
def _stage_run(run_dir: str, profile: Optional[str], set_: Optional[list[str]], stage: Optional[str] = None) -> Iterator[Run]:
    """The run a stage command works on, held under the run's writer lock for the whole command.
    An existing run keeps its own config (a --profile or --set that would change it is refused
    before anything runs); a new folder becomes a new run made with --profile (default cpu) and --set.
    A `stage` that the run's config switches off ends the command with "nothing to do" (exit 0), before
    any run or lock file is made."""

    if not run_dir.strip():
        raise RunError("--run-dir is empty: give the run folder (results/<run-name>)")
    folder = Path(run_dir).resolve()
    overrides = parse_overrides(set_ or [])
    existing = Run.open(folder) if RunLayout(folder).manifest.exists() else None
    if existing is None and launched_processes() > 1:  # every process would make the folder and write a manifest at once
        raise RunError(f"{folder}: no run here, and {launched_processes()} processes cannot create one together; "
                       "create it first in one process (patarm-kit run --profile P --run-name N --only 01_data_pairing)")
    # Every input is checked before the lock file is made: bad input leaves nothing behind. An existing
    # run keeps its own config; a profile or --set given for it is loaded only to be compared.
    config = None
    if existing is None or profile or overrides:
        config = load_config(profile or (existing.manifest()["profile"] if existing else "cpu"), overrides)
    if existing is not None and config is not None:
        existing.check_config(config)
    why = stage and (existing.config() if existing else config).why_off(stage)
    if why:
        typer.echo(f"nothing to do: {why} in {'run ' + folder.name if existing else 'this config'}; nothing written")
        raise typer.Exit(0)
    with writer_lock(folder):
        if existing is not None:
            yield existing
        else:
            run = Run.create(folder.name, config, folder.parent)
            try:
                yield run
            except BaseException:
                if not run.manifest()["stages"]:  # refused before any stage began: no empty run is left behind
                    shutil.rmtree(run.dir)
                raise
    leave_process_group()  # launched as several processes: all leave their group together


def _say(text: str) -> None:
    """A training command's closing line, printed once: under `accelerate launch` every process runs the command."""
    if is_main_process():
        typer.echo(text)


RUN_DIR = typer.Option(..., help="the run folder (results/<run-name>); a new folder starts a new run")
PROFILE = typer.Option(None, callback=absolute_profile, help="profile of a new run (default cpu); an existing run keeps its own")
FORCE = typer.Option(False, "--force", help="replace this stage's finished outputs")
SET = typer.Option(None, "--set", help="override a config key of a new run: section.key=value")


@app.command("sft")
def sft_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    checks: bool = typer.Option(True, help="after training, compare base and warmed-up judge on dev pairs"),
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """Format warm-up: LoRA SFT of the judge into <run>/sft/adapter, then its checks."""

    with _stage_run(run_dir, profile, set_, "sft") as run:
        warmup = stages.sft(run, force=force, checks=checks)
    result = warmup.result
    _say(f"{result.steps} steps in {result.seconds:.0f} s; loss {result.losses[0]:.3f} -> "
         f"{result.final_loss:.3f}; adapter {result.adapter_dir}")
    for name, facts in (warmup.checks or {"judges": {}})["judges"].items():
        low, high = facts["accuracy_ci95"]
        _say(f"  {name}: parse rate {facts['parse_rate']:.1%}, all-equal GRPO groups {facts['all_equal_share']:.1%}, "
             f"pairwise accuracy {facts['accuracy']:.1%} [{low:.1%}, {high:.1%}], "
             f"true facts stated {facts['facts_stated']:.1%}"
             + (f", verdicts {facts['verdicts_stated']:.1%}" if facts.get("verdicts_stated") is not None else ""))


@app.command("train")
def train_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    resume: bool = typer.Option(False, help="continue from the latest complete checkpoint in <run>/par/checkpoints"),
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """PAR training (GRPO + LoRA) into <run>/par; starts from <run>/sft/adapter when SFT is enabled.

    Several GPUs: accelerate launch --config_file configs/accelerate/ddp.yaml -m patarm_kit.cli train ...
    """

    with _stage_run(run_dir, profile, set_, "par") as run:
        result = stages.par(run, force=force, resume=resume)
    last = result.metrics[-1] if result.metrics else {}
    _say(f"{result.global_step} steps; last step: reward {last.get('par/reward_mean')}, pair accuracy "
         f"{last.get('par/pair_accuracy')}; adapter {result.adapter}")


@app.command("probe-score")
def probe_score_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    layers: list[str] = typer.Option(["8", "all"], "--layers", help="LoRA in the top N layers, or 'all'; repeat to compare"),
    steps: int = typer.Option(80, min=1, help="policy-gradient steps per setting"),
    learning_rate: float = typer.Option(1e-4, min=0.0, help="Adam learning rate of the probe's LoRA adapter"),
    read_every: int = typer.Option(10, min=1, help="dev readout every N steps"),
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """Score-reading probe: can PAR's reward, on the score alone, make the judge score by its stated verdicts?
    A new run gets its pairs (stage 01) first."""

    reach = [None if value == "all" else _positive_int(value, "--layers") for value in layers]
    with _stage_run(run_dir, profile, set_) as run:
        if not run.stage_done("data"):
            stages.data(run)
        curves = stages.score_probe(run, reach, steps, learning_rate, read_every, force=force)
    for name, curve in curves.items():
        typer.echo(f"layers {name}: " + ", ".join(f"step {p['step']} {p['accuracy']:.1%} ({p['score_gap']:+.2f})" for p in curve))


def _positive_int(value: str, option: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{option} takes a positive number of layers or 'all', not {value!r}")
    return int(value)


@app.command("train-bt")
def train_bt_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """The scalar Bradley-Terry baseline (LoRA + score head) on the run's training pairs, into <run>/bt/adapter."""

    with _stage_run(run_dir, profile, set_, "bt") as run:
        result = stages.bt(run, force=force)
    _say(f"{result.steps} steps on {result.pairs} pairs in {result.seconds:.0f} s; loss {result.log[0]['loss']:.3f} -> "
         f"{result.final_loss:.3f}; train accuracy {result.train_accuracy:.1%}; adapter {result.adapter_dir}")


@app.command("policies")
def policies_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """Downstream RLHF: one GRPO + LoRA policy per rewarder (policy.rewarders) into <run>/policy/.

    Several GPUs: accelerate launch --config_file configs/accelerate/ddp.yaml -m patarm_kit.cli policies ...
    """

    with _stage_run(run_dir, profile, set_, "policies") as run:
        trained = stages.policies(run, force=force)
    for rewarder, result in trained.items():
        last = result.metrics[-1] if result.metrics else {}
        _say(f"rewarded by {rewarder}: {result.global_step} steps on {result.n_prompts} prompts; "
             f"last step's mean reward {last.get('reward')}; adapter {result.adapter}")


@app.command("downstream")
def downstream_command(
    run_dir: str = RUN_DIR,
    profile: Optional[str] = PROFILE,
    force: bool = FORCE,
    set_: Optional[list[str]] = SET,
) -> None:
    """IFEval on the untrained policy and every trained one (greedy), and the paired differences."""

    with _stage_run(run_dir, profile, set_, "downstream") as run:
        summary = stages.downstream(run, force=force)
    typer.echo(downstream_frame(summary).to_string(index=False))
    typer.echo(paired_frame(summary).to_string(index=False))


@app.command("eval")
def evaluate_command(
    judge: Optional[str] = typer.Option(None, help="length | random | base | adapter:PATH | pairwise | bt:PATH"),
    bench: str = typer.Option(..., help="rmbench | rewardbench | rewardbench2 | pairs:SOURCE | ifeval (with --responses)"),
    out: str = typer.Option(..., help="metrics JSON; the per-item judgments go beside it"),
    responses: Optional[str] = typer.Option(None, callback=_absolute,
                                            help="ifeval: a JSON-lines file of {key, response} to score (no model)"),
    profile: str = typer.Option("cpu", callback=absolute_profile, help="profile name in configs/ or a YAML path"),
    limit: Optional[str] = typer.Option(None, help="items per domain/subset, or 'all'; default: the profile's eval.limit"),
    ties: Optional[str] = typer.Option(None, help="half | zero (default: the profile's eval.ties)"),
    votes: Optional[int] = typer.Option(None, help="judgments per response, averaged (generative judges)"),
    data_dir: Optional[str] = typer.Option(None, callback=_absolute, help="data directory"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out file and its judgments"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Score one judge on one benchmark with the benchmark's own rules and 95% intervals,
    or (--bench ifeval --responses FILE) a policy's responses on IFEval by its own checkers."""

    overrides = parse_overrides(set_ or [])
    if data_dir:
        overrides["data.data_dir"] = data_dir
    config = load_config(profile, overrides)
    if not out.strip():
        raise EvalError("--out is empty: give the metrics file's path (e.g. length-rmbench.json)")
    refuse_writing_into_run(out)  # the eval stage writes a run's evaluations
    if bench == "ifeval" or responses:
        if bench != "ifeval" or not responses or judge:
            raise EvalError("IFEval scores responses, not a judge: --bench ifeval --responses FILE.jsonl (and no --judge)")

        typer.echo(format_ifeval(evaluate_responses(Path(responses), Path(out), config.data.data_dir, config.eval.n_boot,
                                                    config.seed, force)))
        return
    if judge is None:
        raise EvalError("--judge is required (length, random, base, adapter:PATH, pairwise, bt:PATH)")
    if limit is None:
        limit_items = config.eval.limit_for(bench)
    elif limit == "all":
        limit_items = None
    elif limit.isdigit() and int(limit) > 0:
        limit_items = int(limit)
    else:
        raise EvalError(f"--limit must be a positive number or 'all', not {limit!r}")
    metrics = evaluate(config, judge, bench, Path(out), limit_items, ties, votes, force=force)
    typer.echo(format_metrics(metrics))


@app.command()
def verify(
    run_dir: str = typer.Argument(..., help="a run folder (results/<run-name>)"),
    data_dir: Optional[str] = typer.Option(None, callback=_absolute, help="data directory (default: the one the run recorded)"),
) -> None:
    """Recompute every metric from the stored judgments and check the data hashes; exit 1 on any difference."""

    report = verify_run(run_dir, data_dir)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="first run folder"),
    run_b: str = typer.Argument(..., help="second run folder"),
) -> None:
    """Differences between two runs: accuracy and interval per judge and bench, and config keys."""

    differences = compare_runs(run_a, run_b)
    typer.echo(f"A = {run_a}\nB = {run_b}")
    typer.echo("\n".join(f"  {d}" for d in differences) if differences else "  no differences in metrics or config")


@app.command()
def summary(
    run_dir: str = typer.Argument(..., help="a run folder (results/<run-name>)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The run's headline table: accuracy under both tie rules, 95% intervals, n, tie and invalid shares,
    truncated inputs, and the paired differences (what SUMMARY.md shows; nothing is written)."""

    facts = summary_json(run_dir)
    typer.echo(json.dumps(facts, indent=2) if as_json else render_summary(facts), nl=as_json)


@app.command()
def export(
    run_dir: str = typer.Argument(..., help="a run folder (results/<run-name>)"),
    out: str = typer.Option(..., help="a folder for the files (created; not inside the run)"),
    format_: str = typer.Option("rewardbench", "--format", help="rewardbench: the RewardBench (v1 and 2) leaderboard layout"),
) -> None:
    """Each judge's benchmark results in a leaderboard's results layout (nothing is uploaded)."""

    if format_ not in FORMATS:
        raise EvalError(f"--format {format_!r}: expected one of {', '.join(FORMATS)}")
    if not out.strip():
        raise EvalError("--out is empty: give a folder for the exported files")
    refuse_writing_into_run(out)
    for path in export_rewardbench(run_dir, out):
        typer.echo(path)


@app.command("show")
def show_command(run_dir: str = typer.Argument(..., help="a finished run folder, or a committed run's name under results/"),
                 bench: str = typer.Option(..., help="a bench the run evaluated: rmbench, rewardbench, pairs:hh-rlhf, ..."),
                 judge: Optional[list[str]] = typer.Option(None, help="only this judge (repeatable); default: all"),
                 disagree: bool = typer.Option(False, "--disagree", help="only items whose judges' outcomes differ"),
                 n: int = typer.Option(5, "--n", help="at most this many items"),
                 data_dir: Optional[str] = typer.Option(None, callback=_absolute, help="data to rebuild pairs a run did not keep")) -> None:
    """Read a run's items: prompt, responses, rubric, each judge's judgments and scores, and its pair outcome."""
    typer.echo(show_items(run_dir, bench, judge, disagree, n, data_dir=data_dir))


@app.command("plan")
def plan_command(
    profile: str = typer.Option("cpu", callback=absolute_profile, help="profile name in configs/ or a YAML path"),
    gpus: int = typer.Option(8, help="GPUs, one training process each"),
    gpu_memory: float = typer.Option(80.0, help="memory of one GPU in GiB"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Per-GPU memory (DDP, ZeRO-2, ZeRO-3) and tokens of each training stage the profile runs, by formula (plan.py)."""

    typer.echo(plan_report(profile, gpus, gpu_memory, parse_overrides(set_ or [])))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

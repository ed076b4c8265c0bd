"""The `patarm-kit` command: run the chain headless, or one stage, or inspect data."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from .config import ConfigError, load_config, parse_overrides
from .data import DataError, count_pairs, load_sources
from .results import RunExistsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

KNOWN_ERRORS = (ConfigError, DataError, RunExistsError, FileNotFoundError)


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(code=2)


@app.command()
def run(
    profile: str = typer.Option("cpu", help="profile name in configs/ or a YAML path"),
    run_name: str = typer.Option(..., help="results/<run-name> receives the manifest and executed notebooks"),
    only: Optional[list[str]] = typer.Option(None, help="run only these notebooks (repeatable)"),
    start_from: Optional[str] = typer.Option(None, "--from", help="start the chain at this notebook"),
    data_dir: Optional[str] = typer.Option(None, help="data directory (default: $PATARM_DATA_DIR or ../shared/data)"),
    resume: bool = typer.Option(False, help="continue an existing run of that name"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Run the profile's notebooks in order with papermill."""
    from .chain import ChainError, run_chain

    try:
        done = run_chain(profile, run_name, parse_overrides(set_ or []), data_dir, only, start_from, resume)
    except (*KNOWN_ERRORS, ChainError) as err:
        _fail(err)
    typer.echo(f"run complete: {done.dir}")


@app.command()
def data(
    profile: str = typer.Option("cpu", help="profile whose sources are counted"),
    source: Optional[list[str]] = typer.Option(None, help="validate and count this file or hub id instead"),
    data_dir: Optional[str] = typer.Option(None, help="data directory"),
    skip_bad_rows: bool = typer.Option(False, help="with --source: skip bad rows and report them"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Pair counts per source, task and split; validates every row on the way."""
    from .config import SourceConfig

    try:
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
            for loaded in load_sources(specs, data_dir or config.data.data_dir)
        }
    except KNOWN_ERRORS as err:
        _fail(err)
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


@app.command("sft")
def sft_command(
    profile: str = typer.Option("cpu", help="profile name in configs/ or a YAML path"),
    run_dir: str = typer.Option(..., help="a run folder (its pairs/ from notebook 01 are used) or a new one"),
    checks: bool = typer.Option(True, help="after training, compare base and warmed-up judge on dev pairs"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Format warm-up: LoRA SFT of the judge into <run>/sft/adapter, then its checks."""
    from pathlib import Path

    from .results import Run
    from .sft import SftError, run_sft, warmup_checks

    try:
        config = load_config(profile, parse_overrides(set_ or []))
        folder = Path(run_dir)
        run = Run.open(folder) if (folder / "manifest.json").exists() else Run.create(folder.name, config, folder.parent)
        result = run_sft(config, run)
        typer.echo(f"{result.steps} steps in {result.seconds:.0f} s; loss {result.losses[0]:.3f} -> "
                   f"{result.final_loss:.3f}; adapter {result.adapter_dir}")
        report = warmup_checks(config, run, result.adapter_dir) if checks else {"judges": {}}
    except (*KNOWN_ERRORS, SftError) as err:
        _fail(err)
    for name, facts in report["judges"].items():
        low, high = facts["accuracy_ci95"]
        typer.echo(f"  {name}: parse rate {facts['parse_rate']:.1%}, all-equal GRPO groups {facts['all_equal_share']:.1%}, "
                   f"pairwise accuracy {facts['accuracy']:.1%} [{low:.1%}, {high:.1%}]")


@app.command("train")
def train_command(
    profile: str = typer.Option("cpu", help="profile name in configs/ or a YAML path"),
    run_dir: str = typer.Option(..., help="a run folder holding pairs/train.jsonl (notebook 01)"),
    resume: bool = typer.Option(False, help="continue from the latest checkpoint in <run>/par/checkpoints"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """PAR training (GRPO + LoRA) into <run>/par; starts from <run>/sft/adapter when SFT is enabled.

    Several GPUs: accelerate launch --config_file configs/accelerate/ddp.yaml -m patarm_kit.cli train ...
    """
    from pathlib import Path

    from .results import Run
    from .train import train_par

    try:
        config = load_config(profile, parse_overrides(set_ or []))
        run = Run.open(Path(run_dir))
        start_adapter = run.dir / "sft" / "adapter" if config.sft.enabled else None
        if start_adapter and not (start_adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{start_adapter} is missing: run `patarm-kit sft` first, or --set sft.enabled=false")
        result = train_par(config, run, start_adapter, resume)
    except KNOWN_ERRORS + (FileExistsError,) as err:
        _fail(err)
    last = result.metrics[-1] if result.metrics else {}
    typer.echo(f"{result.global_step} steps; last step: reward {last.get('par/reward_mean')}, pair accuracy "
               f"{last.get('par/pair_accuracy')}; adapter {result.adapter}")


@app.command("train-bt")
def train_bt_command(
    profile: str = typer.Option("cpu", help="profile name in configs/ or a YAML path"),
    run_dir: str = typer.Option(..., help="a run folder holding pairs/train.jsonl (notebook 01)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """The scalar Bradley-Terry baseline (LoRA + score head) on the run's training pairs, into <run>/bt/adapter."""
    from .bt import train_bt
    from .data import read_pairs
    from .results import Run, now

    try:
        config = load_config(profile, parse_overrides(set_ or []))
        run = Run.open(run_dir)
        result = train_bt(config, read_pairs(run.dir / "pairs" / "train.jsonl"), run.dir / "bt" / "adapter")
    except KNOWN_ERRORS as err:
        _fail(err)
    run.update("stages", "bt", {"status": "done", "finished": now(), "config": config.to_dict()["bt"], **result.summary()})
    typer.echo(f"{result.steps} steps on {result.pairs} pairs in {result.seconds:.0f} s; loss {result.log[0]['loss']:.3f} -> "
               f"{result.final_loss:.3f}; train accuracy {result.train_accuracy:.1%}; adapter {result.adapter_dir}")


@app.command("eval")
def evaluate_command(
    judge: str = typer.Option(..., help="length | random | base | adapter:PATH | pairwise | bt:PATH"),
    bench: str = typer.Option(..., help="rmbench | rewardbench | pairs:SOURCE"),
    out: str = typer.Option(..., help="metrics JSON; the per-item judgments go beside it"),
    profile: str = typer.Option("cpu", help="profile name in configs/ or a YAML path"),
    limit: Optional[str] = typer.Option(None, help="items per domain/subset, or 'all'; default: the profile's eval.limit"),
    ties: Optional[str] = typer.Option(None, help="half | zero (default: the profile's eval.ties)"),
    votes: Optional[int] = typer.Option(None, help="judgments per response, averaged (generative judges)"),
    data_dir: Optional[str] = typer.Option(None, help="data directory"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a config key: section.key=value"),
) -> None:
    """Score one judge on one benchmark with the benchmark's own rules and 95% intervals."""
    from pathlib import Path

    from .evaluate import EvalError, evaluate

    try:
        overrides = parse_overrides(set_ or [])
        if data_dir:
            overrides["data.data_dir"] = data_dir
        config = load_config(profile, overrides)
        if ties not in (None, "half", "zero"):
            raise EvalError(f"--ties must be half or zero, not {ties!r}")
        if limit is None:
            limit_items = config.eval.limit_for(bench)
        elif limit == "all":
            limit_items = None
        elif limit.isdigit() and int(limit) > 0:
            limit_items = int(limit)
        else:
            raise EvalError(f"--limit must be a positive number or 'all', not {limit!r}")
        metrics = evaluate(config, judge, bench, Path(out), limit_items, ties, votes)
    except (*KNOWN_ERRORS, EvalError) as err:
        _fail(err)
    typer.echo(format_metrics(metrics))


def format_metrics(metrics: dict) -> str:
    """A short human summary of a metrics file (the JSON holds everything)."""
    def pct(value, interval=None) -> str:
        if value is None:
            return "n/a"
        text = f"{100 * value:.1f}"
        return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval and interval[0] is not None else "")

    lines = [f"{metrics['judge']} on {metrics['bench']} (ties={metrics['ties']}, votes={metrics['votes']}): "
             f"accuracy {pct(metrics['acc'], metrics['ci95']['acc'])}; invalid judgments "
             f"{metrics['invalid']['judgments']}/{metrics['invalid']['of']}"]
    for domain, facts in metrics.get("domains", {}).items():
        ci = facts.get("ci95", {})
        lines.append(f"  {domain:8s} n={facts['n']:4d} easy {pct(facts['easy'], ci.get('easy'))}  normal "
                     f"{pct(facts['normal'], ci.get('normal'))}  hard {pct(facts['hard'], ci.get('hard'))}  avg {pct(facts['avg'], ci.get('avg'))}")
    for subset, facts in metrics.get("subsets", {}).items():
        lines.append(f"  {subset:24s} n={facts['n']:4d} acc {pct(facts['acc'], facts.get('ci95'))}")
    for section, facts in metrics.get("sections", {}).items():
        if facts["score"] is not None:
            state = "complete" if facts["complete"] else f"partial, missing {len(facts['missing'])} subsets"
            lines.append(f"  section {section}: {pct(facts['score'], facts.get('ci95'))} ({state})")
    if "sections" in metrics:
        lines.append(f"  RewardBench score: {pct(metrics['score'])}" + ("" if metrics["score"] is not None else " (not all four sections complete)"))
    return "\n".join(lines)


@app.command()
def verify(
    run_dir: str = typer.Argument(..., help="a run folder (results/<run-name>)"),
    data_dir: Optional[str] = typer.Option(None, help="data directory (default: the one the run recorded)"),
) -> None:
    """Recompute every metric from the stored judgments and check the data hashes; exit 1 on any difference."""
    from .verify import verify_run

    try:
        report = verify_run(run_dir, data_dir)
    except KNOWN_ERRORS as err:
        _fail(err)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="first run folder"),
    run_b: str = typer.Argument(..., help="second run folder"),
) -> None:
    """Differences between two runs: accuracy and interval per judge and bench, and config keys."""
    from .verify import compare_runs

    try:
        differences = compare_runs(run_a, run_b)
    except KNOWN_ERRORS as err:
        _fail(err)
    typer.echo(f"A = {run_a}\nB = {run_b}")
    typer.echo("\n".join(f"  {d}" for d in differences) if differences else "  no differences in metrics or config")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Tables drawn from a run's metrics: Markdown and CSV writers, the benchmark table, readouts side
by side, judgment examples, the criteria a rubric gives and how much of it is a warm-up template. Notebooks show them; verify rebuilds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.evaluate import SECTIONED, readout_key, summary_row
from patarm_kit.judging.judge import read_judgments
from patarm_kit.judging.prompts import evaluation_text
from patarm_kit.judging.rubrics import criteria_summary, load_rubrics
from patarm_kit.report.figures import skip, suite_metrics
from patarm_kit.runs.files import atomic_write_text, display_path
from patarm_kit.runs.layout import RunLayout
from patarm_kit.training.sft import is_format_template

if TYPE_CHECKING:  # imported for the annotations only: importing this module stays light
    import pandas as pd


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table with empty cells left empty (pandas' to_markdown needs tabulate)."""
    def cell(value: Any) -> str:
        if _empty(value):
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def table_files(table: pd.DataFrame) -> dict[str, str]:
    """A table's files' text by extension: CSV (for tools) and Markdown (for reading)."""
    return {"csv": table.to_csv(index=False), "md": markdown_table(table)}


def save_table(table: pd.DataFrame, run_dir: Path | str, name: str) -> list[Path]:
    """<run>/tables/<name>.csv and .md."""
    paths = []
    for ext, text in table_files(table).items():
        paths.append(RunLayout(Path(run_dir)).table(name, ext))
        atomic_write_text(paths[-1], text)
    return paths


def benchmark_frame(run_dir: Path | str) -> pd.DataFrame | None:
    """Every judge on every benchmark: accuracy, 95% interval, invalid share (and RM-Bench's easy/normal/hard)."""
    import pandas as pd

    results = suite_metrics(run_dir)
    return pd.DataFrame([summary_row(m) for m in results]) if results else None


def readout_frame(run_dir: Path | str) -> pd.DataFrame | None:
    """Each generative judge on each bench under every readout measured: greedy, expected, sampled-mean and
    sampled-expected (the last two where eval.sampled_mean drew its judgments), with the others' intervals."""
    import pandas as pd

    rows = []
    for m in suite_metrics(run_dir):
        if "expected" not in m:
            continue
        row = {"judge": m["judge"], "bench": m["bench"], "n": get_bench(m["bench"]).count(m), "greedy": m["acc"]}
        for readout in SECTIONED:
            if (section := m.get(readout_key(readout))) is not None:
                row.update({readout: section["acc"], f"{readout} ci95": section["ci95"]["acc"]})
        rows.append({**row, "invalid (greedy)": m["invalid"]["share"],
                     "<score> added": m["expected"]["forced"] / m["expected"]["invalid"]["of"]})
    return pd.DataFrame(rows) if rows else None


def judgment_examples(run_dir: Path | str, bench: str, judges: Sequence[str], n_pairs: int = 2,
                      chars: int = 400) -> pd.DataFrame | None:
    """What the judges wrote about the same responses (stored judgments): before training and after."""
    import pandas as pd

    layout = RunLayout(Path(run_dir))
    by_judge = {judge: read_judgments(RunLayout.judgments_of(layout.eval_metrics(judge, bench)))
                for judge in judges if layout.eval_metrics(judge, bench).is_file()}
    if not by_judge:
        return None
    pair_ids = sorted({j.pair_id for j in next(iter(by_judge.values()))})[:n_pairs]
    rows = [{"pair": j.pair_id, "side": j.side, "judge": judge, "score": j.score,
             "expected": None if j.expected_score is None else round(j.expected_score, 2), "judgment": j.text[:chars]}
            for pid in pair_ids for judge, judgments in by_judge.items() for j in judgments if j.pair_id == pid and j.sample == 0]
    return pd.DataFrame(rows)


def criteria_frame(run_dir: Path | str, bench: str, rubric_file: str | None = None) -> pd.DataFrame | None:
    """Per generative judge: how many instance-specific criteria it writes, and how many only repeat the rubric."""
    import pandas as pd

    rubrics = load_rubrics(rubric_file)
    rows = {m["judge"]: criteria_summary(read_judgments(RunLayout(Path(run_dir)).eval_dir / m["judgments_file"]), rubrics)
            for m in suite_metrics(run_dir) if m["bench"] == bench and "expected" in m}
    return pd.DataFrame(rows).T if rows else None


def template_frame(run_dir: Path | str) -> pd.DataFrame | None:
    """Per generative judge, over every bench it judged: the share of its evaluations that are one of the
    `format` warm-up's three template sentences (training/sft.py), i.e. written without reading the response."""
    import pandas as pd

    counts: dict[str, list[int]] = {}
    for metrics in suite_metrics(run_dir):
        texts = [j.text for j in read_judgments(RunLayout(Path(run_dir)).eval_dir / metrics["judgments_file"]) if j.text]
        if texts:
            total = counts.setdefault(metrics["judge"], [0, 0])
            total[0] += sum(is_format_template(evaluation_text(t)) for t in texts)
            total[1] += len(texts)
    rows = [{"judge": judge, "judgments": n, "template share (%)": round(100 * k / n, 1)} for judge, (k, n) in counts.items()]
    return pd.DataFrame(rows) if rows else None


def benchmark_table(run_dir: Path | str) -> pd.DataFrame | None:
    """`benchmark_frame`, saved as tables/06_benchmarks.csv and .md."""
    table = benchmark_frame(run_dir)
    if table is None:
        return skip("benchmark table", f"no metrics files in {display_path(RunLayout(Path(run_dir)).eval_dir)} (benchmark stage not run)")
    save_table(table, run_dir, "06_benchmarks")
    return table

"""Fine-Grained RLHF's QA feedback: each question's ranked answers become preference pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patarm_kit.data.pairs import (
    PreferencePair,
    RowProblem,
    SourceReport,
    check_distinct,
    pairs_from_files,
    text_field,
    user_prompt,
)

FINEGRAINED_ORDER = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


def finegrained_pairs(row: Any, subset: str, number: int, report: SourceReport) -> list[PreferencePair]:
    """Each strict preference among the 4 predictions becomes a pair; ties are counted, not kept."""
    question = text_field(row, "question")
    predictions = {k: text_field(row, f"prediction {k}") for k in range(1, 5)}
    preference = row.get("preference")
    if not isinstance(preference, list) or len(preference) != 6:
        raise RowProblem("preference", "expected a list of 6 comparisons (1v2, 1v3, 1v4, 2v3, 2v4, 3v4)")
    pairs = []
    for (a, b), value in zip(FINEGRAINED_ORDER, preference):
        if value not in (0, 1, 2) or isinstance(value, bool):
            raise RowProblem("preference", f"comparison {a}v{b} is {value!r}; expected 0, 1 or 2")
        if value == 0:
            report.skip("tie (no preference)", f"row {number} {a}v{b}")
            continue
        chosen, rejected = (predictions[a], predictions[b]) if value == 1 else (predictions[b], predictions[a])
        check_distinct(chosen, rejected, f"prediction {b}")
        pairs.append(
            PreferencePair(
                id=f"finegrained-qa/{subset}/{number}/{a}v{b}",
                source="finegrained-qa",
                task="chat",
                prompt=user_prompt(question),
                chosen=chosen,
                rejected=rejected,
                subset=subset,
            )
        )
    return pairs


def load(data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """Fine-Grained RLHF's QA feedback, train and dev files (a missing train file is not reported)."""
    files = ["train_feedback.json", "dev_feedback.json"]
    return pairs_from_files(report, data_dir / "finegrained-rlhf-qa-feedback", files, bad_rows,
                            lambda row, number, name: finegrained_pairs(row, name.removesuffix("_feedback.json"), number, report),
                            optional=("train_feedback.json",))

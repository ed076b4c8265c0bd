"""RewardBench's rows: LLMBar's local files and the hub copy of allenai/reward-bench."""

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
from patarm_kit.data.sources.generic import generic_pair

# The LLMBar files as published, and the RewardBench subset each one became.
LLMBAR_FILES_TO_SUBSETS: dict[str, str] = {
    "Natural": "llmbar-natural",
    "Adversarial_Neighbor": "llmbar-adver-neighbor",
    "Adversarial_GPTInst": "llmbar-adver-GPTInst",
    "Adversarial_GPTOut": "llmbar-adver-GPTOut",
    "Adversarial_Manual": "llmbar-adver-manual",
}


# ---------------------------------------------------------------- the benchmark


def llmbar_pair(row: Any, subset: str, number: int) -> PreferencePair:
    """A row of an LLMBar file: the instruction, two outputs and the label of the better one."""
    instruction = text_field(row, "input")
    outputs = (text_field(row, "output_1"), text_field(row, "output_2"))
    try:
        label = int(row.get("label"))
    except (TypeError, ValueError):
        raise RowProblem("label", f"expected 1 or 2, got {row.get('label')!r}") from None
    if label not in (1, 2):
        raise RowProblem("label", f"expected 1 or 2, got {label}")
    chosen, rejected = outputs[label - 1], outputs[2 - label]
    check_distinct(chosen, rejected, "output_2")
    return PreferencePair(
        id=f"llmbar/{subset}/{number}",
        source="llmbar",
        task="chat",
        prompt=user_prompt(instruction),
        chosen=chosen,
        rejected=rejected,
        subset=subset,
    )


def task_of(subset: str) -> str:
    """The judge's rubric task for a RewardBench subset."""
    if subset == "math-prm":
        return "math"
    if subset.startswith("hep-"):
        return "code"
    if subset.startswith(("refusals", "xstest", "donotanswer")):
        return "safety"
    return "chat"


def hub_pair(row: Any, number: int) -> PreferencePair:
    """A row of allenai/reward-bench (prompt, chosen, rejected, id, subset)."""
    return generic_pair(row, "allenai/reward-bench", number, default_task=task_of(str(row.get("subset", ""))))


def load_llmbar(data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """LLMBar's subsets, the part of RewardBench the kit holds locally (data/README.md)."""
    files = [f"{subset}.json" for subset in LLMBAR_FILES_TO_SUBSETS]
    return pairs_from_files(report, data_dir / "llmbar", files, bad_rows,
                            lambda row, number, name: llmbar_pair(row, name.removesuffix(".json"), number))

"""RewardBench 2's rows (allenai/reward-bench-2, test split): each prompt with its correct and incorrect responses.

Every subset but Ties holds one correct response and three incorrect ones (best-of-4); Ties holds
prompts with several correct answers (`tied:<n>`) and the same prompt with one (`ref:<n>`). A row
becomes one pair: `chosen_variants` are the correct responses, `rejected_variants` the incorrect
ones (`chosen` and `rejected` the first of each). No hub here: the kit reads a local mirror,
<data_dir>/reward-bench-2/test.jsonl, one JSON object per prompt with the hub's own fields
(data/README.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from patarm_kit.data.pairs import (
    PreferencePair,
    RowProblem,
    SourceReport,
    pairs_from_files,
    responses_field,
    row_id,
    text_field,
    user_prompt,
)

# The six subsets and the task type each is judged as (its task-adaptive rubric).
SUBSETS = {"Factuality": "chat", "Focus": "chat", "Math": "math", "Precise IF": "instruction", "Safety": "safety",
           "Ties": "chat"}
TIES = "Ties"
TIES_ID = re.compile(r"(ref|tied):\d+")
MIRROR_FILE = "test.jsonl"  # under <data_dir>/reward-bench-2/


def rewardbench2_pair(row: Any, number: int) -> PreferencePair:
    """A row of RewardBench 2 (the hub's or the local mirror's: the same fields)."""
    subset = text_field(row, "subset")
    if subset not in SUBSETS:
        raise RowProblem("subset", f"unknown subset {subset!r}; RewardBench 2 has {', '.join(SUBSETS)}")
    prompt = text_field(row, "prompt")
    chosen, rejected = responses_field(row, "chosen"), responses_field(row, "rejected")
    if row.get("num_correct") != len(chosen):
        raise RowProblem("num_correct", f"expected {len(chosen)} (the number of chosen responses), got {row.get('num_correct')!r}")
    if "total_completions" in row and row["total_completions"] != len(chosen) + len(rejected):
        raise RowProblem("total_completions", f"expected {len(chosen) + len(rejected)}, got {row['total_completions']!r}")
    identity = row_id(row, number)
    if subset == TIES and not TIES_ID.fullmatch(identity):
        raise RowProblem("id", f"a Ties row's id is ref:<n> or tied:<n>, got {identity!r}")
    if subset != TIES and (len(chosen), len(rejected)) != (1, 3):
        raise RowProblem("rejected", f"a {subset} row has 1 chosen and 3 rejected responses, got {len(chosen)} and {len(rejected)}")
    if set(map(str.strip, chosen)) & set(map(str.strip, rejected)):
        raise RowProblem("rejected", "a response is both chosen and rejected")
    return PreferencePair(
        id=f"reward-bench-2/{identity}", source="reward-bench-2", task=SUBSETS[subset], prompt=user_prompt(prompt),
        chosen=chosen[0], rejected=rejected[0], subset=subset, chosen_variants=chosen, rejected_variants=rejected,
    )


def load(data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """The local mirror of the hub's test split (data/README.md)."""
    return pairs_from_files(report, data_dir / "reward-bench-2", (MIRROR_FILE,), bad_rows,
                            lambda row, number, name: rewardbench2_pair(row, number))

"""Anthropic HH-RLHF: transcripts split into chat turns, the last assistant turn compared."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from patarm_kit.data.pairs import PreferencePair, RowProblem, SourceReport, check_distinct, pairs_from_files, text_field

# ---------------------------------------------------------------- converters per source

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def hh_dialogue(text: str, field_name: str) -> list[dict[str, str]]:
    """Split an HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") into chat messages."""
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 5:
        raise RowProblem(field_name, "not a '\\n\\nHuman: ... \\n\\nAssistant: ...' dialogue")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()} for who, said in zip(parts[1::2], parts[2::2])]


def hh_pair(row: Any, subset: str, number: int) -> PreferencePair:
    chosen_dialogue = hh_dialogue(text_field(row, "chosen"), "chosen")
    rejected_dialogue = hh_dialogue(text_field(row, "rejected"), "rejected")
    for name, dialogue in (("chosen", chosen_dialogue), ("rejected", rejected_dialogue)):
        if dialogue[-1]["role"] != "assistant":
            raise RowProblem(name, "the dialogue does not end with an assistant turn")
        if not dialogue[-1]["content"]:
            raise RowProblem(name, "empty final assistant response")
    if chosen_dialogue[:-1] != rejected_dialogue[:-1]:
        raise RowProblem("rejected", "chosen and rejected dialogues differ before the final turn")
    chosen, rejected = chosen_dialogue[-1]["content"], rejected_dialogue[-1]["content"]
    check_distinct(chosen, rejected)
    return PreferencePair(
        id=f"hh-rlhf/{subset}/{number}",
        source="hh-rlhf",
        task="safety" if subset.startswith("harmless") else "chat",
        prompt=tuple(chosen_dialogue[:-1]),
        chosen=chosen,
        rejected=rejected,
        subset=subset,
    )


SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")


def load(data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """HH-RLHF's subsets, train and test files; a missing train file is not reported missing
    (the kit's data folder may hold the test files only)."""
    files = [f"{s}_{split}.jsonl.gz" for s in SUBSETS for split in ("train", "test")]
    return pairs_from_files(report, data_dir / "hh-rlhf", files, bad_rows,
                            lambda row, number, name: hh_pair(row, name.removesuffix(".jsonl.gz"), number),
                            optional=("_train.jsonl.gz",))

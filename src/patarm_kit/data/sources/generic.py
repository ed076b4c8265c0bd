"""Any pairwise file or hub dataset with prompt / chosen / rejected columns (or messages)."""

from __future__ import annotations

from typing import Any

from patarm_kit.data.pairs import PreferencePair, RowProblem, check_distinct, check_task, messages_field, row_id


def _last_content(value: Any, name: str) -> str:
    """A response given as text or as a chat transcript (take the final assistant message)."""
    if isinstance(value, list):
        if not value or not isinstance(value[-1], dict) or "content" not in value[-1]:
            raise RowProblem(name, "expected text or a list of {role, content} messages")
        value = value[-1]["content"]
    if not isinstance(value, str) or not value.strip():
        raise RowProblem(name, "empty or non-text response")
    return value


def generic_pair(row: Any, source: str, number: int, default_task: str = "chat") -> PreferencePair:
    """A row with prompt/chosen/rejected columns (text or chat messages); optional id, task, subset."""
    if not isinstance(row, dict):
        raise RowProblem("(row)", f"expected an object, got {type(row).__name__}")
    for name in ("prompt", "chosen", "rejected"):
        if name not in row:
            raise RowProblem(name, "missing field")
    prompt = messages_field(row["prompt"], "prompt")
    chosen, rejected = _last_content(row["chosen"], "chosen"), _last_content(row["rejected"], "rejected")
    check_distinct(chosen, rejected)
    task = check_task(row.get("task", default_task))
    return PreferencePair(
        id=f"{source}/{row_id(row, number)}",
        source=source,
        task=task,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        subset=str(row.get("subset", "")),
    )

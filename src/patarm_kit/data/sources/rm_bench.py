"""RM-Bench's rows: three style variants of each chosen and rejected response, by domain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from patarm_kit.data.pairs import (
    PreferencePair,
    RowProblem,
    SourceReport,
    check_distinct,
    pairs_from_files,
    responses_field,
    row_id,
    text_field,
    user_prompt,
)

DOMAINS = ("chat", "code", "math", "safety")
_DOMAIN_OF = {
    "chat": "chat",
    "code": "code",
    "math": "math",
    "safety": "safety",
    "safety-refuse": "safety",  # RM-Bench pools both safety files (domain.startswith("safety"))
    "safety-response": "safety",
}
# The published files (THU-KEG/RM-Bench data/), one per domain field value.
DATA_FILES = tuple(f"{name}_filtered.json" for name in ("chat", "code", "math", "safety-refuse", "safety-response"))


def domain_of(file_or_domain: str) -> str:
    """The scoring domain of an RM-Bench domain field or data file (`safety-refuse_filtered.json`)."""
    name = Path(file_or_domain).name.removesuffix(".json").removesuffix("_filtered")
    if name not in _DOMAIN_OF:
        raise ValueError(f"unknown RM-Bench domain {file_or_domain!r}; known: {', '.join(_DOMAIN_OF)}")
    return _DOMAIN_OF[name]


# ---------------------------------------------------------------- the benchmark


def rmbench_pair(row: Any, domain: str) -> PreferencePair:
    """A row of an RM-Bench file (or of the hub copy, whose rows name their domain)."""
    try:
        task = domain_of(domain)
    except ValueError as err:
        raise RowProblem("domain", str(err)) from None
    prompt = text_field(row, "prompt")
    chosen, rejected = (responses_field(row, name, 3, " (concise, detailed, markdown)") for name in ("chosen", "rejected"))
    for i in range(3):
        check_distinct(chosen[i], rejected[i], f"rejected[{i}]")
    return PreferencePair(
        id=f"rm-bench/{domain}/{row_id(row)}",
        source="rm-bench",
        task=task,
        prompt=user_prompt(prompt),
        chosen=chosen[0],
        rejected=rejected[0],
        subset=domain,
        chosen_variants=chosen,
        rejected_variants=rejected,
    )


def hub_pair(row: Any, number: int) -> PreferencePair:
    """A row of THU-KEG/RM-Bench on the hub: as a local row, with its domain in a field."""
    return rmbench_pair(row, str(row.get("domain", "")) if isinstance(row, dict) else "")


def load(data_dir: Path, report: SourceReport, bad_rows: str) -> list[PreferencePair]:
    """RM-Bench's filtered files, one per domain (data/README.md)."""
    return pairs_from_files(report, data_dir / "rm-bench", DATA_FILES, bad_rows,
                            lambda row, number, name: rmbench_pair(row, name.removesuffix("_filtered.json")))

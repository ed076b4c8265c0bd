"""IFEval's prompts with their instructions: the policies' evaluation set and the base of the
verifiable pairs' instruction types.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.data.pairs import (
    DataError,
    RowProblem,
    SourceReport,
    local_files,
    read_json_rows,
    resolve_data_dir,
    text_field,
)

# ---------------------------------------------------------------- IFEval prompts (downstream stage)


@dataclass(frozen=True)
class InstructionPrompt:
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


def load_ifeval(data_dir: str | os.PathLike | None = None) -> tuple[list[InstructionPrompt], SourceReport]:
    """IFEval's 541 prompts with their instruction ids and checker arguments."""
    report = SourceReport(source="ifeval", data_dir=str(resolve_data_dir(data_dir)))
    prompts = []
    for _, path in local_files(report, Path(report.data_dir) / "ifeval", ["input_data.jsonl"]):
        for number, row in read_json_rows(path):
            report.rows += 1
            where = f"{path}: row {number}"
            try:
                ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
                if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
                    raise RowProblem("kwargs", "instruction_id_list and kwargs must be lists of equal length")
                prompts.append(InstructionPrompt(int(row["key"]), text_field(row, "prompt"), tuple(ids), tuple(kwargs)))
            except RowProblem as problem:
                raise DataError(f"{where}: field {problem.field}: {problem}") from None
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where}: field key: missing or not an integer") from None
    if not report.files:
        raise DataError(f"ifeval: {report.missing_files[0]} not found (see data/README.md)")
    report.pairs = len(prompts)
    return prompts, report

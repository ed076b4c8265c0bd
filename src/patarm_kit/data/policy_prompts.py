"""The downstream policies' training prompts, drawn once by stage 01 into pairs/policy_prompts.jsonl.

Chat questions of the training split of the kit's verifiable instruction-following source
(`policy.source`), one IFEval-type instruction appended, never IFEval's own prompts (the source
records the overlap: 0). Stage 06 trains every policy on this file and nothing else.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig
from patarm_kit.data import ifcheck
from patarm_kit.data.pairs import DataError, RowProblem, SourceReport, read_json_rows, resolve_data_dir, text_field
from patarm_kit.data.sources.verifiable_if import verifiable_builds
from patarm_kit.data.splits import split_of_key
from patarm_kit.runs.files import write_jsonl


@dataclass(frozen=True)
class PolicyPrompt:
    """One training prompt: a chat question with an IFEval-type instruction, and what checks it."""

    key: str
    prompt: str
    instruction_id: str
    kwargs: dict[str, Any]

    def to_row(self, rendered: str) -> dict[str, Any]:
        """The dataset row TRL reads: the chat-formatted prompt text (`rendered`, as the policy sees it
        at IFEval too), plus the columns the reward functions get."""
        return {"prompt": rendered, "prompt_key": self.key,
                "instruction_id": self.instruction_id, "kwargs_json": json.dumps(self.kwargs, sort_keys=True),
                "prompt_text": self.prompt}


def policy_prompts(config: RunConfig) -> list[PolicyPrompt]:
    """The seeded draw of `policy.n_prompts` training-split prompts, one instruction per base question."""
    fractions = config.data.split_fractions
    report = SourceReport(source=config.policy.source, data_dir=str(resolve_data_dir(config.data.data_dir)))
    builds, _ = verifiable_builds(config.policy.source, Path(report.data_dir), report, fractions)
    first: dict[str, PolicyPrompt] = {}
    for key, _, built in builds:
        if key not in first and split_of_key(key, fractions) == "train":
            first[key] = PolicyPrompt(f"{key}#{built.instruction_id}", built.prompt, built.instruction_id, built.kwargs)
    prompts = sorted(first.values(), key=lambda p: p.key)
    random.Random(config.seed).shuffle(prompts)
    return prompts[:config.policy.n_prompts] if config.policy.n_prompts else prompts


def write_policy_prompts(config: RunConfig, path: Path) -> dict[str, Path]:
    """Stage 01's draw of the policy prompts into `path`, when the profile trains policies ({name: path})."""
    if not config.policy.rewarders:
        return {}
    write_jsonl(path, (asdict(p) for p in policy_prompts(config)))
    return {path.name: path}


def _stored_prompt(row: Any) -> PolicyPrompt:
    for name in ("key", "prompt", "instruction_id"):
        text_field(row, name)
    if row["instruction_id"] not in ifcheck.instruction_types():
        raise RowProblem("instruction_id", f"{row['instruction_id']!r} is not an IFEval instruction the checker knows")
    if not isinstance(row.get("kwargs"), dict):
        raise RowProblem("kwargs", "expected an object of the instruction's arguments")
    return PolicyPrompt(row["key"], row["prompt"], row["instruction_id"], row["kwargs"])


def read_policy_prompts(path: Path) -> list[PolicyPrompt]:
    """The prompts stage 01 drew; a missing file, a bad row or no prompts is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
    prompts = []
    for number, row in read_json_rows(path):
        try:
            prompts.append(_stored_prompt(row))
        except RowProblem as problem:
            raise DataError(f"{path}: row {number}: field {problem.field}: {problem} "
                            "(the data stage writes this file; was it changed by hand?)") from None
    if not prompts:
        raise DataError(f"{path}: no prompts in the file")
    return prompts

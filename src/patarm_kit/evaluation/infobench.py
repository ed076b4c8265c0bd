"""InFoBench: instruction following scored by DRFR, the Decomposed Requirements Following Ratio.

Each of InFoBench's 500 instructions comes with yes/no questions that split it into its
requirements (2,250 in all). An evaluator model reads the instruction's input, a policy's
response and the questions one after another in one conversation, answering YES or NO to
each; DRFR is the share of questions answered YES over all questions (arXiv 2401.03601). The
benchmark's authors use GPT-4 as the evaluator; here it is any chat model the engine serves
(`policy.infobench_evaluator`), recorded in the metrics, so numbers from another evaluator
are never mistaken for theirs.

Data: `<data_dir>/infobench/*.jsonl` (rows with id, instruction, input, decomposed_questions),
or the hub dataset `kqsong/InFoBench` where a hub is reachable. Neither is on this machine:
the downstream stage then records InFoBench as not run and why; it never invents a number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import SamplingConfig
from patarm_kit.data.pairs import DataError, read_json_rows, resolve_data_dir
from patarm_kit.judging.prompts import render_chat
from patarm_kit.runs.files import display_path

HUB_ID = "kqsong/InFoBench"
# The evaluator's instructions: the benchmark's own rules for a YES, in our words.
EVALUATOR_RULES = (
    "Based on the Input (if any) and the Generated Text, answer each Question that follows with YES or NO only.\n\n"
    "- YES: only if the generated text fulfils the question's condition completely; even a small inaccuracy means NO.\n"
    "- NO: if the generated text fails the condition, or gives nothing the question could be answered from."
)


EVALUATOR_SAMPLING = SamplingConfig(n=1, temperature=0.0, max_new_tokens=16)  # greedy, as the authors' temperature 0


class InfoBenchMissing(DataError):
    """InFoBench's data is neither in the data directory nor reachable on a hub."""


@dataclass(frozen=True)
class InfoItem:
    id: str
    instruction: str
    input: str
    questions: tuple[str, ...]

    @property
    def prompt(self) -> str:
        """What the policy is asked: the instruction, then its input when there is one."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def _item(row: Any, where: str) -> InfoItem:
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object with id, instruction, input and decomposed_questions")
    questions = row.get("decomposed_questions")
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) for q in questions):
        raise DataError(f"{where}: field decomposed_questions: expected a non-empty list of questions")
    for name in ("id", "instruction"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise DataError(f"{where}: field {name}: expected text")
    return InfoItem(row["id"], row["instruction"], row.get("input") or "", tuple(questions))


def load_infobench(data_dir: str | os.PathLike | None = None) -> tuple[list[InfoItem], str]:
    """InFoBench's items and where they came from: the local folder, else the hub, else InfoBenchMissing."""
    folder = Path(resolve_data_dir(data_dir)) / "infobench"
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if files:
        items = [_item(row, f"{path}: row {number}") for path in files for number, row in read_json_rows(path)]
        return items, f"{folder} ({', '.join(p.name for p in files)})"
    if os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise InfoBenchMissing(f"no InFoBench data: {display_path(folder)} has no *.jsonl and the hub is off (HF_DATASETS_OFFLINE=1)")
    from datasets import load_dataset

    rows = load_dataset(HUB_ID, split="train")
    return [_item(row, f"{HUB_ID}: row {number}") for number, row in enumerate(rows, 1)], f"hub {HUB_ID}"


def parse_answer(text: str) -> bool | None:
    """YES or NO as the benchmark's evaluation reads it: the first word, else the one of the two present."""
    if text.strip().lower().startswith("yes"):
        return True
    if text.strip().lower().startswith("no"):
        return False
    yes, no = "YES" in text, "NO" in text
    return yes if yes != no else None


def evaluator_messages(item: InfoItem, response: str, answers: Sequence[str]) -> list[dict[str, str]]:
    """The evaluator's conversation before question len(answers): every earlier question with its answer."""
    context = f'Input:\n"{item.input}"\n\n' if item.input else ""
    messages: list[dict[str, str]] = []
    for index in range(len(answers) + 1):
        question = item.questions[index]
        content = f'{EVALUATOR_RULES}\n\n{context}Generated Text:\n"{response}"\n\nQuestion:\n{question}\n' if index == 0 else f"{question}\n"
        messages.append({"role": "user", "content": content})
        if index < len(answers):
            messages.append({"role": "assistant", "content": answers[index]})
    return messages


def evaluate_questions(engine: Any, tokenizer: Any, items: Sequence[InfoItem], responses: Sequence[str],
                       sampling: Any, seed: int = 0) -> list[list[bool | None]]:
    """Each item's answers, question by question in one conversation; an unreadable answer ends the item
    (its remaining questions stay None), as in the benchmark's own evaluation."""

    texts: list[list[str]] = [[] for _ in items]
    verdicts: list[list[bool | None]] = [[None] * len(item.questions) for item in items]
    open_items = list(range(len(items)))
    for index in range(max(len(item.questions) for item in items)):
        open_items = [i for i in open_items if index < len(items[i].questions)]
        if not open_items:
            break
        prompts = [render_chat(tokenizer, evaluator_messages(items[i], responses[i], texts[i])) for i in open_items]
        outputs = engine.generate(prompts, sampling, seed)
        still_open = []
        for i, (completion,) in zip(open_items, outputs):
            verdicts[i][index] = parse_answer(completion.text)
            texts[i].append(completion.text)
            if verdicts[i][index] is not None:
                still_open.append(i)
        open_items = still_open
    return verdicts


def drfr(verdicts: Sequence[Sequence[bool | None]]) -> dict[str, Any]:
    """The share of all decomposed questions answered YES (an unanswered one counts as not met)."""
    answers = [v for item in verdicts for v in item]
    return {"drfr": sum(v is True for v in answers) / len(answers), "questions": len(answers),
            "unanswered": sum(v is None for v in answers), "items": len(verdicts)}

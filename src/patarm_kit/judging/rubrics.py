"""Primary (task-level) rubrics: one fixed list of criteria per task type.

The judge sees the rubric of the pair's task in its prompt and then adds instance-specific
criteria of its own. The rubrics live in `rubrics.yaml` (package data) so a user can point
`judge.rubric_file` at their own file without touching code; a wrong file is an error that
names the file and the key, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

from patarm_kit.data.pairs import TASKS

CRITERION_KEYS = ("name", "description")


class RubricError(ValueError):
    """A rubric file is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str


@dataclass(frozen=True)
class Rubric:
    task: str
    criteria: tuple[Criterion, ...]


def load_rubrics(path: str | Path | None = None) -> dict[str, Rubric]:
    """The rubric of every task, from `path` or (None) from the packaged rubrics.yaml."""
    if path is None:
        source = resources.files("patarm_kit.judging").joinpath("rubrics.yaml")
        file_name = str(source)
    else:
        source = Path(path)
        file_name = str(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RubricError(f"{file_name}: not valid YAML: {exc}") from exc
    return _rubrics_from_data(data, file_name)


def render_rubric(rubric: Rubric) -> str:
    """Numbered lines ("1. Usefulness: ..."), the same text every time for the same rubric."""
    return "\n".join(
        f"{number}. {criterion.name}: {criterion.description}"
        for number, criterion in enumerate(rubric.criteria, start=1)
    )


def _fail(file_name: str, key: str, problem: str) -> NoReturn:
    raise RubricError(f"{file_name}: key '{key}': {problem}")


def _rubrics_from_data(data: Any, file_name: str) -> dict[str, Rubric]:
    if not isinstance(data, dict):
        raise RubricError(f"{file_name}: expected a mapping with the keys {', '.join(TASKS)}")
    for key in data:
        if key not in TASKS:
            _fail(file_name, str(key), f"unknown task; expected one of {', '.join(TASKS)}")
    rubrics = {}
    for task in TASKS:
        if task not in data:
            _fail(file_name, task, "missing; every task needs a rubric")
        rubrics[task] = Rubric(task, _criteria_from_data(data[task], file_name, task))
    return rubrics


def _criteria_from_data(items: Any, file_name: str, task: str) -> tuple[Criterion, ...]:
    if not isinstance(items, list) or not items:
        _fail(file_name, task, "expected a non-empty list of {name, description} entries")
    criteria: list[Criterion] = []
    for index, item in enumerate(items):
        key = f"{task}[{index}]"
        if not isinstance(item, dict):
            _fail(file_name, key, "expected a mapping with name and description")
        for extra in item.keys() - set(CRITERION_KEYS):
            _fail(file_name, f"{key}.{extra}", "unknown key; a criterion has only name and description")
        for field in CRITERION_KEYS:
            value = item.get(field)
            # One line each: the prompt shows one numbered line per criterion.
            if not isinstance(value, str) or not value.strip() or len(value.strip().splitlines()) > 1:
                _fail(file_name, f"{key}.{field}", "expected one line of non-empty text")
        name = item["name"].strip()
        if name in (c.name for c in criteria):
            _fail(file_name, f"{key}.name", f"duplicate criterion {name!r}")
        criteria.append(Criterion(name, item["description"].strip()))
    return tuple(criteria)


def criteria_summary(judgments: Iterable[Any], rubrics: Mapping[str, Rubric]) -> dict[str, Any]:
    """How much the judge's instance-specific criteria add beyond the primary rubric.

    `judgments` are records with `.criteria` (lines) and `.task`. A criterion "repeats the
    rubric" when its name (the text before the first colon) names a criterion of the primary
    rubric the judge was shown.
    """
    counts, repeats, total = [], 0, 0
    for judgment in judgments:
        names = {c.name.casefold() for c in rubrics[judgment.task].criteria}
        counts.append(len(judgment.criteria))
        for line in judgment.criteria:
            total += 1
            repeats += line.split(":", 1)[0].strip().casefold() in names
    return {
        "judgments": len(counts),
        "with_criteria": sum(1 for c in counts if c),
        "mean_criteria_per_judgment": sum(counts) / len(counts) if counts else None,
        "criteria": total,
        "share_repeating_rubric": repeats / total if total else None,
    }

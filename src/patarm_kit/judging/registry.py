"""The judges, by the spec configs and the CLI use: one registry and one factory.

A *judge spec* names a judge:

    length        score = characters of the response (the classic length-bias probe)
    random        a seeded random score
    base          the profile's model as a pointwise judge, untrained
    adapter:PATH  a LoRA adapter on the base model (SFT warm-up or PAR-trained)
    pairwise      the base model with the pairwise template, each pair in both orders
    bt:PATH       a scalar Bradley-Terry reward model (training/bt.py)

and a run's own trained judges by alias: `sft`, `par` (adapters) and `bt`, resolved through
`RunLayout.adapter`. `build_judge` turns a spec into an object with `judge(requests)` (or
`judge_pairwise(pairs)` for a pairwise judge). Adding a judge: its class and one line in JUDGES.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig, SamplingConfig
from patarm_kit.judging.bt_scorer import BTScorer
from patarm_kit.judging.engine import judge_engine
from patarm_kit.judging.judge import EvalError, Judge, JudgeRequest, Judgment
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.rubrics import load_rubrics
from patarm_kit.runs.layout import RunLayout, is_trained_judge


def plain_judgment(request: JudgeRequest, score: float, input_truncated: Sequence[str] = ()) -> Judgment:
    """The record of a judge that gives a number without text (length, random, bt)."""
    return Judgment(request.pair_id, request.side, request.task, 0, "", score, None, [], 0, 0, False, list(input_truncated))


class LengthJudge:
    """Score = characters of the response: prefers the longer answer, whatever it says."""

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        return [plain_judgment(r, float(len(r.response))) for r in requests]


class RandomJudge:
    """A random score per response, seeded: the chance line of every benchmark."""

    def __init__(self, seed: int):
        self.seed = seed

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        rng = random.Random(self.seed)
        return [plain_judgment(r, rng.random()) for r in requests]


class BTJudge:
    """A scalar Bradley-Terry reward model: one reward per response."""

    def __init__(self, adapter: str, config: RunConfig):
        self.scorer = loaded_bt_scorer(adapter, config)

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        scores, cut = self.scorer.score(requests), self.scorer.inputs_cut(requests)
        return [plain_judgment(r, s, c) for r, s, c in zip(requests, scores, cut)]


_LOADED_BT: dict[tuple[str, int, str], BTScorer] = {}  # the last BT model loaded, by adapter, its files' mtime, config


def loaded_bt_scorer(adapter: str, config: RunConfig) -> BTScorer:
    """The BT model of `adapter`, loaded once for a run of judgments: an evaluation suite judges
    every bench with it. A retrained adapter (its files written again) or another config loads
    anew; one model is kept at a time."""
    written = max((path.stat().st_mtime_ns for path in Path(adapter).glob("*")), default=0)  # none: BTScorer says why
    key = (str(Path(adapter).resolve()), written, config.fingerprint())
    if key not in _LOADED_BT:
        _LOADED_BT.clear()
        _LOADED_BT[key] = BTScorer(adapter, config)
    return _LOADED_BT[key]


def model_judge(config: RunConfig, sampling: SamplingConfig, adapter: str | None = None) -> Judge:
    """The generative judge: the profile's model (with a LoRA adapter merged in), sampling as the use's block says.

    Every model judge of a process shares one engine (`judge.engine`); the adapter is swapped
    into its weights when this judge generates.
    """

    engine = judge_engine(config)  # first: a wrong engine setting stops here, before anything loads
    return Judge(load_tokenizer(config.model), engine, config.judge, load_rubrics(config.judge.rubric_file),
                 config.model.enable_thinking, config.seed, sampling, adapter)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed judge spec. `label` names it in tables; `recorded` is how metrics files write it
    (a path inside the run as `<run>/...`, so files do not depend on where the run lives)."""

    kind: str
    path: str | None = None
    label: str = ""
    recorded: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind

    @property
    def pairwise(self) -> bool:
        return JUDGES[self.kind].pairwise

    @property
    def samples(self) -> bool:
        return JUDGES[self.kind].samples

    def check_files(self) -> None:
        """A judge trained by a stage must exist before any judging starts."""
        if self.path is not None and not Path(self.path).exists():
            raise EvalError(f"judge {self.label}: {self.path} does not exist (run the stage that trains it first)")


@dataclass(frozen=True)
class JudgeKind:
    """How to build one kind of judge, and what evaluation needs to know about it."""

    build: Callable[[JudgeSpec, RunConfig, SamplingConfig], Any]
    takes_path: bool = False  # written kind:PATH
    samples: bool = False  # makes n judgments per response as a SamplingConfig says (votes)
    pairwise: bool = False  # judges a pair in both orders (judge_pairwise) instead of each response


JUDGES: dict[str, JudgeKind] = {
    "length": JudgeKind(lambda spec, config, sampling: LengthJudge()),
    "random": JudgeKind(lambda spec, config, sampling: RandomJudge(config.seed)),
    "base": JudgeKind(lambda spec, config, sampling: model_judge(config, sampling), samples=True),
    "adapter": JudgeKind(lambda spec, config, sampling: model_judge(config, sampling, spec.path), takes_path=True, samples=True),
    "pairwise": JudgeKind(lambda spec, config, sampling: model_judge(config, sampling), pairwise=True),
    "bt": JudgeKind(lambda spec, config, sampling: BTJudge(spec.path, config), takes_path=True),
}

# A run's own trained judges: alias -> the kind of judge its adapter is.
RUN_ALIASES: dict[str, str] = {"sft": "adapter", "par": "adapter", "bt": "bt"}


def _known() -> str:
    kinds = [f"{name}:PATH" if kind.takes_path else name for name, kind in JUDGES.items()]
    return f"{', '.join(kinds)}, or a run's own {', '.join(RUN_ALIASES)} (and PAR variants par-<name>)"


def parse_judge(text: str, layout: RunLayout | None = None) -> JudgeSpec:
    """The judge a spec names; a run alias (sft, par, bt) needs the run's `layout`."""
    if is_trained_judge(text):
        alias = "par" if text.startswith("par-") else text  # a PAR variant (par.variants) is a PAR judge
        if layout is None:
            raise EvalError(f"judge {text!r} is a run's own judge: outside a run, name it {RUN_ALIASES[alias]}:PATH")
        path = layout.adapter(text)
        kind = RUN_ALIASES[alias]
        return JudgeSpec(kind, str(path), text, f"{kind}:{layout.relative(path)}")
    kind, sep, path = str(text).partition(":")
    if kind not in JUDGES or bool(sep) != JUDGES[kind].takes_path or (sep and not path):
        raise EvalError(f"judge {text!r}: expected {_known()}")
    recorded = f"{kind}:{layout.relative(path)}" if sep and layout else text
    return JudgeSpec(kind, path or None, text, recorded)


def build_judge(spec: JudgeSpec | str, config: RunConfig, sampling: SamplingConfig) -> Any:
    """The judge a spec names, ready to judge; generative judges sample as `sampling` (one use's block) says."""
    spec = parse_judge(spec) if isinstance(spec, str) else spec
    spec.check_files()
    return JUDGES[spec.kind].build(spec, config, sampling)

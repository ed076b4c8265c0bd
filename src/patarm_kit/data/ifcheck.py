"""IFEval's instruction checkers, from a maintained implementation on PyPI, never rewritten here.

The checkers are `if-verifiable`'s copy of Google's IFEval code (Apache-2.0): the same classes,
registry and strict/loose rule the IFEval paper defines. The verifiable pair source (data stage)
labels its pairs with them, and IFEval scoring uses them, so a judge is trained and a policy is
scored by one implementation.

Two checkers (`length_constraints:number_sentences` and `change_case:capital_word_frequency`)
split text with NLTK's Punkt sentence tokenizer, whose English parameters (`punkt_tab`) NLTK
downloads from GitHub. Where they are installed, they are used; where not (this machine has no
network, and no PyPI package ships them), Punkt runs with no trained parameters: the same
algorithm without its learned abbreviation list, so "Dr. Smith" may split into two sentences.
`checker_record()` says which one ran, and every file that holds checker verdicts records it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

CHECKER_PACKAGE = "if-verifiable"
PUNKT_DEPENDENT = ("length_constraints:number_sentences", "change_case:capital_word_frequency")
PUNKT_FALLBACK = "fallback: nltk PunktSentenceTokenizer() without trained parameters (punkt_tab not installed)"
LANGDETECT_SEED = 0  # langdetect is random unless seeded; IFEval's language checker uses it
# IFEval's checkers draw a missing or unusable argument at random (Python's `random`): the
# letter-frequency checker does so for IFEval's own prompts that count "#" or "!", which are not
# letters, so unseeded the same response could pass on one run and fail on the next. Each check
# draws from this seed (the caller's random state is put back), so a verdict depends on the
# response alone and `verify` re-checks it exactly.
CHECKER_RANDOM_SEED = 0


@dataclass(frozen=True)
class Verdict:
    """One instruction of one response, as the checker decided it."""

    instruction_id: str
    strict: bool
    loose: bool


@functools.cache
def punkt_source() -> str:
    """Which Punkt parameters the checkers use; installs the documented fallback where NLTK has none."""
    import nltk
    import nltk.tokenize
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    try:
        return f"official: nltk punkt_tab at {nltk.data.find('tokenizers/punkt_tab/english/')}"
    except LookupError:
        pass
    from if_verifiable.ifeval import instructions_util

    untrained = PunktSentenceTokenizer()
    instructions_util._get_sentence_tokenizer = lambda: untrained  # count_sentences
    nltk.tokenize._get_punkt_tokenizer = lambda language="english": untrained  # word_tokenize
    return PUNKT_FALLBACK


@functools.cache
def _registry() -> Mapping[str, Any]:
    from langdetect import DetectorFactory

    DetectorFactory.seed = LANGDETECT_SEED
    punkt_source()
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return INSTRUCTION_DICT


def instruction_types() -> tuple[str, ...]:
    """Every instruction id the checkers know (IFEval's 25)."""
    return tuple(sorted(_registry()))


def checker_record() -> dict[str, Any]:
    """What decided the verdicts: package, version, Punkt source, langdetect seed."""
    return {"package": CHECKER_PACKAGE, "version": version(CHECKER_PACKAGE), "punkt": punkt_source(),
            "punkt_dependent_types": list(PUNKT_DEPENDENT), "langdetect_seed": LANGDETECT_SEED,
            "random_seed": CHECKER_RANDOM_SEED}


def describe(instruction_id: str, kwargs: Mapping[str, Any]) -> str:
    """The instruction's text as IFEval words it, built by its checker from `kwargs`."""
    checker = _registry()[instruction_id](instruction_id)
    return checker.build_description(**{k: v for k, v in kwargs.items() if v is not None})


def check(response: str, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], prompt: str) -> list[Verdict]:
    """Each instruction's strict and loose verdict, by the wrapped implementation's own rule."""
    from if_verifiable.common import evaluate_instructions

    unknown = [i for i in instruction_ids if i not in _registry()]
    if unknown:
        raise ValueError(f"unknown instruction id {unknown[0]!r} (known: {', '.join(instruction_types())})")
    state = random.getstate()
    random.seed(CHECKER_RANDOM_SEED)
    try:
        results, _ = evaluate_instructions(response, list(instruction_ids), [dict(k) for k in kwargs], prompt, _registry())
    finally:
        random.setstate(state)
    if not results:  # an empty response: the implementation fails every instruction without listing them
        return [Verdict(i, False, False) for i in instruction_ids]
    return [Verdict(r.instruction_id, r.strict_pass, r.loose_pass) for r in results]

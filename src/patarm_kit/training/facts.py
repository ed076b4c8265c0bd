"""Warm-up judgments that read the response: criteria from the instance, facts of the response.

The first warm-up (`sft.targets: format`) wrote criteria from the user prompt alone and an
evaluation sentence whose first word fixed the score band, so the warmed-up judge learned to
ignore the response: greedy, it wrote one of three templates for every pair. These targets
(`facts`, and `labels` with the label's score band) make the judge look at what it judges:

- criteria from the instance: for an instruction-following pair, the instruction the prompt
  states (the kit built it, so it knows its checker arguments); otherwise the task rubric's
  criteria applied to the prompt's topic words;
- an evaluation of checkable facts of the response itself: whether it has what each criterion
  names (a keyword, an end phrase, commas, its length in tens of words), else how it starts and
  whether it mentions the prompt's topic words;
- a score that does not depend on the label (`facts`: drawn from a seed of the prompt and the
  response, so the same response gets the same target on either side of any pair).

Every fact is computed from the response text alone; none consults the pair's label or the
checker's verdict. PAR then has to learn which facts deserve the higher score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Instruction = Mapping[str, Any]  # {"instruction_id": ..., "kwargs": {...}}, as ifpairs builds it
START_WORDS = 3
END_WORDS = 5
TOPIC_WORDS = 2
TITLE = re.compile(r"<<[^\n]+>>")
BULLET = re.compile(r"^\s*[*-]\s", flags=re.MULTILINE)
HIGHLIGHT = re.compile(r"\*[^\n*]+\*")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _has(response: str, term: str) -> str:
    """`has walnut: yes`, the term unquoted: after a space it is the very token the response
    holds (' walnut'), which a small judge can match; '"walnut"' splits into other tokens
    ('wal', 'nut'), and a warm-up that wrote it left the judge at chance on the verdict."""
    return f"has {term}: {_yes(term.lower() in response.lower())}"


def _quoted(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == text[-1] == '"'


def _is_json(response: str) -> bool:
    text = response.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# Instruction type -> (what the criterion asks, in a few words; the fact of a response that shows it).
# Both read the instruction's checker arguments (kwargs); the fact reads the response only.
INSTRUCTION_FACTS: dict[str, tuple[Callable[[Mapping[str, Any]], str], Callable[[str, Mapping[str, Any]], str]]] = {
    "change_case:english_lowercase": (lambda k: "all lowercase",
                                      lambda r, k: f"has capital letters: {_yes(any(c.isupper() for c in r))}"),
    "change_case:english_capital": (lambda k: "all capitals",
                                    lambda r, k: f"has lowercase letters: {_yes(any(c.islower() for c in r))}"),
    "punctuation:no_comma": (lambda k: "no commas", lambda r, k: f"has commas: {_yes(',' in r)}"),
    "startend:end_checker": (lambda k: f'end with "{k["end_phrase"]}"',
                             lambda r, k: f'ends with "{k["end_phrase"]}": {_yes(r.strip().endswith(k["end_phrase"]))}'),
    "detectable_content:postscript": (lambda k: f"a {k['postscript_marker']} postscript",
                                      lambda r, k: _has(r, k["postscript_marker"])),
    "detectable_format:title": (lambda k: "a title in << >>",
                                lambda r, k: f"title in << >>: {_yes(TITLE.search(r) is not None)}"),
    "startend:quotation": (lambda k: "wrapped in double quotes",
                           lambda r, k: f"in double quotes: {_yes(_quoted(r))}"),
    "keywords:existence": (lambda k: "use " + " and ".join(k["keywords"]),
                           lambda r, k: "; ".join(_has(r, w) for w in k["keywords"])),
    "keywords:forbidden_words": (lambda k: "avoid " + " and ".join(k["forbidden_words"]),
                                 lambda r, k: "; ".join(_has(r, w) for w in k["forbidden_words"])),
    "length_constraints:number_words": (lambda k: f"{k['relation']} {k['num_words']} words",
                                        lambda r, k: f"about {round(len(r.split()), -1)} words"),
    "detectable_format:number_bullet_lists": (
        lambda k: f"exactly {k['num_bullets']} bullet points",
        lambda r, k: f"{len(BULLET.findall(r))} bullet points"),
    "detectable_format:json_format": (lambda k: "JSON only", lambda r, k: f"valid JSON: {_yes(_is_json(r))}"),
    "detectable_format:number_highlighted_sections": (
        lambda k: f"at least {k['num_highlights']} highlighted sections",
        lambda r, k: f"{len(HIGHLIGHT.findall(r))} highlighted sections"),
}


def opening(response: str) -> str:
    """The response's first few words, as the judgment quotes them."""
    words = response.split()
    return " ".join(words[:START_WORDS]) + (" ..." if len(words) > START_WORDS else "")


def ending(response: str) -> str:
    """The response's last few words, quoted: evidence the judge copies before its verdicts.

    A 135M judge stated 'has "walnut": yes/no' at chance after its warm-up (dev, keyword pairs)
    although the word sits in the response's last sentence; copying that sentence first is what
    small models do well (induction), and it puts the evidence next to the verdict."""
    words = response.replace(";", ",").replace('"', "'").split()
    return 'ends: "' + ("... " if len(words) > END_WORDS else "") + " ".join(words[-END_WORDS:]) + '"'


def instance_criteria(instructions: Sequence[Instruction], topic: str, rubric_names: Sequence[str]) -> list[tuple[str, str]]:
    """Criteria from the instance: each stated instruction, then the answer to the request itself;
    without instructions, the first two rubric criteria applied to the prompt's topic."""
    if instructions:
        asked = [INSTRUCTION_FACTS[i["instruction_id"]][0](i["kwargs"]) for i in instructions]
        return [("Constraint followed", "; ".join(asked)), ("Answer kept", f"answers the {topic} request")]
    return [(name, f"applied to {topic}") for name in rubric_names[:2]]


def response_facts(response: str, instructions: Sequence[Instruction], topic_terms: Sequence[str]) -> list[str]:
    """Checkable facts of one response: with stated instructions, how it ends (quoted) and then
    whether it has what each criterion names (a keyword, an ending, commas, ...); otherwise how
    it starts and whether it mentions the prompt's topic words. Presence (yes/no) rather than
    counts wherever the instruction allows: a 135M judge sampled at temperature 1 states presence
    far more reliably than a count."""
    if instructions:
        stated = (INSTRUCTION_FACTS[i["instruction_id"]][1](response, i["kwargs"]) for i in instructions)
        facts = [ending(response), *(fact for joined in stated for fact in joined.split("; "))]  # one per keyword
    else:
        facts = [f"starts: {opening(response)}",
                 *(f'mentions "{term}": {_yes(term in response.lower())}' for term in topic_terms[:TOPIC_WORDS])]
    return list(dict.fromkeys(facts))


def is_quote(fact: str) -> bool:
    """Quoted evidence (how the response starts or ends) rather than a verdict about it."""
    return fact.startswith(("starts: ", "ends: "))


def evaluation_of(facts: Sequence[str]) -> str:
    """The warm-up's evaluation sentence: the facts in order."""
    return "; ".join(facts) + "."


def stated_side(evaluation: str | None, chosen_facts: Sequence[str], rejected_facts: Sequence[str]) -> str | None:
    """Which side's verdicts a judgment states, on the verdicts where the pair's two sides differ:
    "chosen", "rejected", or None (neither wholly, both, or the sides' verdicts do not differ)."""
    chosen = [f for f in chosen_facts if not is_quote(f) and f not in rejected_facts]
    rejected = [f for f in rejected_facts if not is_quote(f) and f not in chosen_facts]
    if evaluation is None or not chosen or not rejected:
        return None
    says_chosen, says_rejected = (all(f in evaluation for f in side) for side in (chosen, rejected))
    return "chosen" if says_chosen and not says_rejected else "rejected" if says_rejected and not says_chosen else None


def facts_stated(evaluation: str | None, true_facts: Sequence[str]) -> float:
    """The share of a response's true facts that a judgment's evaluation states word for word
    (0 without an evaluation): whether the judge read the response it scores."""
    if evaluation is None:
        return 0.0
    return sum(fact in evaluation for fact in true_facts) / len(true_facts)

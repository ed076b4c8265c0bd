"""A preference a small judge can learn: verifiable instruction-following pairs (the kit's choice).

PAR trains from any pairwise data (PAPER.md). General human preference is out of reach of a
135M judge in CPU minutes, so the cpu profiles train and test on pairs whose label a program
decides. Each pair is built from a prompt of the chat sources' *training* split (HH-RLHF's
helpful subsets, single-turn; Fine-Grained RLHF QA questions) and that source's own response:

1. one of IFEval's instruction types, with its parameters, is appended to the prompt in the
   words of IFEval's own checker (`ifcheck.describe`);
2. two minimal edits of the response are made, one meant to satisfy the instruction and one to
   violate it; where possible both sides are edited the same amount (a wrong end phrase
   against the right one), so length says nothing about the label;
3. the checker (`ifcheck.check`, if-verifiable's copy of IFEval's code) decides the label:
   the pair is kept only when the satisfying side passes and the violating side fails, strict.

Each base prompt gets up to `TYPES_PER_PROMPT` different instruction types. Splits go by base
prompt (`PreferencePair.split_key`), so one question never sits in two splits. Three types
are held out: `verifiable-if-transfer` builds them only on base prompts of the test split, and
no training pair has them (the transfer test). The responses are the sources' own (HH-RLHF's
are a 52B assistant's), not the base model's: the edit is the only thing that differs.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.data import ifcheck
from patarm_kit.data.pairs import PreferencePair, SourceReport, dedupe, require_files
from patarm_kit.data.sources import finegrained_qa, hh_rlhf
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.data.splits import BUILT_KEY_PREFIX, split_of, split_of_key

CHAT_SOURCES = {"hh-rlhf": hh_rlhf.load, "finegrained-qa": finegrained_qa.load}  # the base prompts' sources


def verifiable_builds(name: str, data_dir: Path, report: SourceReport,
                      fractions: dict[str, float]) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """(split key, base prompt's source id, BuiltPair) for every checker-verified instruction
    of a built source, and the base questions they were built on."""

    chat = []
    for source, load in CHAT_SOURCES.items():
        loaded = SourceReport(source=source, data_dir=report.data_dir)
        pairs = load(data_dir, loaded, "skip")
        require_files(loaded, source, data_dir)
        chat += [p for p in dedupe(pairs, loaded) if split_of(p, fractions) == "train"]
        report.files.update(loaded.files)
    bases = base_prompts(chat)
    report.rows = len(bases)
    transfer = name == "verifiable-if-transfer"
    builds = []
    for base in bases:
        key = f"{BUILT_KEY_PREFIX}{base.question}"
        if transfer and split_of_key(key, fractions) != "test":
            continue
        types, wanted = (HELD_OUT, 1) if transfer else (TRAINED, TYPES_PER_PROMPT)
        builds += [(key, base.source_id, built) for built in build_for(base, types, wanted, report.skip)]
    return builds, [b.question for b in bases]


def verifiable_pairs(name: str, data_dir: Path, report: SourceReport, fractions: dict[str, float]) -> list[PreferencePair]:
    """Instruction-following pairs labelled by IFEval's checkers, on training-split chat prompts (py)."""

    transfer = name == "verifiable-if-transfer"
    builds, questions = verifiable_builds(name, data_dir, report, fractions)
    pairs = [
        PreferencePair(
            id=f"{name}/{source_id}/{built.instruction_id}", source=name, task=TASK,
            prompt=({"role": "user", "content": built.prompt},), chosen=built.chosen, rejected=built.rejected,
            subset=built.instruction_id, split_key=key,
            instructions=({"instruction_id": built.instruction_id, "kwargs": built.kwargs},),
        )
        for key, source_id, built in builds
    ]
    ifeval, _ = load_ifeval(data_dir)
    report.built_with = {
        "checker": ifcheck.checker_record(),
        "base_prompts": f"single-turn chat prompts of the train split of hh-rlhf and finegrained-qa, "
                        f"{WORDS[0]}-{WORDS[1]}-word responses",
        "instruction_types": list(HELD_OUT if transfer else TRAINED),
        "held_out_types": list(HELD_OUT),
        "ifeval_prompt_overlap": ifeval_overlap(questions, [p.prompt for p in ifeval]),
    }
    return pairs

TASK = "instruction"
TYPES_PER_PROMPT = 3
WORDS = (20, 150)  # base responses of this many words: long enough to edit, short enough for the judge's budget
END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have additional questions.",
               "Any other questions?", "Hope this helps.")
POSTSCRIPT_NOTES = ("Feel free to ask a follow-up.", "I can add more detail if useful.", "Thanks for asking.")
TITLE_WORDS = 4
KEYWORDS = ("garden", "compass", "lantern", "harbor", "meadow", "violin", "glacier", "pepper", "ribbon", "quartz",
            "saddle", "walnut", "beacon", "canyon", "orchid", "pebble")

Edit = tuple[dict[str, Any], str, str]  # (checker kwargs, satisfying response, violating response)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _words(text: str) -> list[str]:
    return text.split()


def lowercase(response: str, prompt: str, rng: random.Random) -> Edit | None:
    return ({}, response.lower(), response) if response != response.lower() else None


def capital(response: str, prompt: str, rng: random.Random) -> Edit | None:
    return ({}, response.upper(), response) if response != response.upper() else None


def no_comma(response: str, prompt: str, rng: random.Random) -> Edit | None:
    return ({}, response.replace(", ", " ").replace(",", ""), response) if "," in response else None


def end_phrase(response: str, prompt: str, rng: random.Random) -> Edit | None:
    right, wrong = rng.sample(END_PHRASES, 2)
    return {"end_phrase": right}, f"{response.rstrip()}\n{right}", f"{response.rstrip()}\n{wrong}"


def postscript(response: str, prompt: str, rng: random.Random) -> Edit | None:
    marker, note = rng.choice(("P.S.", "P.P.S")), rng.choice(POSTSCRIPT_NOTES)
    return {"postscript_marker": marker}, f"{response.rstrip()}\n\n{marker} {note}", f"{response.rstrip()}\n\n{note}"


def title(response: str, prompt: str, rng: random.Random) -> Edit | None:
    words = re.findall(r"[A-Za-z']+", prompt)[:TITLE_WORDS]
    if len(words) < 2:
        return None
    name = " ".join(w.capitalize() for w in words)
    return {}, f"<<{name}>>\n\n{response}", f"{name}\n\n{response}"


def quotation(response: str, prompt: str, rng: random.Random) -> Edit | None:
    return {}, f'"{response.strip()}"', f"'{response.strip()}'"


def keywords(response: str, prompt: str, rng: random.Random) -> Edit | None:
    absent = [k for k in KEYWORDS if k not in response.lower()]
    if len(absent) < 4:
        return None
    drawn = rng.sample(absent, 4)
    asked, other = drawn[:2], drawn[2:]
    line = "This also touches on {} and {}."
    return ({"keywords": asked}, f"{response.rstrip()} {line.format(*asked)}", f"{response.rstrip()} {line.format(*other)}")


def forbidden(response: str, prompt: str, rng: random.Random) -> Edit | None:
    candidates = sorted({w.lower() for w in re.findall(r"[A-Za-z]{6,}", response)})
    if len(candidates) < 2:
        return None
    banned = rng.sample(candidates, 2)
    cleaned = response
    for word in banned:
        cleaned = re.sub(rf"\b{word}\b\s?", "", cleaned, flags=re.IGNORECASE)
    return {"forbidden_words": banned}, cleaned, response


def word_count(response: str, prompt: str, rng: random.Random) -> Edit | None:
    words = _words(response)
    if len(words) < 30:
        return None
    cut = len(words) * 3 // 5
    short = " ".join(words[:cut])
    if rng.random() < 0.5:  # the short side satisfies, or the long one: length alone cannot tell
        return {"relation": "less than", "num_words": cut + 3}, short, response
    return {"relation": "at least", "num_words": len(words) - 5}, response, short


def bullets(response: str, prompt: str, rng: random.Random) -> Edit | None:
    sentences = _sentences(response)
    if len(sentences) < 3:
        return None
    count = rng.randint(2, min(4, len(sentences) - 1))

    def as_list(k: int) -> str:
        items = sentences[: k - 1] + [" ".join(sentences[k - 1:])]
        return "\n".join(f"* {item}" for item in items)

    return {"num_bullets": count}, as_list(count), as_list(count + 1)


def json_format(response: str, prompt: str, rng: random.Random) -> Edit | None:
    return {}, json.dumps({"answer": response.strip()}), f"answer: {response.strip()}"


def highlights(response: str, prompt: str, rng: random.Random) -> Edit | None:
    words = [w for w in re.findall(r"[A-Za-z]{5,}", response)]
    count = rng.randint(1, 3)
    if len(set(words)) < count + 1:
        return None
    chosen_words = rng.sample(sorted(set(words)), count + 1)

    def marked(k: int) -> str:
        text = response
        for word in chosen_words[:k]:
            text = re.sub(rf"\b{word}\b", f"*{word}*", text, count=1)
        return text

    return {"num_highlights": count}, marked(count), marked(count - 1)


# Instruction type -> edit. Training types first; HELD_OUT never reach training (the transfer test).
EDITS: dict[str, Callable[[str, str, random.Random], Edit | None]] = {
    "change_case:english_lowercase": lowercase,
    "punctuation:no_comma": no_comma,
    "startend:end_checker": end_phrase,
    "detectable_content:postscript": postscript,
    "detectable_format:title": title,
    "startend:quotation": quotation,
    "keywords:existence": keywords,
    "keywords:forbidden_words": forbidden,
    "length_constraints:number_words": word_count,
    "detectable_format:number_bullet_lists": bullets,
    "change_case:english_capital": capital,
    "detectable_format:json_format": json_format,
    "detectable_format:number_highlighted_sections": highlights,
}
HELD_OUT = ("change_case:english_capital", "detectable_format:json_format", "detectable_format:number_highlighted_sections")
TRAINED = tuple(t for t in EDITS if t not in HELD_OUT)


@dataclass(frozen=True)
class BasePrompt:
    """A single-turn prompt of a training source and that source's response to it."""

    source_id: str
    question: str
    response: str


@dataclass(frozen=True)
class BuiltPair:
    instruction_id: str
    kwargs: dict[str, Any]
    prompt: str
    chosen: str
    rejected: str


def base_prompts(pairs: Iterable[Any]) -> list[BasePrompt]:
    """Single-turn prompts with a chosen response of WORDS words, one per distinct question."""
    seen, kept = set(), []
    for pair in pairs:
        if len(pair.prompt) != 1 or pair.task != "chat" or not WORDS[0] <= len(_words(pair.chosen)) <= WORDS[1]:
            continue
        question = pair.prompt[0]["content"].strip()
        if question in seen:
            continue
        seen.add(question)
        kept.append(BasePrompt(pair.id, question, pair.chosen.strip()))
    return kept


def build_for(base: BasePrompt, types: Iterable[str], wanted: int, skipped: Callable[[str, str], None]) -> list[BuiltPair]:
    """Up to `wanted` checker-verified pairs on one base prompt, trying `types` in a seeded order."""
    rng = random.Random(f"verifiable-if/{base.source_id}")
    order = list(types)
    rng.shuffle(order)
    built = []
    for instruction_id in order:
        if len(built) == wanted:
            break
        edit = EDITS[instruction_id](base.response, base.question, rng)
        if edit is None:
            skipped("instruction does not apply to the response", f"{base.source_id} {instruction_id}")
            continue
        kwargs, satisfying, violating = edit
        prompt = f"{base.question}\n\n{ifcheck.describe(instruction_id, kwargs)}"
        verdicts = [ifcheck.check(text, [instruction_id], [kwargs], prompt)[0].strict for text in (satisfying, violating)]
        if verdicts != [True, False] or satisfying.strip() == violating.strip():
            skipped("checker disagrees with the edit", f"{base.source_id} {instruction_id}: {verdicts}")
            continue
        built.append(BuiltPair(instruction_id, kwargs, prompt, satisfying, violating))
    return built


def ifeval_overlap(questions: Iterable[str], ifeval_prompts: Iterable[str]) -> int:
    """Base questions that occur in (or contain) an IFEval prompt, compared lower-cased: must be 0."""
    ifeval = [p.lower() for p in ifeval_prompts]
    return sum(1 for q in questions if any(q.lower() in p or p in q.lower() for p in ifeval))

"""Which split a pair belongs to: a hash of its identity and the fractions' values alone.

A pair's split never depends on key order, seed or which other pairs were loaded; built pairs
split by their base prompt, so one question never sits in two splits (issue #22, bug 1).
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable

from patarm_kit.data.pairs import PreferencePair

# ---------------------------------------------------------------- splits and summaries


def split_of(pair: PreferencePair, fractions: dict[str, float]) -> str:
    """train/dev/test from a hash of the prompt text (or the pair's split_key), so one prompt never crosses splits."""
    return split_of_key(pair.split_key or pair.prompt_text, fractions)


def split_of_key(key: str, fractions: dict[str, float]) -> str:
    """The split a key's hash falls in, the splits laid out in sorted name order.

    Sorted, never the mapping's own order: a YAML profile, a manifest (sorted keys) and a
    default config must give every pair the same split, or a held-out pair of one reader is a
    training pair of another.
    """
    names = sorted(fractions)
    total = sum(fractions.values())
    point = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12
    cumulative = 0.0
    for name in names:
        cumulative += fractions[name] / total
        if point < cumulative:
            return name
    return names[-1]


BUILT_KEY_PREFIX = "verifiable-if/"  # a built pair's split_key: this prefix and its base prompt


def normalised(text: str) -> str:
    """Lower-cased with runs of white space made one space: how prompts are compared across sources."""
    return " ".join(text.lower().split())


def prompt_keys(pair: PreferencePair) -> frozenset[str]:
    """The prompts a pair is about, normalised: every user turn, and a built pair's base prompt
    (a built prompt is its base prompt plus an instruction, so the turn alone would not match)."""
    texts = [m["content"] for m in pair.prompt if m["role"] == "user"]
    if pair.split_key.startswith(BUILT_KEY_PREFIX):
        texts.append(pair.split_key.removeprefix(BUILT_KEY_PREFIX))
    return frozenset(normalised(t) for t in texts)


def count_pairs(pairs: Iterable[PreferencePair], fractions: dict[str, float]) -> dict[str, dict[str, int]]:
    """Counts by task, subset and split: what notebook 01 and `patarm-kit data` show."""
    counts: dict[str, collections.Counter] = {"task": collections.Counter(), "subset": collections.Counter(), "split": collections.Counter()}
    for pair in pairs:
        counts["task"][pair.task] += 1
        counts["subset"][pair.subset] += 1
        counts["split"][split_of(pair, fractions)] += 1
    return {k: dict(sorted(v.items())) for k, v in counts.items()}

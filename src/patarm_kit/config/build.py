"""Typed config sections built from plain mappings: each value checked against its field's type
and the rules of its key (config.rules), so a typo or a wrong type names the key."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from patarm_kit.config.rules import (
    CHOICES,
    MINIMUM,
    ConfigError,
    _at_least,
    _hub_revision,
    _judge_pairs,
    _primary,
    _rewarders,
    _split_fractions,
)
from patarm_kit.config.schema import ParConfig, RunConfig, SourceConfig


def _par_variants(variants: dict[str, dict[str, Any]], key: str) -> None:
    """Each variant names settings of the par block (not variants again), with valid values."""
    for name, settings in variants.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ConfigError(f"{key}.{name}: a variant name is lower-case letters, digits and '-' (it names par-{name}/)")
        if "variants" in settings:
            raise ConfigError(f"{key}.{name}.variants: a variant cannot have variants")
        build_section(ParConfig, settings, f"{key}.{name}")


SPECIAL_RULES = {"data.split_fractions": _split_fractions, "eval.paired": _judge_pairs, "par.variants": _par_variants,
                 "eval.primary": _primary, "policy.paired": _judge_pairs, "policy.rewarders": _rewarders,
                 "model.revision": _hub_revision, "data.sources.revision": _hub_revision, "sft.paper_revision": _hub_revision}


def _check_rules(value: Any, key: str) -> None:
    """The rules for `key` (a dotted key; list positions such as sources[0] share one rule)."""
    rule = re.sub(r"\[\d+\]", "", key)
    rule = re.sub(r"^par\.variants\.[^.]+\.", "par.", rule)  # a PAR variant's settings follow the par block's rules
    rule = re.sub(r"^policy\.grpo\.", "par.", rule)  # and so do the policies' own GRPO settings
    if rule in MINIMUM:
        _at_least(value, MINIMUM[rule], key)
    if rule in CHOICES and value not in CHOICES[rule]:
        raise ConfigError(f"{key}: expected one of {', '.join(CHOICES[rule])}, got {value!r}")
    if rule in SPECIAL_RULES:
        SPECIAL_RULES[rule](value, key)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, building nested dataclasses; name `key` on error."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, str) and annotation is SourceConfig:
            value = {"name": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {annotation.__name__}, got {value!r}")
        return build_section(annotation, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(annotation)
        return {k: _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def build_section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
        _check_rules(kwargs[name], key)
    return cls(**kwargs)


def merge_mappings(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, mapping by mapping; an empty mapping clears the parent's (`variants: {}`)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def par_variant(config: RunConfig, name: str) -> RunConfig:
    """`config` with PAR variant `name`'s settings (par.variants) in its par block."""
    if name not in config.par.variants:
        raise ConfigError(f"par.variants has no {name!r} (it has: {', '.join(config.par.variants) or 'none'})")
    values = merge_mappings({k: v for k, v in dataclasses.asdict(config.par).items() if k != "variants"}, config.par.variants[name])
    return dataclasses.replace(config, par=build_section(ParConfig, values, f"par.variants.{name}"))

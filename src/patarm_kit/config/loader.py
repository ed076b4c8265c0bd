"""One typed configuration for a run: a YAML profile plus overrides.

Profiles live in `configs/<name>.yaml`. A profile may start with `extends: <other>` to
inherit another profile and change only what differs. Notebook parameters and CLI flags
override single keys with dotted names (`eval.sampling.temperature=0.7`). Unknown keys and wrong
types are errors that name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from patarm_kit.config.build import build_section, merge_mappings
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import RunConfig

REPO_ROOT = Path(__file__).resolve().parents[3]
PROFILE_DIR = REPO_ROOT / "configs"


def _is_profile_file(name_or_path: str) -> bool:
    return Path(name_or_path).suffix in (".yaml", ".yml")


def absolute_profile(profile: str | None) -> str | None:
    """A profile name as it is (None: not given); a profile path made absolute against the current directory.

    The CLI applies this before anything else: notebooks run from notebooks/, where a relative
    path would point somewhere else.
    """
    return str(Path(profile).expanduser().resolve()) if profile and _is_profile_file(profile) else profile


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line (PyYAML's own message spans several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _read_profile(name_or_path: str, seen: tuple[str, ...] = (), folder: Path | None = None) -> dict[str, Any]:
    """A profile's values with its `extends` chain merged in; a relative path in `extends`
    is read from the extending profile's folder."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ConfigError(f"{seen[-1] if seen else 'profile'}: extends: expected a profile name or path, got {name_or_path!r}")
    if _is_profile_file(name_or_path):
        path = ((folder or Path.cwd()) / Path(name_or_path).expanduser()).resolve()
    else:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"profile {name_or_path!r} not found ({path}); available: {available}")
    if str(path) in seen:
        raise ConfigError(f"profile {path} extends itself through {' -> '.join(seen)}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a profile must be a mapping of keys to values")
    parent = values.pop("extends", None)
    values.setdefault("profile", path.stem)
    if parent is not None:
        return merge_mappings(_read_profile(parent, (*seen, str(path)), path.parent), values)
    return values


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    node = values
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[leaf] = value


def load_config(profile: str = "smoke", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a profile (name in configs/ or a YAML path) and apply dotted-key overrides.

    Override values given as strings (from the command line) are parsed as YAML scalars,
    so `eval.sampling.temperature=0.7` gives a float and `eval.limit=null` gives None.
    """
    values = _read_profile(profile)
    for dotted, value in (overrides or {}).items():
        if isinstance(value, str) and value.strip():
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise ConfigError(f"override {dotted}={value}: not a valid YAML value ({_yaml_problem(err)})") from None
        _set_dotted(values, dotted, value)
    return build_section(RunConfig, values, "")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn CLI `key=value` strings into a dict for `load_config`."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        overrides[key.strip()] = value
    return overrides

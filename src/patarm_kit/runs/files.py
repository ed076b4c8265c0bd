"""The files a run writes, written safely: atomically (a crash never leaves half a file), JSON and
JSON lines, and each file's sha256 for the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from patarm_kit.config.loader import REPO_ROOT


class RunError(ValueError):
    """A run name or run folder is unusable (bad name, no run there, unreadable manifest, other config)."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file of the kit; one that does not parse is an error naming it (a half-written or edited file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]], ensure_ascii: bool = False) -> None:
    """Rows as JSON lines, atomically. `ensure_ascii=True` escapes non-ASCII text (\\uXXXX): the
    files first written that way (IFEval responses and verdicts, training logs) keep their bytes."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[Any]:
    """The rows of a JSON-lines file, blank lines skipped."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def display_path(path: str | Path) -> str:
    """A path as the kit's outputs show it: relative to the repository (results/<run>, ../shared/data),
    so an executed notebook or a message says the same on every machine and names no one's home folder."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)

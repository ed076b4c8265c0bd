"""What an executed notebook shows beside its results: the noise a reader has to look past.

Four counts per notebook, each a kind of output a student would stop at: stderr streams, warning
lines, progress bars saved at "0%" (a widget keeps its first frame whatever happened after) and
absolute paths of the machine that ran it. The committed runs are held to them
(tests/test_notebook_noise.py); what remains is named there with its reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

WARNING_LINE = re.compile(r"warn", re.IGNORECASE)
ZERO_BAR = re.compile(r"(?<![\d.])0%")  # "0%|" of a bar, not "10%" or "0.0%"
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home|usr|opt)/[\w.-]+")


@dataclass(frozen=True)
class Noise:
    stderr_outputs: int = 0
    warning_lines: int = 0
    zero_bars: int = 0
    absolute_paths: int = 0

    def __add__(self, other: Noise) -> Noise:
        return Noise(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


def output_texts(output: dict) -> list[str]:
    """The text an output shows: a stream's as displayed (a text bar's frames overwrite each other at
    "\r", so its last frame is what a reader sees), a result's plain text (a widget's bar is its
    text/plain repr), an error's traceback."""
    if output["output_type"] == "stream":
        return ["\n".join(line.rsplit("\r", 1)[-1] for line in "".join(output["text"]).split("\n"))]
    if output["output_type"] == "error":
        return ["\n".join(output.get("traceback", []))]
    plain = output.get("data", {}).get("text/plain", "")
    return ["".join(plain)] if plain else []


def shown_outputs(cell: dict) -> list[dict]:
    """A code cell's outputs as a reader sees them: consecutive pieces of one stream are one text
    (a bar's first frame and its "\r"-led last frame may arrive as two messages)."""
    shown: list[dict] = []
    for output in cell.get("outputs", []):
        previous = shown[-1] if shown else {}
        if output["output_type"] == "stream" and previous.get("output_type") == "stream" and previous["name"] == output["name"]:
            shown[-1] = {**previous, "text": "".join(previous["text"]) + "".join(output["text"])}
        else:
            shown.append(output)
    return shown


def notebook_noise(path: Path) -> Noise:
    """The four counts of one executed notebook; code cells' outputs only (its prose is the kit's)."""
    cells = json.loads(path.read_text())["cells"]
    outputs = [output for cell in cells if cell["cell_type"] == "code" for output in shown_outputs(cell)]
    stderr = sum(1 for output in outputs if output.get("name") == "stderr")
    texts = [text for output in outputs for text in output_texts(output)]
    lines = [line for text in texts for line in text.splitlines()]
    return Noise(stderr_outputs=stderr,
                 warning_lines=sum(1 for line in lines if WARNING_LINE.search(line)),
                 zero_bars=sum(len(ZERO_BAR.findall(text)) for text in texts),
                 absolute_paths=sum(len(ABSOLUTE_PATH.findall(text)) for text in texts))


def run_noise(run: Path) -> dict[str, Noise]:
    """Each executed notebook of a run folder by its file name."""
    return {path.name: notebook_noise(path) for path in sorted((run / "notebooks").glob("*.ipynb"))}

"""data/README.md cannot drift from the loaders: the HH-RLHF counts they report on the real data, the
size and sha256 of every file in the data directory, and every file a loader reads."""

import re

import pytest

from patarm_kit.config.loader import REPO_ROOT
from patarm_kit.config.schema import SourceConfig
from patarm_kit.data.loading import load_source


def test_readme_hh_rlhf_counts_are_the_loader_s(data_dir):
    text = " ".join((REPO_ROOT / "data" / "README.md").read_text(encoding="utf-8").split())
    _, report = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    skipped = sum(report.skipped.values())
    assert (f"The test files hold {skipped} rows that are not clean pairs, so {report.pairs:,} pairs are kept "
            f"from {report.rows:,} rows") in text

    def count(words: str) -> int:
        return sum(n for reason, n in report.skipped.items() if words in reason)

    documented = {  # the README's phrase for each of the loader's reasons
        "are identical": count("responses are identical"),
        "is empty": count("empty final assistant response"),
        "differ before the final turn": count("differ before the final turn"),
        "does not end with an assistant turn": count("does not end with an assistant turn"),
    }
    assert sum(documented.values()) == skipped, f"a reason the README does not explain: {report.skipped}"
    for phrase, n in documented.items():
        assert re.search(rf"- {n} whose .{{0,60}}?{phrase}", text), (phrase, n)


# ---------------------------------------------------------------- the files table: sizes and sha256, every file a loader names

FILE_ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| (?P<bytes>[\d,]+|—) \| (?:`(?P<sha>[0-9a-f]{64})`|—) \| (?P<origin>.+) \|$", re.M)


def documented_files() -> dict[str, list[tuple[int | None, str | None]]]:
    """data/README.md's "Files and their sha256" table: file -> its known versions (bytes, sha256)."""
    text = (REPO_ROOT / "data" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Files and their sha256", 1)[1].split("\n## ", 1)[0]
    files: dict[str, list[tuple[int | None, str | None]]] = {}
    for row in FILE_ROW.finditer(section):
        size = None if row["bytes"] == "—" else int(row["bytes"].replace(",", ""))
        files.setdefault(row["file"], []).append((size, row["sha"]))
    return files


def test_every_documented_sha256_matches_the_file_in_the_data_directory(data_dir):
    from patarm_kit.runs.files import sha256_of

    files = documented_files()
    assert len(files) >= 20, sorted(files)  # 23 when written
    checked = []
    for name, versions in files.items():
        known = [(size, sha) for size, sha in versions if sha]
        assert all(size for size, _ in known), f"{name}: a sha256 needs its size"
        path = data_dir / name
        if known and path.is_file():
            assert (path.stat().st_size, sha256_of(path)) in known, f"{path} is none of the versions data/README.md lists"
            checked.append(name)
    assert checked, f"no documented file found in {data_dir}"


def test_every_file_the_loaders_name_is_in_the_files_table(tmp_path, monkeypatch):
    """Each built-in loader is run on an empty folder with `local_files` recording what it asks for."""
    from patarm_kit.data import pairs as pairs_module
    from patarm_kit.data.loading import BUILT_SOURCES, BUILTIN_SOURCES, HUB_DATASETS
    from patarm_kit.data.pairs import DataError, SourceReport
    from patarm_kit.data.sources import ifeval as ifeval_module
    from patarm_kit.evaluation import infobench

    asked: set[str] = set()
    real = pairs_module.local_files

    def recording(report, folder, names, optional=()):
        names = list(names)
        asked.update(f"{folder.relative_to(tmp_path).as_posix()}/{name}" for name in names)
        yield from real(report, folder, names, optional)

    monkeypatch.setattr(pairs_module, "local_files", recording)
    monkeypatch.setattr(ifeval_module, "local_files", recording)
    for name, load in BUILTIN_SOURCES.items():
        assert load(tmp_path, SourceReport(source=name, data_dir=str(tmp_path)), "error") == []
    with pytest.raises(DataError):
        ifeval_module.load_ifeval(tmp_path)
    files = documented_files()
    assert {"rm-bench/chat_filtered.json", "hh-rlhf/harmless-base_train.jsonl.gz", "ifeval/input_data.jsonl"} <= asked
    assert sorted(asked - set(files)) == [], "files a loader reads that data/README.md does not list"
    text = (REPO_ROOT / "data" / "README.md").read_text(encoding="utf-8")
    assert "`infobench/*.jsonl`" in text and f"`{infobench.HUB_ID}`" in text  # InFoBench reads any *.jsonl there
    for name in [*BUILT_SOURCES, *(f"`{hub_id}`" for hub_id in HUB_DATASETS)]:
        assert name in text, f"data/README.md does not mention {name}"


def test_the_gpu_set_keeps_the_kits_own_pins():
    """requirements-gpu.txt is the kit's pins (requirements-base.txt) resolved with vLLM's CUDA build and DeepSpeed:
    every base pin but torch appears at the same version, so the GPU path runs the library versions the tests run."""
    def pins(name):
        lines = (REPO_ROOT / name).read_text().splitlines()
        return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith(("#", "-")))

    base, gpu = pins("requirements-base.txt"), pins("requirements-gpu.txt")
    assert {k: v for k, v in base.items() if k != "torch" and gpu.get(k.lower()) != v} == {}
    assert gpu["vllm"] == "0.33.0" and gpu["deepspeed"] == "0.19.8" and gpu["torch"] == "2.14.0"

"""Each kind of bad input: one clear line naming file, row and field; non-zero exit; nothing written."""

import gzip
import json

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.schema import SourceConfig
from patarm_kit.data.loading import load_source, load_sources
from patarm_kit.data.pairs import DataError, read_pairs
from patarm_kit.data.stage import write_stage_pairs

GOOD = {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No.", "task": "chat"}

BAD_JSONL = {
    "bad JSON line": ('{"prompt": "x", "chosen": ', r"row 2: not valid JSON"),
    "missing field": (json.dumps({"prompt": "x", "chosen": "a"}), "row 2: field rejected: missing field"),
    "wrong type": (json.dumps({**GOOD, "chosen": 42}), "row 2: field chosen: empty or non-text response"),
    "empty response": (json.dumps({**GOOD, "rejected": "  "}), "row 2: field rejected: empty or non-text"),
    "identical responses": (json.dumps({**GOOD, "rejected": "Hi!"}), "row 2: field rejected: chosen and rejected responses are identical"),
    "unknown task": (json.dumps({**GOOD, "task": "poetry"}), "row 2: field task: unknown task 'poetry'"),
    "prompt of wrong type": (json.dumps({**GOOD, "prompt": 3}), "row 2: field prompt: expected text"),
}


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_jsonl(path, bad_line):
    path.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n" + json.dumps({**GOOD, "prompt": "other"}) + "\n")
    return path


@pytest.mark.parametrize("kind", sorted(BAD_JSONL))
def test_cli_names_file_row_and_field_and_exits_nonzero(kind, tmp_path):
    bad_line, expected = BAD_JSONL[kind]
    path = write_jsonl(tmp_path / "pairs.jsonl", bad_line)
    result = CliRunner().invoke(app, ["data", "--source", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_label_outside_its_range(tmp_path):
    folder = tmp_path / "llmbar"
    folder.mkdir()
    rows = [{"input": "q", "output_1": "a", "output_2": "b", "label": 3}]
    (folder / "Natural.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"Natural.json: row 1: field label: expected 1 or 2, got 3"):
        load_source("llmbar", tmp_path)


def test_finegrained_preference_out_of_range(tmp_path, data_dir):
    rows = json.loads((data_dir / "finegrained-rlhf-qa-feedback" / "dev_feedback.json").read_text())[:3]
    rows[2]["preference"] = [0, 1, 7, 1, 0, 2]
    folder = tmp_path / "finegrained-rlhf-qa-feedback"
    folder.mkdir()
    (folder / "dev_feedback.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"dev_feedback.json: row 3: field preference: comparison 1v4 is 7"):
        load_source("finegrained-qa", tmp_path)


def test_bad_gzip_jsonl_row_in_hh_rlhf(tmp_path):
    folder = tmp_path / "hh-rlhf"
    folder.mkdir()
    good = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    with gzip.open(folder / "helpful-base_test.jsonl.gz", "wt") as out:
        out.write(json.dumps(good) + "\n" + json.dumps({"chosen": good["chosen"]}) + "\n")
    with pytest.raises(DataError, match=r"helpful-base_test.jsonl.gz: row 2: field rejected: missing field"):
        load_source("hh-rlhf", tmp_path)


def test_a_bad_source_stops_the_stage_before_anything_is_written(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", BAD_JSONL["identical responses"][0])
    out = tmp_path / "out"
    with pytest.raises(DataError):
        write_stage_pairs(load_sources([SourceConfig(str(path))]), {"train": 1.0}, out)
    assert not out.exists()


def test_skip_mode_reports_how_many_and_why(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", BAD_JSONL["unknown task"][0])
    pairs, report = load_source(SourceConfig(str(path), bad_rows="skip"))
    assert len(pairs) == 2 and report.rows == 3
    assert report.skipped == {"task: unknown task 'poetry' (known: chat, math, code, safety, instruction)": 1}
    assert "pairs.jsonl: row 2: field task" in report.skipped_examples[0]


def test_cli_data_json_counts_match_sources_md(data_dir):
    result = CliRunner().invoke(app, ["data", "--profile", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["rm-bench"]["pairs"] == 798
    assert counts["rm-bench"]["task"] == {"chat": 129, "code": 228, "safety": 441}
    assert counts["llmbar"]["pairs"] == 419
    assert counts["hh-rlhf"]["rows"] == 8552
    assert counts["finegrained-qa"]["pairs"] == 2616


# ---------------------------------------------------------------- ids: unique and present, sources never empty


def test_another_pair_under_a_used_id_is_refused_but_a_repeated_pair_is_a_duplicate(tmp_path):
    repeated = write_rows(tmp_path / "repeated.jsonl", [{**GOOD, "id": "a"}, {**GOOD, "id": "a"}])
    pairs, report = load_source(str(repeated))
    assert [p.id for p in pairs] == ["repeated/a"] and report.duplicates == 1
    clash = write_rows(tmp_path / "clash.jsonl", [{**GOOD, "id": "a"}, {**GOOD, "id": "b"}, {**GOOD, "prompt": "other", "id": "a"}])
    with pytest.raises(DataError, match=r"clash.jsonl: row 3: field id: id 'clash/a' is already used by row 1"):
        load_source(str(clash))
    pairs, report = load_source(SourceConfig(str(clash), bad_rows="skip"))
    assert [p.id for p in pairs] == ["clash/a"] and report.duplicates == 1
    assert list(report.skipped) == ["id: id 'clash/a' is already used by row 1 for another pair; ids must be unique"]


def test_two_sources_with_the_same_ids_are_refused(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        write_rows(tmp_path / folder / "pairs.jsonl", [GOOD])
    specs = [SourceConfig(str(tmp_path / "one" / "pairs.jsonl")), SourceConfig(str(tmp_path / "two" / "pairs.jsonl"))]
    with pytest.raises(DataError, match=r"one/pairs.jsonl and .*two/pairs.jsonl both have pair id 'pairs/1'"):
        load_sources(specs)


def test_an_empty_source_names_its_file(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    with pytest.raises(DataError, match=r"source .*empty.json: no pairs in .*empty.json \(0 rows read, 0 skipped\)"):
        load_source(str(path))


def test_a_truncated_gz_in_a_builtin_source_names_the_file(tmp_path):
    folder = tmp_path / "hh-rlhf"
    folder.mkdir()
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    data = gzip.compress("".join(json.dumps({**row, "chosen": row["chosen"] + str(i)}) + "\n" for i in range(3000)).encode())
    (folder / "helpful-base_test.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"helpful-base_test.jsonl.gz: row \d+: cannot be read \(.*\) \(a truncated file\?\)"):
        load_source("hh-rlhf", tmp_path)


def test_a_folder_given_as_a_pair_file_names_it(tmp_path):
    folder = tmp_path / "train.jsonl"
    folder.mkdir()
    with pytest.raises(DataError, match=r"train.jsonl: cannot be read \(Is a directory\)"):
        read_pairs(folder)


STORED = {"id": "hh/1", "source": "hh", "task": "chat", "prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("rows, message", [
    ([], r"train.jsonl: no pairs in the file"),
    ([STORED, {**STORED, "chosen": "c"}], r"train.jsonl: row 2: field id: id 'hh/1' is already used by row 1"),
    ([{**STORED, "id": None}], r"train.jsonl: row 1: field id: expected text, got NoneType"),
    ([{k: v for k, v in STORED.items() if k != "source"}], r"train.jsonl: row 1: field source: missing field"),
    ([{**STORED, "prompt": "q"}], r"train.jsonl: row 1: field prompt: expected a non-empty list"),
    ([{**STORED, "task": "poetry"}], r"train.jsonl: row 1: field task: unknown task 'poetry'"),
])
def test_read_pairs_checks_every_row_of_a_pair_file(rows, message, tmp_path):
    path = write_rows(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=message + r".*was it changed by hand" if rows else message):
        read_pairs(path)

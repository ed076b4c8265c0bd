"""data/README.md states the HH-RLHF counts that the loader reports on the real data."""

import re

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

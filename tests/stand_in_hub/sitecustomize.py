"""A stand-in for the Hugging Face hub, in the paper-path tier's subprocesses only.

`tests/test_paper_path.py` puts this folder first on PYTHONPATH, so Python imports this module at
start-up: `datasets.load_dataset` then answers the calls listed in $PATARM_STAND_IN_HUB (a JSON list of
{"path": hub id, "expects": the other arguments the kit must pass, "file": a local JSON-lines file of rows
in that dataset's own layout}) from those files, and passes every other call through. The kit's own hub
code path (data.loading, training.sft) runs unchanged; a hub id called with other arguments is an error.
"""

import json
import os

_HUB = json.loads(os.environ.get("PATARM_STAND_IN_HUB", "[]"))

if _HUB:
    import datasets

    _hub_load = datasets.load_dataset

    def load_dataset(path, *args, **kwargs):
        served = [entry for entry in _HUB if entry["path"] == path]
        if not served:
            return _hub_load(path, *args, **kwargs)
        asked = {key: value for key, value in kwargs.items() if value is not None}
        for entry in served:
            if asked == entry["expects"] and not args:
                return datasets.Dataset.from_json(entry["file"])
        raise ValueError(f"stand-in hub: {path} was asked for {args} {asked}; it serves {[e['expects'] for e in served]}")

    datasets.load_dataset = load_dataset

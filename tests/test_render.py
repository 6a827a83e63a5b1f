"""One number format for people (issue 11, item 14): 4 significant digits, `—` for missing, full precision in --json."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli
from maasctl.cli.render import number, value
from test_runs import make_run


def test_number_and_value():
    assert [number(v) for v in (0.949999988079071, 0.0282715, 6.951e-05, 1.0, 0.0, 32, None, True)] == [
        "0.9500", "0.02827", "6.951e-05", "1.000", "0", "32", "—", "True"]
    assert value(None) == value("") == value([]) == "—"
    assert value({"accuracy": 0.949999988079071, "loss": None}) == "accuracy 0.9500, loss —"


@pytest.mark.tf
def test_show_inspect_and_runs_use_it(store, models):
    meta = {"metrics": {"accuracy": 0.949999988079071, "loss": 0.0282715},
            "lineage": {"git_commit": None, "data_files": [{"role": "train", "path": "/d/wine.csv", "size": 9,
                                                            "sha256": "ab" * 32}]}}
    store.register(models["small"], "wine", meta=meta)
    shown = run_cli("show", "wine", store=store.root).stdout
    assert re.search(r"^metric accuracy +0\.9500$", shown, re.M) and re.search(r"^aliases +—$", shown, re.M), shown
    assert json.loads(run_cli("show", "wine", "--json", store=store.root).stdout)["metrics"]["accuracy"] == \
        0.949999988079071
    inspected = run_cli("inspect", "wine", store=store.root).stdout
    assert re.search(r"^metric loss +0\.02827$", inspected, re.M), inspected
    assert re.search(r"^lineage git_commit +—$", inspected, re.M), inspected
    assert re.search(r"^lineage data \(train\) +/d/wine\.csv sha256 abababababab$", inspected, re.M), inspected
    assert "None" not in inspected and "{" not in inspected

    make_run(store, "20261123-120000-aaaaaa")
    listed = run_cli("runs", "list", store=store.root).stdout
    assert "accuracy 0.9000" in listed, listed
    shown = run_cli("runs", "show", "20261123-120000-aaaaaa", store=store.root).stdout
    assert re.search(r"^metric accuracy +0\.9000$", shown, re.M) and re.search(r"^git commit +—$", shown, re.M)

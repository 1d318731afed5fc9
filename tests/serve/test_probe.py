"""The inspection probe as a module: with ``nbmcp.frames``, and as a kernel without nbmcp runs it."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from nbmcp.serve.kernel_tools.inspection import probe_source
from nbmcp.serve.languages import probe


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The probe reads ``__main__`` when no IPython shell runs: variables go there."""
    import __main__

    pd = pytest.importorskip("pandas")
    values = {"frame": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}), "items": [{"k": 1}, {"k": 2}]}
    for name, value in values.items():
        monkeypatch.setattr(__main__, name, value, raising=False)
    return values


def without_nbmcp() -> types.ModuleType:
    """The probe as the kernel runs it (source sent, executed as ``_nbmcp_probe``) where nbmcp is absent."""
    module = types.ModuleType("_nbmcp_probe")
    saved = {name: mod for name, mod in sys.modules.items() if name == "nbmcp" or name.startswith("nbmcp.")}
    try:
        for name in saved:
            del sys.modules[name]
        sys.modules["nbmcp"] = None  # type: ignore[assignment]
        exec(probe_source(), module.__dict__)
    finally:
        del sys.modules["nbmcp"]
        sys.modules.update(saved)
    return module


def test_probe_source_is_the_module_file_then_the_table_of_backends() -> None:
    from nbmcp.frames import kinds

    table = Path(kinds.__file__).read_text(encoding="utf-8")
    assert probe_source() == Path(probe.__file__).read_text(encoding="utf-8") + f"\n_use_kinds({table!r})\n"


@pytest.mark.parametrize("standalone", [False, True], ids=["with nbmcp", "without nbmcp"])
def test_variables_rows_and_descriptions(namespace: dict[str, Any], standalone: bool) -> None:
    module = without_nbmcp() if standalone else probe
    listed = json.loads(module.list_variables(1000))
    by_name = {v["name"]: v for v in listed["variables"]}
    assert by_name["frame"]["shape"] == [3, 2] and by_name["items"]["len"] == 2

    rows = json.loads(module.read_rows("frame", 1, 5, None))
    assert rows.pop("count_capped", False) is False  # with nbmcp the page says its total is exact
    assert rows == {
        "columns": ["a", "b"],
        "rows": [{"a": 2, "b": "y"}, {"a": 3, "b": "z"}],
        "offset": 1,
        "limit": 5,
        "total_rows": 3,
    }
    assert json.loads(module.read_rows("items", 0, 1, None))["rows"] == [{"k": 1}]

    described = json.loads(module.inspect_variable("frame", 4000))
    assert described["kind"] == "frame" and [c["name"] for c in described["columns"]] == ["a", "b"]
    assert described["head"][0] == {"a": 1, "b": "x"}


def test_unknown_names_suggest_close_ones(namespace: dict[str, Any]) -> None:
    answer = json.loads(probe.read_rows("fram", 0, 5, None))
    assert answer["error"].startswith("NameError") and "Did you mean: frame" in answer["error"]
    assert "not a table" in json.loads(probe.read_rows("frame.a.name", 0, 5, None))["error"]


@pytest.mark.parametrize("standalone", [False, True], ids=["with nbmcp", "without nbmcp"])
def test_big_integers_are_exact_strings_and_the_answer_names_their_columns(
    monkeypatch: pytest.MonkeyPatch, standalone: bool
) -> None:
    import __main__

    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": [1, 2**60], "code": ["9007199254740993", "x"]})
    monkeypatch.setattr(__main__, "ids", frame, raising=False)
    monkeypatch.setattr(__main__, "counts", [2**53, 5], raising=False)
    module = without_nbmcp() if standalone else probe
    rows = json.loads(module.read_rows("ids", 0, 5, None))
    assert rows["rows"] == [{"id": 1, "code": "9007199254740993"}, {"id": "1152921504606846976", "code": "x"}]
    assert rows["big_integers_as_strings"] == ["id"]
    assert "integers beyond ±2**53 in id are given as strings" in rows["note"]
    listed = json.loads(module.read_rows("counts", 0, 5, None))
    assert listed["rows"] == [{"index": 0, "value": "9007199254740992"}, {"index": 1, "value": 5}]
    assert listed["big_integers_as_strings"] == ["value"]
    small = json.loads(module.read_rows("ids", 0, 1, None))
    assert "big_integers_as_strings" not in small and "note" not in small

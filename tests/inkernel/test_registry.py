"""The registry on its own: plain Python, no kernel, no MCP."""

from __future__ import annotations

import dataclasses

import pytest

from nbmcp.inkernel.registry import Registry, RegistryEvent, ToolSpec


def test_snapshot_is_a_frozen_copy() -> None:
    registry = Registry()
    registry.add_tool(ToolSpec(fn=print, name="shout", description=""))
    registry.expose([1, 2], "numbers")
    snap = registry.snapshot()
    registry.add_tool(ToolSpec(fn=print, name="later", description=""))
    registry.unexpose("numbers")
    assert list(snap.tools) == ["shout"] and list(snap.objects) == ["numbers"]
    assert snap.prompts == {} and snap.resources == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.tools = {}  # type: ignore[misc]


def test_expose_publishes_any_value_strings_included() -> None:
    registry = Registry()
    events: list[RegistryEvent] = []
    registry.subscribe(events.append)
    registry.expose("a plain string", "motto", description="not a variable name")
    assert registry.get_object("motto").get() == "a plain string"
    assert events == [RegistryEvent("objects", "motto")]
    with pytest.raises(ValueError, match="needs a name"):
        registry.expose({"a": 1}, "")


def test_expose_variable_follows_the_name() -> None:
    registry = Registry()
    namespace = {"sales": [1]}
    registry.expose_variable("sales", namespace)
    registry.expose_variable("sales", namespace, name="orders", description="same list")
    namespace["sales"] = [1, 2, 3]
    assert registry.get_object("sales").get() == [1, 2, 3]
    assert registry.get_object("orders").description == "same list"
    del namespace["sales"]
    with pytest.raises(LookupError, match="not defined in the namespace any more"):
        registry.get_object("orders").get()
    with pytest.raises(NameError, match="assign it first"):
        registry.expose_variable("missing", namespace)
    with pytest.raises(ValueError, match="must be a Python identifier"):
        registry.expose_variable("x", {"x": 1}, name="not valid")


def test_requires_approval_is_the_one_word_for_approval() -> None:
    assert ToolSpec(fn=print, name="t", description="", requires_approval=True).requires_approval
    assert not ToolSpec(fn=print, name="t", description="").requires_approval

"""The public Python API (``nbmcp.expose``, ``@nbmcp.tool``) in this process: no server, no kernel needed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import nbmcp
from nbmcp.inkernel.registry import default_registry


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Whatever a test publishes is gone afterwards (the registry is the process's one)."""
    before = default_registry.snapshot()
    yield
    after = default_registry.snapshot()
    for name in set(after.objects) - set(before.objects):
        default_registry.unexpose(name)
    for name in set(after.tools) - set(before.tools):
        default_registry.remove_tool(name)


def test_expose_a_string_value(clean_registry: None) -> None:
    greeting = "hello"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        nbmcp.expose("hello, world", "greeting", description="a string is a value like any other")
    exposed = default_registry.snapshot().objects["greeting"]
    assert exposed.variable is None
    assert exposed.get() == "hello, world"
    assert exposed.description == "a string is a value like any other"
    assert greeting == "hello"  # no variable named like the value was looked up


def test_expose_a_value_follows_the_object(clean_registry: None) -> None:
    rows = [1, 2]
    nbmcp.expose(rows, "rows")
    rows.append(3)
    assert default_registry.snapshot().objects["rows"].get() == [1, 2, 3]


def test_expose_a_variable_follows_rebinding(clean_registry: None) -> None:
    global sales_for_test
    sales_for_test = [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbmcp.expose(variable="sales_for_test")
        nbmcp.expose(variable="sales_for_test", name="sales_alias", description="the same variable")
    exposed = default_registry.snapshot().objects["sales_for_test"]
    assert exposed.variable == "sales_for_test"
    sales_for_test = [1, 2]
    assert exposed.get() == [1, 2]
    assert default_registry.snapshot().objects["sales_alias"].get() == [1, 2]
    del sales_for_test


def test_the_old_spelling_warns_and_still_follows_the_variable(clean_registry: None) -> None:
    global old_spelling_for_test
    old_spelling_for_test = "first"
    with pytest.warns(DeprecationWarning, match=r"expose\(variable='old_spelling_for_test'\)") as caught:
        nbmcp.expose("old_spelling_for_test")
    assert caught[0].filename == __file__  # the warning points at the caller's line
    exposed = default_registry.snapshot().objects["old_spelling_for_test"]
    assert exposed.variable == "old_spelling_for_test"
    old_spelling_for_test = "second"
    assert exposed.get() == "second"
    del old_spelling_for_test


def test_a_value_needs_a_name(clean_registry: None) -> None:
    with pytest.raises(ValueError, match=r"needs a name: nbmcp.expose\(df, 'sales'\)"):
        nbmcp.expose([1, 2, 3])
    with pytest.raises(TypeError, match="needs a value and a name"):
        nbmcp.expose()
    with pytest.raises(TypeError, match="not both"):
        nbmcp.expose([1], "x", variable="y")  # type: ignore[call-overload]


def test_an_undefined_variable_is_a_name_error(clean_registry: None) -> None:
    with pytest.raises(NameError, match="'no_such_variable_here' is not defined"):
        nbmcp.expose(variable="no_such_variable_here")
    assert "no_such_variable_here" not in default_registry.snapshot().objects


def test_requires_approval(clean_registry: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @nbmcp.tool(requires_approval=True)
        def guarded_for_test() -> str:
            return "ok"

        @nbmcp.tool
        def open_for_test() -> str:
            return "ok"

    tools = default_registry.snapshot().tools
    assert tools["guarded_for_test"].requires_approval is True
    assert tools["open_for_test"].requires_approval is False


def test_confirm_still_works_with_a_deprecation_warning(clean_registry: None) -> None:
    with pytest.warns(DeprecationWarning, match=r"requires_approval") as caught:

        @nbmcp.tool(confirm=True)
        def confirmed_for_test() -> str:
            return "ok"

    assert caught[0].filename == __file__
    assert default_registry.snapshot().tools["confirmed_for_test"].requires_approval is True

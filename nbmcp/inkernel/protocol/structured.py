"""Structured tool output and JSON-Schema inputs for the in-kernel server.

Output: a tool whose return annotation is data the SDK can model — a TypedDict, dataclass, pydantic model,
``dict[str, X]``, ``list[X]`` (any generic container) — gets the SDK's ``outputSchema``; each result's value is
validated against it and sent as ``structuredContent`` next to nbmcp's own text (tables, JSON). Scalars
(``-> str``, ``-> int``) and values the SDK cannot model (frames, figures) keep nbmcp's conversion and no
schema: a schema-bound copy of a long string would double every result and escape the output budget.
The SDK builds the model (``func_metadata``); nbmcp only decides when to ask and names the field that failed.
A ``float`` may be NaN or infinite, which JSON carries as ``null``: published schemas say ``number | null`` wherever
they say ``number`` (:func:`nullable_numbers`), so such a value reaches the client as a valid ``null``.

Input: ``@nbmcp.tool(input_schema={...})`` publishes the schema verbatim (``$defs``, ``oneOf``,
``additionalProperties`` and all) and validates arguments with ``jsonschema`` (a dependency of the SDK),
since type hints cannot say it; the SDK's own argument model then accepts anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import typing
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from ... import frames
from ..registry import ToolSpec

__all__ = [
    "InvalidArguments",
    "InvalidOutput",
    "check_input_schema",
    "nullable_numbers",
    "output_metadata",
    "remember_arguments",
    "structured_content",
    "validate_arguments",
]

_CONTAINERS = (list, tuple, set, frozenset, dict)
_cache: weakref.WeakKeyDictionary[Callable[..., Any], FuncMetadata | None] = weakref.WeakKeyDictionary()


class InvalidOutput(ValueError):
    """A tool's value does not match its return annotation (the message names the fields)."""


class InvalidArguments(ValueError):
    """Arguments that do not match a tool's ``input_schema`` (the message names the fields)."""


def _is_data(annotation: Any) -> bool:
    """True for the return annotations that get an ``outputSchema``."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in _CONTAINERS:
        return True
    if not inspect.isclass(annotation):
        return False
    return issubclass(annotation, BaseModel) or typing.is_typeddict(annotation) or dataclasses.is_dataclass(annotation)


def return_annotation(spec: ToolSpec) -> Any:
    """What the shim declares as its return type: the user's, when it gets an ``outputSchema``."""
    if output_metadata(spec) is None:
        return inspect.Signature.empty
    return typing.get_type_hints(spec.fn, include_extras=True)["return"]


def output_metadata(spec: ToolSpec) -> FuncMetadata | None:
    """The SDK's metadata for ``spec``'s structured output, or None when its results are not structured."""
    if spec.structured_output is False:
        return None
    fn = spec.fn
    try:
        return _cache[fn]
    except (KeyError, TypeError):
        pass
    meta = None
    hints = typing.get_type_hints(fn, include_extras=True)
    if "return" in hints and (spec.structured_output or _is_data(hints["return"])):
        skip = [name for name, hint in hints.items() if _is_context(hint)]
        try:
            meta = func_metadata(fn, skip_names=skip, structured_output=True)
        except Exception:
            if spec.structured_output:
                raise
            meta = None  # an annotation the SDK cannot model: unstructured, as before
        if meta is not None and meta.output_schema is None:
            meta = None
    with contextlib.suppress(TypeError):  # not weak-referenceable (a builtin): computed each time
        _cache[fn] = meta
    return meta


def structured_content(spec: ToolSpec, value: Any) -> dict[str, Any] | None:
    """``value`` validated against ``spec``'s output model, as JSON data; None if ``spec`` has none.

    Raises :class:`InvalidOutput` naming each field that does not match.
    """
    meta = output_metadata(spec)
    if meta is None:
        return None
    try:
        try:
            return meta.convert_result(value).structured_content  # type: ignore[union-attr]
        except PydanticSerializationError:
            # Values JSON cannot hold as they are (numpy scalars, timestamps...) inside an `Any`: made safe
            # the way nbmcp makes every result safe, then validated again.
            return meta.convert_result(frames.to_jsonable(value)).structured_content  # type: ignore[union-attr]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            if meta.wrap_output and location[:1] == ["result"]:
                location = location[1:]
            field = ".".join(location) or "(the value)"
            problems.append(f"field {field!r}: {error['msg']}")
        raise InvalidOutput(
            f"tool {spec.name!r} returned a value that does not match its return annotation: " + "; ".join(problems)
        ) from None


_NOT_SCHEMAS = frozenset({"default", "examples", "const", "enum"})  # keys whose values are data, not schemas
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})  # name -> schema


def nullable_numbers(schema: Any) -> Any:
    """A copy of the JSON Schema ``schema`` in which every ``number`` also admits ``null``.

    A float that is NaN or infinite goes on the wire as ``null`` (JSON has no such numbers; pydantic writes
    ``null``), and a client that validates ``structuredContent`` against a plain ``number`` rejects the whole
    result. ``null`` there means "no finite number". Integers cannot be NaN and stay as they are.
    """
    if isinstance(schema, list):
        return [nullable_numbers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NOT_SCHEMAS:
            copied[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):  # a field may be named "type" or "default"
            copied[key] = {name: nullable_numbers(sub) for name, sub in value.items()}
        else:
            copied[key] = nullable_numbers(value)
    kind = copied.get("type")
    if kind == "number":
        copied["type"] = ["number", "null"]
    elif isinstance(kind, list) and "number" in kind and "null" not in kind:
        copied["type"] = [*kind, "null"]
    return copied


def check_input_schema(schema: Mapping[str, Any], fn: Callable[..., Any], *, label: str) -> dict[str, Any]:
    """``schema`` checked as a JSON Schema for ``fn``'s arguments; returned as a plain dict, verbatim."""
    import jsonschema

    schema = dict(schema)
    if schema.get("type", "object") != "object":
        raise ValueError(f'input_schema of {label} must describe an object ("type": "object"), one key per argument')
    schema.setdefault("type", "object")
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"input_schema of {label} is not a valid JSON Schema: {exc.message}") from None
    parameters = inspect.signature(fn).parameters
    unknown = [name for name in schema.get("properties", {}) if name not in parameters]
    if unknown:
        raise ValueError(
            f"input_schema of {label} has properties {unknown} that are not parameters of the function; "
            f"its parameters are: {', '.join(parameters) or '(none)'}"
        )
    return schema


_raw_arguments: contextvars.ContextVar[Any] = contextvars.ContextVar("nbmcp_raw_arguments", default=None)


async def remember_arguments(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Middleware: keep a ``tools/call``'s arguments as sent, for :func:`validate_arguments` (the SDK's argument
    model drops the properties a signature does not name, which ``additionalProperties`` must see)."""
    if ctx.method != "tools/call":
        return await call_next(ctx)
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    token = _raw_arguments.set(params.get("arguments") or {})
    try:
        return await call_next(ctx)
    finally:
        _raw_arguments.reset(token)


def validate_arguments(spec: ToolSpec, arguments: dict[str, Any]) -> None:
    """Raise :class:`InvalidArguments` naming every argument ``spec.input_schema`` rejects (judged on the
    arguments as the client sent them, when known)."""
    if spec.input_schema is None:
        return
    raw = _raw_arguments.get()
    if isinstance(raw, Mapping):
        arguments = dict(raw)
    import jsonschema

    validator_class = jsonschema.validators.validator_for(spec.input_schema, default=jsonschema.Draft202012Validator)
    errors = sorted(validator_class(spec.input_schema).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        problems = [f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message}" for e in errors[:10]]
        raise InvalidArguments(f"invalid arguments for tool {spec.name!r}: " + "; ".join(problems))


def _is_context(annotation: Any) -> bool:
    from mcp.server.mcpserver import Context

    return inspect.isclass(annotation) and issubclass(annotation, Context)

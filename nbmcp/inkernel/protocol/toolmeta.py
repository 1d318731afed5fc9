"""What a client is told about a tool besides its schema: annotations (hints) and icons, from a :class:`ToolSpec`."""

from __future__ import annotations

from typing import Any

from mcp.types import Icon, ToolAnnotations

from ..registry import ToolSpec

__all__ = ["annotations_of", "icons_of"]


def annotations_of(spec: ToolSpec) -> ToolAnnotations | None:
    """MCP tool annotations for ``spec``; None when it sets none (the protocol's defaults then apply)."""
    hints = {
        "read_only_hint": True if spec.read_only else None,
        "destructive_hint": spec.destructive,
        "idempotent_hint": spec.idempotent,
        "open_world_hint": spec.open_world,
    }
    given = {key: value for key, value in hints.items() if value is not None}
    return ToolAnnotations(**given) if given else None


def icons_of(icons: list[Any] | None) -> list[Icon] | None:
    """The SDK's ``Icon`` objects for icons given as URLs, dicts (camelCase or snake_case) or ``Icon``."""
    if not icons:
        return None
    converted = []
    for icon in icons:
        if isinstance(icon, Icon):
            converted.append(icon)
        elif isinstance(icon, str):
            converted.append(Icon(src=icon))
        else:
            converted.append(Icon.model_validate(dict(icon)))
    return converted

"""Package shape: a light import, the public API, and imports flowing one way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbmcp

PACKAGE = Path(nbmcp.__file__).parent

# Lower layers never import higher ones: registry/values/frames -> server -> http -> extension/magics/widgets/cli.
LAYERS = {
    "registry": 0,
    "capture": 0,
    "config": 0,
    "discovery": 0,
    "frames": 0,
    "values": 1,
    "server": 2,
    "audit": 2,
    "http": 3,
    "client": 3,
    "kernel": 3,
    "extension": 4,
    "magics": 4,
    "widgets": 4,
    "jupyter": 4,
    "demo": 5,
    "cli": 5,
}


def test_import_is_light() -> None:
    code = (
        "import sys, json, nbmcp\n"
        "heavy = ['mcp', 'mcp_types', 'uvicorn', 'starlette', 'pandas', 'polars', 'pyarrow', 'IPython', 'numpy']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert loaded == []


def test_public_api() -> None:
    assert sorted(nbmcp.__all__) == sorted(
        [
            "Context",
            "__version__",
            "expose",
            "info",
            "load_ipython_extension",
            "panel",
            "prompt",
            "resource",
            "start",
            "stop",
            "tool",
            "unexpose",
            "unload_ipython_extension",
        ]
    )
    for name in nbmcp.__all__:
        assert getattr(nbmcp, name) is not None
    from mcp.server.mcpserver import Context

    assert nbmcp.Context is Context


def _module_layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "nbmcp" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    found |= {f"{target}.{alias.name}" for alias in node.names}
                else:
                    found.add(target)
            elif node.module:
                found.add(node.module)
    return found


def test_imports_flow_one_way() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        if module == "nbmcp":
            continue  # the public API module imports lazily from every layer
        layer = _module_layer(module)
        if layer is None:
            continue
        for imported in _imports(path, module):
            target = _module_layer(imported)
            if target is not None and target > layer:
                violations.append(f"{module} (layer {layer}) imports {imported} (layer {target})")
    assert violations == []


def test_registry_imports_neither_ipython_nor_mcp() -> None:
    imported = _imports(PACKAGE / "registry.py", "nbmcp.registry")
    assert not {m for m in imported if m.split(".")[0] in ("IPython", "mcp", "ipykernel")}

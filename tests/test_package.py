"""Package shape: a light import, the public API, one house with three wings, no private reach-across."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbmcp

PACKAGE = Path(nbmcp.__file__).parent

# The ground floor is used by every wing and imports no wing. Each wing imports the ground floor and its own
# rooms; another wing only through that wing's package (its public names), and only where listed. The roof
# (the public API module, the CLI and its commands) may import anything.
GROUND = {"_version", "exceptions", "sdk", "transport", "content", "frames", "discovery", "client", "tasks"}
WINGS = {"inkernel", "serve", "jupyter"}
ROOF = {"__init__", "__main__", "cli", "bridge", "demo"}
WING_USES = {"jupyter": {"serve"}}  # the Jupyter Server extension serves `nbmcp serve`'s tools

# Private names of other packages read on purpose, each with the reason it cannot be avoided.
PRIVATE_ALLOWED = {
    ("nbmcp/sdk.py", "_lowlevel_server"): "the SDK's low-level server: one module owns every such reach",
    ("nbmcp/sdk.py", "_connection"): "the SDK keeps a session's Connection private (documented per-connection state)",
    ("nbmcp/inkernel/registry.py", "_getframe"): "sys._getframe: the caller's namespace for expose(variable=...)",
    ("nbmcp/jupyter/__init__.py", "_load_jupyter_server_extension"): "Jupyter Server's extension entry point",
    ("nbmcp/inkernel/panel.py", "_reply_subshell_for"): "ipykernel 7's only hook to keep panel clicks off a busy shell",
    # Spark's own parser must check what Spark runs (issue 19): PySpark reaches it, and the plan it runs, only here.
    ("nbmcp/frames/spark_sql.py", "_jsparkSession"): "Spark's SQL parser and Dataset.ofRows: the JVM session only",
    ("nbmcp/frames/spark_sql.py", "_jvm"): "the JVM classes of the plan nodes the checker allows (py4j)",
    ("nbmcp/frames/spark_sql.py", "_jdf"): "a frame's analysed plan, to make its view in the query's own session",
    ("nbmcp/frames/spark_sql.py", "_1"): "a Scala Tuple2's first field (a plan node's CTE definitions, via py4j)",
    ("nbmcp/frames/spark_sql.py", "_2"): "a Scala Tuple2's second field",
    ("nbmcp/frames/spark_bounds.py", "_jdf"): "a checked frame's plan, to cut its values inside Spark",
    ("nbmcp/jupyter/hub/protect.py", "_jupyter_current_user"): (
        "Jupyter Server keeps the request's user there, where its identity provider would: an OAuth token signs "
        "the user in in its place"
    ),
}


def _module_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def _imports(path: Path, module: str) -> set[str]:
    """Every nbmcp module ``path`` imports, at any depth (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text())
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "nbmcp":  # every nbmcp module runs nbmcp/__init__ first: not an edge worth drawing
                found.add(target)
            # `from . import x` / `from .. import content` import submodules or subpackages by name
            found |= {f"{target}.{alias.name}" for alias in node.names if _is_module(f"{target}.{alias.name}")}
    return {name for name in found if name.split(".")[0] == "nbmcp" and name != "nbmcp"}


def _is_module(name: str) -> bool:
    parts = name.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules() -> dict[str, Path]:
    return {_module_of(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


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
            "ApprovalDenied",
            "ClientConnectError",
            "Context",
            "KernelDeadError",
            "KernelSessionError",
            "NbMCPError",
            "StaleNotebookError",
            "ToolContext",
            "ToolTimeout",
            "UpstreamError",
            "__version__",
            "embed_resource",
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
    for name in [n for n in nbmcp.__all__ if n.endswith(("Error", "Denied", "Timeout"))]:
        assert issubclass(getattr(nbmcp, name), nbmcp.NbMCPError)


def test_init_holds_no_logic() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == ["__getattr__"]  # only the lazy re-export of the SDK's Context


def test_every_module_has_a_room() -> None:
    rooms = {_room(module) for module in _modules()}
    assert rooms <= GROUND | WINGS | ROOF, rooms - (GROUND | WINGS | ROOF)


def test_imports_go_downward_only() -> None:
    violations = []
    for module, path in _modules().items():
        room = _room(module)
        if room in ROOF:
            continue
        for imported in _imports(path, module):
            target = _room(imported)
            if target == room or target in GROUND:
                continue
            if room in GROUND:
                violations.append(f"{module} (ground floor) imports {imported}")
            elif target in WINGS and target in WING_USES.get(room, set()):
                if imported != f"nbmcp.{target}":
                    violations.append(f"{module} imports {imported}: use the public names of nbmcp.{target}")
            else:
                violations.append(f"{module} ({room}) imports {imported} ({target})")
    assert violations == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {
        module: {m for m in _imports(path, module) if m in modules and m != module} for module, path in modules.items()
    }

    def package_of(name: str) -> set[str]:
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start and start not in package_of(trail[-1]):
                    cycles.append(" -> ".join([*trail, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def test_no_private_reach_across() -> None:
    """No module reads another object's ``_private`` attribute or imports another module's ``_private`` name."""
    violations = []
    for path in _modules().values():
        tree = ast.parse(path.read_text())
        own_classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        relative = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and (base.id in ("self", "cls") or base.id in own_classes):
                    continue
                if isinstance(base, ast.Name) and base.id.startswith("_") and not base.id.startswith("__"):
                    continue  # this module's own private object
                if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                    continue
                if (relative, node.attr) in PRIVATE_ALLOWED:
                    continue
                violations.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
            elif (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("nbmcp", "."))) or (
                isinstance(node, ast.ImportFrom) and node.level
            ):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__") and alias.name != "_version":
                        violations.append(f"{relative}:{node.lineno}: imports {alias.name}")
    assert violations == []


def test_no_attributes_bolted_onto_foreign_objects() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "type: ignore[attr-defined]" in line:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_registry_imports_neither_ipython_nor_mcp() -> None:
    imported = set()
    for node in ast.walk(ast.parse((PACKAGE / "inkernel" / "registry.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {m for m in imported if m.split(".")[0] in ("IPython", "mcp", "ipykernel")}


def test_the_client_is_reachable_from_import_nbmcp_and_stays_light() -> None:
    # the README's form: `import nbmcp`, then `nbmcp.client.session(...)` (an AttributeError before)
    code = (
        "import sys, json, nbmcp\n"
        "session = nbmcp.client.session\n"
        "print(json.dumps([session.__module__, [m for m in ('mcp', 'mcp_types', 'httpx') if m in sys.modules]]))"
    )
    module, loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert module == "nbmcp.client" and loaded == []

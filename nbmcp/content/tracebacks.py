"""Errors -> MCP errors (``isError: true``): ``Type: message`` and a short, ANSI-free traceback of the
user's code — not nbmcp's, the SDK's or the event loop's frames."""

from __future__ import annotations

import sysconfig
import traceback as _traceback
from pathlib import Path

from .converted import Converted, text_block
from .terminal import strip_ansi

__all__ = ["TRACEBACK_CHARS", "TRACEBACK_LINES", "error_converted", "exception_converted"]

TRACEBACK_LINES = 30
TRACEBACK_CHARS = 4_000

# frames that only lead into the user's code: the module runner, IPython's cell runner, the kernel
_HIDDEN_RUNNER = ("runpy", "IPython.core.interactiveshell", "ipykernel")


def _short_traceback(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    omitted = 0
    if len(lines) > TRACEBACK_LINES:
        omitted = len(lines) - TRACEBACK_LINES
        lines = lines[-TRACEBACK_LINES:]
    out = "\n".join(lines)
    if len(out) > TRACEBACK_CHARS:
        omitted_chars = len(out) - TRACEBACK_CHARS
        out = out[-TRACEBACK_CHARS:]
        out = out[out.find("\n") + 1 :] if "\n" in out[:200] else out
        return f"[... {omitted_chars} characters of traceback omitted ...]\n{out}"
    if omitted:
        return f"[... {omitted} lines of traceback omitted ...]\n{out}"
    return out


def error_converted(ename: str, evalue: str, traceback: list[str] | None) -> Converted:
    """A kernel ``error`` output (or any named error) as an MCP error: ``ename: evalue`` then the last
    ~30 lines / ~4,000 characters of the traceback, ANSI-free."""
    ename, evalue = strip_ansi(str(ename)), strip_ansi(str(evalue))
    tb = _short_traceback(strip_ansi("\n".join(traceback))) if traceback else ""
    header = f"{ename}: {evalue}" if evalue else ename
    text = header + ("\n\n" + tb if tb else "")
    return Converted([text_block(text)], {"ename": ename, "evalue": evalue, "traceback": tb}, is_error=True)


def _stdlib_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(str(Path(path).resolve()))
    return tuple(dirs)


_STDLIB = _stdlib_dirs()


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return path.startswith(_STDLIB) and "site-packages" not in path and "dist-packages" not in path


def _hidden(module: str, hide_modules: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in hide_modules + _HIDDEN_RUNNER)


def exception_converted(
    exc: BaseException,
    *,
    hide_modules: tuple[str, ...] = (
        "nbmcp",
        "mcp",
        "anyio",
        "starlette",
        "uvicorn",
        "concurrent",
        "asyncio",
        "threading",
    ),
) -> Converted:
    """An exception raised by a user's tool as an MCP error: ``Type: message`` plus a short traceback of
    the user's frames. Frames of ``hide_modules`` (nbmcp, the SDK, the event loop, thread pools) and the
    stdlib frames that lead into the user's code are dropped; stdlib/library frames *below* the user's
    code stay (they say where the error was raised)."""
    kept = []
    seen_user = False
    for frame, lineno in _traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if _hidden(module, hide_modules):
            continue
        if not seen_user and _is_stdlib(frame.f_code.co_filename):
            continue
        seen_user = True
        kept.append((frame, lineno))
    ename = type(exc).__qualname__
    if type(exc).__module__ not in ("builtins", "__main__"):
        ename = f"{type(exc).__module__}.{ename}"
    evalue = str(exc)
    lines: list[str] = []
    if kept:
        stack = _traceback.StackSummary.extract(kept, capture_locals=False)
        lines = ["Traceback (most recent call last):\n", *stack.format()]
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        lines.append(f"(caused by {type(cause).__qualname__}: {cause})\n")
    tb = _short_traceback(strip_ansi("".join(lines))) if lines else ""
    header = f"{ename}: {evalue}" if evalue else ename
    text = header + ("\n\n" + tb if tb else "")
    return Converted([text_block(text)], {"ename": ename, "evalue": evalue, "traceback": tb}, is_error=True)

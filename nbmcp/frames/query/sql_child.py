"""A query's values are built in a child: a copy-on-write fork of the kernel under an address-space limit.

DuckDB's ``memory_limit`` bounds its operators but not the values it builds: it evaluates 2,048 rows of every
expression at once, outside that limit, so ``max(length(repeat('x', 60000000) || i))`` over 200 rows took
11.7 GB, and fifty ``upper()``s of a 64 KiB value 5 GB (measured, DuckDB 2.0.1). No check of the SQL text can
bound every such shape; an address space can. So on Linux the query runs in a forked child of the kernel:

- the child sees the kernel's frames at no copy (the fork shares their memory until written), runs the query on
  the cursor prepared for it, and sends back only the bounded result (``sql_bounds.Fetched``) through a pipe;
- its address space is capped at what it had at the fork plus the query's budget (DuckDB's memory limit, the
  result bounds and 1 GiB for values), and the system's OOM killer picks it first: a query that needs more
  fails with a clear message, and the kernel never allocates a byte of it;
- a source that needs the kernel's own threads to be read (a polars lazy frame, a DuckDB relation on the user's
  connection) is streamed to the child as Arrow IPC through a pipe by a thread of the kernel;
- the time limit kills the child; the kernel's interrupt (SIGINT to its process group) does not reach it;
- a query made only of arithmetic, comparisons, aggregates and dates (:func:`builds_values` is False) builds no
  value larger than a number: it runs in the kernel, on a locked database, at engine speed, without a fork.

Elsewhere (no ``fork``: Windows, and macOS, where a forked child may not use system frameworks) the query runs
in the kernel as before, bounded by the value guards of :mod:`nbmcp.frames.query.sql_bounds` alone.

Only the standard library is imported here at import time (``nbmcp serve`` sends this source to the kernel).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "VALUES_HEADROOM",
    "available",
    "builds_values",
    "fork_lock",
    "parse_size",
    "prepare",
    "run_here",
    "run_in_child",
    "scannable",
]

VALUES_HEADROOM = 1024**3  # what a query's values may take beyond DuckDB's memory limit and the result bounds
_OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
fork_lock = threading.RLock()  # held around each fork, and by whoever uses the forked database meanwhile
_open_pipes: set[int] = set()  # both ends of the pipes of the queries running now


def available() -> bool:
    """Whether queries run in a forked child here (Linux with ``fork``)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def parse_size(text: str) -> int:
    """DuckDB's way of writing a size (``1.8 GiB``, ``2000MB``, ``512.0 KiB``) in bytes."""
    units = {"b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
    units |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
    text = text.strip()
    digits = len(text)
    while digits and not text[digits - 1].isdigit():
        digits -= 1
    return int(float(text[:digits]) * units[text[digits:].strip().lower() or "b"])


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover (Linux always says)


def _pump(reader: Any, fd: int) -> None:
    """Write ``reader``'s batches to ``fd`` as an Arrow IPC stream (a kernel thread, while the child reads)."""
    import pyarrow as pa

    try:
        with os.fdopen(fd, "wb") as pipe, pa.ipc.new_stream(pipe, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except (BrokenPipeError, OSError, pa.ArrowException):
        pass  # the child is gone (finished early, failed or timed out): it says why through its own pipe


def _child(
    work: Callable[[Any, dict[str, Any]], Any], con: Any, streams: dict[str, int], out: int, cap: int, spill: str
) -> None:
    """In the child: limit its memory, read the streams, run ``work``, send its result or error, and exit."""
    code = 0
    try:
        gc.disable()  # a collection would write to every object's header: copies of the kernel's pages, for nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's interrupt is for their cell
        with contextlib.suppress(OSError), open(_OOM_SCORE_ADJ, "w") as adj:
            adj.write("1000")
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        import pyarrow as pa

        readers = {name: pa.ipc.open_stream(os.fdopen(fd, "rb")) for name, fd in streams.items()}
        try:
            prepare(con, spill)
            answer: tuple[str, Any] = ("ok", work(con, readers))
        except MemoryError:
            answer = ("memory", "")
        except Exception as exc:  # the parent raises it again with its message
            answer = ("error", (type(exc).__name__, str(exc)))
        try:
            payload = pickle.dumps(answer, protocol=5)
        except MemoryError:
            payload = pickle.dumps(("memory", ""))
        with os.fdopen(out, "wb") as pipe:
            pipe.write(payload)
    except BaseException:  # a forked child never returns into the kernel's code: it exits, whatever happened
        code = 1
    finally:
        os._exit(code)


def _read_all(fd: int, deadline: float) -> bytes | None:
    """The child's answer, or None when the deadline passed first."""
    chunks = []
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([pipe], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = pipe.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def run_in_child(
    work: Callable[[Any, dict[str, Any]], Any],
    con: Any,
    streams: dict[str, Any],
    budget: int,
    timeout: float,
    errors: dict[str, type[Exception]],
    timed_out: str,
    out_of_memory: str,
    spill: str = "",
) -> Any:
    """``work(con, readers)`` in a forked child whose address space may grow by ``budget`` bytes; its result.

    ``streams`` are ``pyarrow.RecordBatchReader``s read in the kernel and passed to the child by pipe (``work``
    gets them by name). An exception ``work`` raises is raised here again as the class of ``errors`` of its name
    (else ``errors["QueryError"]``); ``timed_out`` and ``out_of_memory`` are what to say when the child took
    too long (it is killed) or died or failed for want of memory. The child spills under a directory of its own in
    ``spill`` (DuckDB's ``temp_directory`` of ``con``, when nbmcp made it), removed here when it ends.
    """
    # imported before the fork: the child must not import what it can avoid (another thread may hold a lock)
    import resource  # noqa: F401

    import pyarrow  # noqa: F401

    with fork_lock:  # the pipes of queries running meanwhile are known to the child, which closes them
        out_r, out_w = os.pipe()
        pipes = {name: os.pipe() for name in streams}
        mine = {out_r, out_w, *(fd for ends in pipes.values() for fd in ends)}
        _open_pipes.update(mine)
        cap = _address_space() + budget
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: "fork() may lead to deadlocks"
            pid = os.fork()
        if pid == 0:  # pragma: no cover (runs in the child; its outcome is what the tests check)
            for fd in _open_pipes - {out_w, *(ends[0] for ends in pipes.values())}:
                os.close(fd)
            _child(work, con, {name: ends[0] for name, ends in pipes.items()}, out_w, cap, spill)
        _open_pipes.difference_update(mine)
    os.close(out_w)
    pumps = []
    for name, (read_end, write_end) in pipes.items():
        os.close(read_end)
        pump = threading.Thread(target=_pump, args=(streams[name], write_end), name="nbmcp-query-stream", daemon=True)
        pump.start()
        pumps.append(pump)
    payload = None
    try:
        payload = _read_all(out_r, time.monotonic() + timeout)
    finally:
        if payload is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if spill:
            shutil.rmtree(os.path.join(spill, str(pid)), ignore_errors=True)
        for pump in pumps:
            pump.join(5)
    if payload is None:
        raise errors["QueryTimeout"](timed_out)
    if not payload and os.WIFSIGNALED(status):  # the OOM killer, or a failed allocation that aborted
        raise errors["QueryError"](f"{out_of_memory} (its process was ended by signal {os.WTERMSIG(status)})")
    if not payload:
        raise errors["QueryError"](f"the query's process ended without an answer (exit status {status >> 8})")
    kind, value = pickle.loads(payload)
    if kind == "ok":
        return value
    if kind == "memory":
        raise errors["QueryError"](out_of_memory)
    name, message = value
    raise errors.get(name, errors["QueryError"])(message)


def run_here(
    work: Callable[[Any, dict[str, Any]], Any], con: Any, readers: dict[str, Any], timeout: float, timed_out: Exception
) -> Any:
    """``work(con, readers)`` in the kernel itself (no fork here), interrupted at the time limit."""
    import duckdb

    timer = threading.Timer(timeout, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        return work(con, readers)
    except duckdb.InterruptException:
        raise timed_out from None
    finally:
        timer.cancel()


def prepare(con: Any, spill: str = "") -> None:
    """In the child, before the query: DuckDB's worker threads (the kernel's copy of the database has none, so a
    fork loses none), a spill directory of the child's own under ``spill`` (two children must not share DuckDB's
    spill files; the kernel removes it when the child ends, even killed), then external access off and the
    configuration locked: from here on nothing the query does can change a setting."""
    con.execute(f"SET threads = {len(os.sched_getaffinity(0))}")
    if spill:
        con.execute("SET temp_directory = ?", [os.path.join(spill, str(os.getpid()))])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def scannable(obj: Any) -> Any | None:
    """What a forked child may scan in place for ``obj``: itself (pandas, pyarrow: plain memory, and pyarrow
    restarts its thread pool after a fork), a polars DataFrame's Arrow table (zero-copy), or None: streamed in
    by the kernel instead (a polars LazyFrame runs on polars' thread pool, which a forked child has not)."""
    root = type(obj).__module__.split(".")[0]
    if root in ("pandas", "pyarrow"):
        return obj
    if root == "polars" and type(obj).__name__ == "DataFrame":
        return obj.to_arrow()
    return None


# A query made only of these builds no value larger than a number: it cannot run the kernel out of memory outside
# DuckDB's memory limit (2,048 rows x a few bytes per expression), so it runs in the kernel, at engine speed.
_FIXED_SIZE_FUNCTIONS = frozenset(
    {
        "+", "-", "*", "/", "//", "%", "**", "^", "abs", "round", "floor", "ceil", "ceiling", "sqrt", "cbrt", "ln",
        "log", "log2", "log10", "exp", "pow", "power", "sign", "trunc", "mod", "isnan", "isinf", "isfinite",
        "count", "count_star", "count_if", "countif", "sum", "fsum", "sum_no_overflow", "avg", "mean", "min", "max",
        "median", "mode", "quantile_cont", "quantile_disc", "approx_quantile", "approx_count_distinct", "stddev",
        "stddev_pop", "stddev_samp", "var_pop", "var_samp", "variance", "corr", "covar_pop", "covar_samp", "kurtosis",
        "skewness", "entropy", "product", "bool_and", "bool_or", "arg_min", "arg_max", "argmin", "argmax", "first",
        "last", "any_value",
        "~~", "!~~", "~~*", "!~~*", "~~~", "regexp_matches", "starts_with", "ends_with", "contains", "prefix",
        "suffix", "length", "strlen", "char_length", "len", "octet_length", "array_length", "cardinality", "hash",
        "date_trunc", "datetrunc", "date_part", "datepart", "year", "month", "day", "hour", "minute", "second",
        "dayofweek", "dayofyear", "dayofmonth", "week", "weekofyear", "quarter", "epoch", "epoch_ms", "date_diff",
        "datediff", "date_sub", "datesub", "make_date",
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
    }
)  # fmt: skip
_FIXED_SIZE_TYPES = frozenset(
    {
        "BOOLEAN", "BOOL", "TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC", "DATE", "TIME",
        "TIMESTAMP", "TIMESTAMPTZ", "DATETIME", "INTERVAL", "INT1", "INT2", "INT4", "INT8",
    }
)  # fmt: skip
_PLAIN_CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "BETWEEN", "STAR", "SUBQUERY"}
_PLAIN_OPERATORS = {"COMPARE_IN", "COMPARE_NOT_IN", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "OPERATOR_NOT"}


def builds_values(tree: Any) -> bool:
    """Whether a query (DuckDB's serialized parse tree) may build a value larger than a number: any function,
    cast or expression but arithmetic, comparisons, aggregates and dates (a ``CASE``, a string function, a cast
    to text...). Those run in the forked child; the others in the kernel."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("class")
        if kind in ("FUNCTION", "WINDOW"):
            if str(node.get("function_name", "")).lower() not in _FIXED_SIZE_FUNCTIONS:
                return True
        elif kind == "CAST":
            target = node.get("type_expr") or {}
            if str(target.get("type_name", "")).upper() not in _FIXED_SIZE_TYPES or target.get("children"):
                return True
            node = {k: v for k, v in node.items() if k != "type_expr"}
        elif kind == "OPERATOR":
            if node.get("type") not in _PLAIN_OPERATORS:
                return True
        elif kind is not None and kind not in _PLAIN_CLASSES:
            return True
        stack.extend(node.values())
    return False

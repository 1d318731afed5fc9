"""One small interface over every frame backend: schema, capped row counts, pushed-down pages, profiles and
Arrow record-batch streams.

:func:`source_for` picks the adapter of an object (eager pandas/polars/Arrow frames, polars ``LazyFrame``,
Arrow readers and datasets, DuckDB relations, Ibis tables, Dask and PySpark DataFrames, one module per
family under :mod:`nbmcp.frames.adapters`). It imports no backend: an adapter is tried only when its
library is already in ``sys.modules`` (an object of it exists).

Rules every adapter keeps:

- a page runs as the backend's own query (``limit/offset``, ``slice``, row-group skipping, partition
  lengths) and builds only the page, never the source;
- a count that is not free counts at most ``count_cap + 1`` rows and otherwise says "more than N";
- anything streamed stops at a byte cap decided by the caller.

Lazy sources (everything but eager frames) describe a computation that does not change between reads, so
their adapter (with its cached count) is kept per object; eager frames may be mutated in place and are
re-read every time (their counts are free).
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .jsonable import to_jsonable
from .kinds import backend_of
from .pages import check_columns, name_list, page_bounds

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "DEFAULT_COUNT_CAP",
    "DEFAULT_MAX_RESOURCE_BYTES",
    "DEFAULT_PROFILE_ROWS",
    "DEFAULT_PROFILE_SECONDS",
    "FullScanError",
    "Limits",
    "RowCount",
    "Source",
    "SourceState",
    "is_source",
    "name_list",
    "source_for",
]

DEFAULT_COUNT_CAP = 1_000_000
DEFAULT_MAX_RESOURCE_BYTES = 32 * 1024 * 1024
DEFAULT_PROFILE_ROWS = 100_000
DEFAULT_PROFILE_SECONDS = 10.0


@dataclass(frozen=True)
class Limits:
    """How much one read may cost (``c.NbMCP.count_cap``, ``max_resource_bytes``, ``profile_rows``,
    ``profile_seconds``)."""

    count_cap: int = DEFAULT_COUNT_CAP
    max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES
    profile_rows: int = DEFAULT_PROFILE_ROWS
    profile_seconds: float = DEFAULT_PROFILE_SECONDS


@dataclass(frozen=True)
class RowCount:
    """A row count: ``rows`` exact, or ``None`` with ``at_least`` when counting stopped at the cap."""

    rows: int | None
    at_least: int

    @property
    def capped(self) -> bool:
        return self.rows is None

    def text(self) -> str:
        return f"{self.rows:,}" if self.rows is not None else f"more than {self.at_least - 1:,}"

    def fields(self) -> dict[str, Any]:
        """``total_rows`` (``None`` when capped), ``count_capped`` and, when capped, ``rows_at_least``."""
        out: dict[str, Any] = {"total_rows": self.rows, "count_capped": self.capped}
        if self.capped:
            out["rows_at_least"] = self.at_least
        return out


@dataclass
class SourceState:
    """What an adapter learns about a lazy source and keeps while the object lives (shared by every adapter
    instance made for the object): its count, the rows pages proved, backend specifics (Dask partition
    lengths, a reader's buffer), and the lock that serialises the backend's calls (DuckDB and Spark
    connections are not re-entrant)."""

    count: RowCount | None = None
    seen: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    extra: dict[str, Any] = field(default_factory=dict)


class FullScanError(ValueError):
    """A page this backend could only produce by scanning everything (or a consumed stream) before it."""


class Source(ABC):
    """A frame-like object seen through one backend. Subclasses implement the abstract methods with the
    backend's own calls; the public methods here check arguments and shape results the same way for all."""

    #: True when the object is a description of a computation (counts may be cached, pages are queries).
    lazy: ClassVar[bool] = True

    def __init__(self, obj: Any, limits: Limits, state: SourceState | None = None) -> None:
        self.obj = obj
        self.limits = limits
        self.state = state if state is not None else SourceState()

    @property
    def kind(self) -> str:
        """The object's type as clients see it, e.g. ``"duckdb.DuckDBPyRelation"`` (:data:`.kinds.BACKENDS`)."""
        backend = backend_of(self.obj)
        return backend.kind if backend is not None else "frame"

    # -- what subclasses provide ------------------------------------------------------------------

    @abstractmethod
    def columns(self) -> list[str]:
        """Column names, without touching data."""

    @abstractmethod
    def schema(self) -> list[dict[str, Any]]:
        """``[{"name", "dtype", "native_dtype"}, ...]``; ``dtype`` in narwhals' vocabulary."""

    def known_rows(self) -> int | None:
        """The row count if the backend knows it without scanning rows (metadata), else ``None``."""
        return None

    @abstractmethod
    def count_upto(self, n: int) -> int:
        """The number of rows, counting at most ``n`` (the backend stops there)."""

    @abstractmethod
    def slice_arrow(self, offset: int, limit: int, columns: list[str] | None) -> pyarrow.Table:
        """Rows ``offset .. offset+limit`` of ``columns`` (all if None), run as the backend's own query."""

    @abstractmethod
    def batches(self, columns: list[str] | None, batch_rows: int, max_rows: int) -> Iterator[pyarrow.RecordBatch]:
        """Record batches of about ``batch_rows`` rows from the start, lazily; the caller stops pulling at
        its byte cap. ``max_rows`` bounds what a backend without a native stream fetches in one query."""

    def slice_records(self, offset: int, limit: int, columns: list[str] | None) -> list[dict[str, Any]]:
        """The same rows as :meth:`slice_arrow`, as Python dicts (a backend may have a cheaper way)."""
        return self.slice_arrow(offset, limit, columns).to_pylist()

    def profile_frame(self, n: int) -> Any:
        """The first ``n`` rows as a narwhals frame (lazy where the backend is), for :mod:`.profile`."""
        import narwhals as nw

        return nw.from_native(self.slice_arrow(0, n, None), eager_only=True)

    def memory_bytes(self) -> int | None:
        """Bytes the object holds in memory now (eager frames), ``None`` for lazy sources."""
        return None

    def row_bytes(self) -> int:
        """An estimate of one row's size in Arrow, to size batches before building them."""
        return _row_bytes_from_schema(self.schema())

    # -- the interface callers use ---------------------------------------------------------------

    def count(self) -> RowCount:
        """Rows, exact where free or small, else "more than ``count_cap``"; cached for lazy sources."""
        with self.state.lock:
            if self.state.count is not None and self.lazy:
                return self.state.count
            known = self.known_rows()
            if known is not None:
                count = RowCount(known, known)
            else:
                cap = self.limits.count_cap
                n = cap + 1 if self.state.seen > cap else self.count_upto(cap + 1)
                count = RowCount(n, n) if n <= cap else RowCount(None, max(cap + 1, self.state.seen))
            self.state.count = count
            return count

    def note_rows_seen(self, at_least: int, exact: int | None = None) -> None:
        """What a page proved about the count (a short last page gives the exact total for free)."""
        with self.state.lock:
            self.state.seen = max(self.state.seen, at_least)
            if exact is not None:
                self.state.count = RowCount(exact, exact)
            elif (
                self.state.count is not None and self.state.count.rows is None and at_least > self.state.count.at_least
            ):
                self.state.count = RowCount(None, at_least)

    def check_columns(self, columns: Any) -> list[str] | None:
        """``columns`` as a list of known names (None for all); ``ValueError`` listing the valid ones."""
        return None if columns is None else check_columns(columns, self.columns())

    def page(self, offset: int = 0, limit: int = 50, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows ``offset .. offset+limit`` as JSON-safe records, O(limit) in memory. Past the end: ``[]``."""
        offset, limit = page_bounds(offset, limit)
        selected = self.check_columns(columns)
        # One row past the page says whether there are more: a page that ends at the last row makes the count exact
        # (without it, a full last page could only claim "more than" a total it had reached).
        probe = limit + 1 if self.lazy else limit
        with self.state.lock:
            try:
                rows = self.slice_records(offset, probe, selected)
            except FullScanError:  # that one row is past what a one-shot stream buffered: the page alone
                probe, rows = limit, self.slice_records(offset, limit, selected)
        more = len(rows) > limit
        records = [{k: to_jsonable(v) for k, v in row.items()} for row in rows[:limit]]
        if self.lazy:
            if more:
                self.note_rows_seen(offset + limit + 1)
            elif records and (len(records) < limit or probe > limit):
                self.note_rows_seen(offset + len(records), exact=offset + len(records))
            elif records:  # a full page, and whether more follow is not known
                self.note_rows_seen(offset + len(records))
        return records

    def shape(self) -> list[int | None]:
        """``[rows or None when not known for free, columns]``: cheap, for indexes and variable lists."""
        rows = self.state.count.rows if self.state.count is not None else None
        return [rows if rows is not None else self.known_rows(), len(self.columns())]


# -- choosing an adapter -------------------------------------------------------------------------

# Per lazy object (by id, while it lives): its adapter class, limits and learned state. The object itself is
# held weakly: the cache must not keep a user's data alive.
_cache: dict[int, tuple[weakref.ref[Any], type[Source], Limits, SourceState]] = {}
_cache_lock = threading.Lock()


def _adapter_class(obj: Any) -> type[Source] | None:
    """The adapter :data:`.kinds.BACKENDS` names for ``obj``'s backend (imported once that backend is loaded)."""
    import importlib

    backend = backend_of(obj)
    if backend is None:
        return None
    module, class_name = backend.adapter.rsplit(".", 1)
    return getattr(importlib.import_module(f"{__package__}.adapters.{module}"), class_name)


def is_source(obj: Any) -> bool:
    """True if some adapter shows ``obj`` as a table. Imports no backend."""
    return backend_of(obj) is not None


def source_for(obj: Any, limits: Limits | None = None) -> Source:
    """The adapter showing ``obj`` (any supported frame, lazy or eager); ``TypeError`` naming the type and
    listing what is supported otherwise. A lazy source's learned state (its count, Dask partition lengths,
    a reader's buffer) is shared by every adapter made for the same object while it lives."""
    limits = limits or Limits()
    key = id(obj)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and cached[0]() is obj and cached[2] == limits:
        return cached[1](obj, limits, cached[3])
    adapter = _adapter_class(obj)
    if adapter is None:
        raise TypeError(
            f"not a table: {type(obj).__module__}.{type(obj).__qualname__}; nbmcp shows pandas and polars "
            "DataFrames, polars LazyFrames, pyarrow Tables, RecordBatchReaders and datasets, DuckDB relations, "
            "Ibis tables, Dask and PySpark DataFrames"
        )
    source = adapter(obj, limits)
    if source.lazy:
        try:
            ref = weakref.ref(obj)
        except TypeError:  # not weak-referenceable: nothing is kept (its count is recomputed per read)
            return source
        with _cache_lock:
            _cache[key] = (ref, adapter, limits, source.state)
        weakref.finalize(obj, _forget, key, source.state)  # the id may be reused once the object is gone
    return source


def _forget(key: int, state: SourceState) -> None:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[3] is state:
            del _cache[key]


# -- helpers shared by adapters ------------------------------------------------------------------

_FIXED_WIDTHS = {"Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Int32": 4, "UInt32": 4, "Float32": 4, "Date": 4}
_VARIABLE_WIDTH_GUESS = 32  # strings, lists, structs: a guess, refined by the byte count of built batches


def _row_bytes_from_schema(schema: list[dict[str, Any]]) -> int:
    total = 0
    for column in schema:
        dtype = str(column.get("dtype", ""))
        base = dtype.split("(", 1)[0]
        if base in _FIXED_WIDTHS:
            total += _FIXED_WIDTHS[base] + 1
        elif base in ("Int64", "UInt64", "Float64", "Datetime", "Duration", "Int128", "Decimal"):
            total += 9
        elif base == "Boolean":
            total += 1
        else:
            total += _VARIABLE_WIDTH_GUESS
    return max(total, 1)


def narwhals_schema(native: Any, native_types: list[str] | None = None) -> list[dict[str, Any]]:
    """Schema entries from a frame narwhals understands (lazy or eager), with the backend's own dtype
    names when given."""
    import narwhals as nw

    frame = nw.from_native(native)
    schema = frame.collect_schema() if hasattr(frame, "collect_schema") else frame.schema
    out = []
    for i, (name, dtype) in enumerate(schema.items()):
        native_dtype = native_types[i] if native_types is not None and i < len(native_types) else str(dtype)
        out.append({"name": str(name), "dtype": str(dtype), "native_dtype": native_dtype})
    return out


def arrow_schema_entries(schema: Any) -> list[dict[str, Any]]:
    """Schema entries of a ``pyarrow.Schema`` (dtypes through narwhals, from an empty table)."""
    return narwhals_schema(schema.empty_table(), [str(t) for t in schema.types])

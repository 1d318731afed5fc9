"""Spark SQL for ``query``: checked on Spark's own plan, run in a Spark session of its own. Safe by construction.

The text is parsed once, by the parser of the session that runs it, and that very plan object is what runs:
nothing is re-parsed, rewritten or read by another engine's parser (two parsers disagree on quotes, escapes
and comments; that is how ``'\\'`` once let a query read ``/etc/passwd``). The parsed plan is walked field by
field against allowlists: plan and expression classes, Spark's built-in functions minus those that reach the
JVM or files (``reflect``, ``java_method``, ``input_file_name``, XML, Avro, Protobuf), the
table functions that generate rows, join hints. Tables are one-part names of exposed frames or of CTEs in
scope; ``text.`/etc/passwd```, ``parquet.`path```, catalog tables and ``global_temp`` are two-part names and
are refused. It runs in ``newSession()`` of the frame's session with ``spark.sql.runSQLOnFiles=false``,
holding only the exposed frames the query names as temporary views (the user's session catalog never sees
them), and the analysed plan is checked again: outside those views it reads nothing but generated rows.

This module imports only the standard library at import time: ``nbmcp serve`` sends its source to the kernel
with that of :mod:`nbmcp.frames.query.sql`, as the module ``<engine>_spark_sql`` (``sql.install_siblings``).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Outcome",
    "Planned",
    "SparkFailed",
    "SparkRefused",
    "SparkTimeout",
    "allowed",
    "first",
    "plan",
    "refusal",
    "run",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Spark's built-in functions (4.x), less those that reach the JVM (reflect, java_method, try_reflect), files
# (input_file_*, from_protobuf's descriptor file, Avro's schema URL, XML entities) or are not plain values
# (spark_partition_id, measure). A function not listed here is refused: new built-ins wait for review.
_FUNCTIONS = _words(
    """
! % & * + - / < << <= <=> = == > >= >> >>> ^ abs acos acosh add_months aes_decrypt aes_encrypt aggregate and any
any_value approx_count_distinct approx_percentile approx_top_k approx_top_k_accumulate approx_top_k_combine
approx_top_k_estimate array array_agg array_append array_compact array_contains array_distinct array_except
array_insert array_intersect array_join array_max array_min array_position array_prepend array_remove array_repeat
array_size array_sort array_union arrays_overlap arrays_zip ascii asin asinh assert_true atan atan2 atanh avg base64
between bigint bin binary bit_and bit_count bit_get bit_length bit_or bit_xor bitmap_and_agg bitmap_bit_position
bitmap_bucket_number bitmap_construct_agg bitmap_count bitmap_or_agg bool_and bool_or boolean bround btrim
cardinality cast cbrt ceil ceiling char char_length character_length chr coalesce collate collation collect_list
collect_set collect_union concat concat_ws contains conv convert_timezone corr cos cosh cot count count_if
count_min_sketch counter_diff covar_pop covar_samp crc32 csc cume_dist curdate current_catalog current_database
current_date current_path current_schema current_time current_timestamp current_timezone current_user date date_add
date_diff date_format date_from_unix_date date_part date_sub date_trunc dateadd datediff datepart day dayname
dayofmonth dayofweek dayofyear decimal decode degrees dense_rank div double e element_at elt encode endswith
equal_null every exists exp explode explode_outer expm1 extract factorial filter find_in_set first first_value
flatten float floor forall format_number format_string from_base32 from_csv from_json from_unixtime
from_utc_timestamp get get_json_object getbit greatest grouping grouping_id hash hex histogram_numeric
hll_sketch_agg hll_sketch_estimate hll_union hll_union_agg hmac hour hypot if ifnull ilike in initcap inline
inline_outer instr int is_valid_utf8 is_valid_variant is_variant_null isnan isnotnull isnull jaro_winkler_similarity
json_array_length json_object_keys json_tuple kll_merge_agg_bigint kll_merge_agg_double kll_merge_agg_float
kll_sketch_agg_bigint kll_sketch_agg_double kll_sketch_agg_float kll_sketch_get_n_bigint kll_sketch_get_n_double
kll_sketch_get_n_float kll_sketch_get_quantile_bigint kll_sketch_get_quantile_double kll_sketch_get_quantile_float
kll_sketch_get_rank_bigint kll_sketch_get_rank_double kll_sketch_get_rank_float kll_sketch_merge_bigint
kll_sketch_merge_double kll_sketch_merge_float kll_sketch_to_string_bigint kll_sketch_to_string_double
kll_sketch_to_string_float kurtosis lag last last_day last_value lcase lead least left len length levenshtein like
listagg ln localtime localtimestamp locate log log10 log1p log2 lower lpad ltrim luhn_check make_date
make_dt_interval make_interval make_time make_timestamp make_timestamp_ltz make_timestamp_ntz make_valid_utf8
make_ym_interval map map_concat map_contains_key map_entries map_filter map_from_arrays map_from_entries map_keys
map_values map_zip_with mask max max_by md5 mean median min min_by minute mod mode monotonically_increasing_id month
monthname months_between named_struct nanvl negative next_day not now nth_value ntile nullif nullifzero nvl nvl2
octet_length or overlay parse_json parse_url percent_rank percentile percentile_approx percentile_cont
percentile_disc pi pmod posexplode posexplode_outer position positive pow power printf quarter quote radians
raise_error rand randn random randstr rank reduce regexp regexp_count regexp_extract regexp_extract_all regexp_instr
regexp_like regexp_replace regexp_substr regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx
regr_sxy regr_syy repeat replace reverse right rint rlike round row_number rpad rtrim schema_of_csv schema_of_json
schema_of_variant schema_of_variant_agg sec second sentences sequence session_user session_window sha sha1 sha2
shiftleft shiftright shiftrightunsigned shuffle sign signum sin sinh size skewness slice smallint some sort_array
soundex space split split_part sqrt st_asbinary st_geogfromwkb st_geomfromwkb st_setsrid st_srid stack startswith
std stddev stddev_pop stddev_samp str_to_map string string_agg struct substr substring substring_index sum tan tanh
theta_difference theta_intersection theta_intersection_agg theta_sketch_agg theta_sketch_estimate theta_union
theta_union_agg time time_bucket time_diff time_from_micros time_from_millis time_from_seconds time_to_micros
time_to_millis time_to_seconds time_trunc timestamp timestamp_micros timestamp_millis timestamp_nanos
timestamp_seconds tinyint to_base32 to_binary to_char to_csv to_date to_json to_number to_time to_timestamp
to_timestamp_ltz to_timestamp_ntz to_unix_timestamp to_utc_timestamp to_varchar to_variant_object transform
transform_keys transform_values translate trim trunc try_add try_aes_decrypt try_avg try_divide try_element_at
try_make_interval try_make_timestamp try_make_timestamp_ltz try_make_timestamp_ntz try_mod try_multiply
try_parse_json try_parse_url try_subtract try_sum try_to_binary try_to_date try_to_number try_to_time
try_to_timestamp try_url_decode try_validate_utf8 try_variant_array_append try_variant_get try_variant_insert
try_variant_set tuple_difference_double tuple_difference_integer tuple_difference_theta_double
tuple_difference_theta_integer tuple_intersection_agg_double tuple_intersection_agg_integer
tuple_intersection_double tuple_intersection_integer tuple_intersection_theta_double
tuple_intersection_theta_integer tuple_sketch_agg_double tuple_sketch_agg_integer tuple_sketch_estimate_double
tuple_sketch_estimate_integer tuple_sketch_summary_double tuple_sketch_summary_integer tuple_sketch_theta_double
tuple_sketch_theta_integer tuple_union_agg_double tuple_union_agg_integer tuple_union_double tuple_union_integer
tuple_union_theta_double tuple_union_theta_integer typeof ucase unbase64 unhex uniform unix_date unix_micros
unix_millis unix_nanos unix_seconds unix_timestamp upper url_decode url_encode user uuid validate_utf8 var_pop
var_samp variance variant_array_append variant_delete variant_get variant_insert variant_set variant_strip_nulls
vector_avg vector_cosine_similarity vector_inner_product vector_l2_distance vector_norm vector_normalize vector_sum
version weekday weekofyear when width_bucket window window_time xxhash64 year zeroifnull zip_with | ~
"""
)
_REFUSED_FUNCTIONS = "reflect, java_method, try_reflect, input_file_name, xpath, from_xml, Avro and Protobuf"
# Table functions that generate rows; read_files, sql_keywords, collations, python_worker_logs... are refused.
_TABLE_FUNCTIONS = _words(
    "range explode explode_outer posexplode posexplode_outer inline inline_outer stack json_tuple "
    "variant_explode variant_explode_outer"
)
_JOIN_HINTS = _words("BROADCAST BROADCASTJOIN MAPJOIN MERGE SHUFFLE_MERGE MERGEJOIN SHUFFLE_HASH SHUFFLE_REPLICATE_NL")
_CATALYST = "org.apache.spark.sql.catalyst."
# The parsed-plan classes a SELECT is made of, by package. Anything else (ScriptTransformation, i.e. TRANSFORM
# ... USING 'a shell command', inserts, commands, IDENTIFIER(), parameters, time travel, streams) is refused.
_ALLOWED_NODES = {
    _CATALYST + "plans.logical": _words(
        "Project Filter Aggregate Join Sort GlobalLimit LocalLimit Offset LimitAll Tail SubqueryAlias Union "
        "Intersect Except Distinct Deduplicate Generate OneRowRelation LocalRelation Range Pivot Unpivot Sample "
        "RepartitionByExpression WithWindowDefinition LateralJoin UnresolvedHint UnresolvedWith Window"
    ),
    _CATALYST + "analysis": _words(
        "UnresolvedRelation UnresolvedHaving UnresolvedSubqueryColumnAliases UnresolvedTableValuedFunction "
        "UnresolvedTVFAliases UnresolvedInlineTable UnresolvedQualify UnresolvedAttribute UnresolvedStar "
        "UnresolvedStarExceptOrReplace UnresolvedRegex UnresolvedAlias UnresolvedFunction UnresolvedGenerator "
        "UnresolvedExtractValue UnresolvedOrdinal"
    ),
    _CATALYST + "expressions": _words(
        "Alias Literal AttributeReference Cast Not And Or EqualTo EqualNullSafe LessThan LessThanOrEqual "
        "GreaterThan GreaterThanOrEqual In IsNull IsNotNull Like ILike RLike LikeAny LikeAll NotLikeAny NotLikeAll "
        "Add Subtract Multiply Divide IntegralDivide Remainder UnaryMinus UnaryPositive BitwiseAnd BitwiseOr "
        "BitwiseXor BitwiseNot ShiftLeft ShiftRight ShiftRightUnsigned Concat CaseWhen If Coalesce "
        "CreateNamedStruct CreateArray CreateMap Collate SortOrder WindowExpression WindowSpecDefinition "
        "SpecifiedWindowFrame UnspecifiedFrame$ CurrentRow$ UnboundedPreceding$ UnboundedFollowing$ GroupingSets "
        "Cube Rollup LambdaFunction NamedLambdaVariable Exists InSubquery ListQuery ScalarSubquery "
        "LateralSubquery StringLocate StringTrim StringTrimLeft StringTrimRight StringTrimBoth Substring Overlay "
        "TimestampAdd TimestampDiff PipeExpression PipeOperator SemiStructuredExtract UnresolvedNamedLambdaVariable "
        "UnresolvedWindowExpression UnresolvedCollation IsUnknown$$anon$1 IsNotUnknown$$anon$2"
    ),
}
# Values inside a parsed plan that are data, not code: checked no further.
_DATA = (
    "java.lang.",
    "java.math.",
    "java.util.UUID",
    "scala.math.",
    "scala.Enumeration$Val",
    "org.apache.spark.sql.types.",
    "org.apache.spark.unsafe.types.",
    "org.apache.spark.sql.util.CaseInsensitiveStringMap",
    _CATALYST + "expressions.GenericInternalRow",
    _CATALYST + "util.",
)
# What a query may read, once analysed, besides the views of its frames: rows it generates itself.
_ANALYSED_LEAVES = _words("OneRowRelation LocalRelation Range CTERelationRef UnionLoopRef")
_WHAT = {
    "ScriptTransformation": "TRANSFORM ... USING (it runs a program)",
    "InsertIntoStatement": "INSERT",
    "RelationTimeTravel": "time travel (VERSION or TIMESTAMP AS OF)",
    "NamedStreamingRelation": "STREAM",
    "UnresolvedEventTimeWatermark": "WATERMARK",
    "NamedParameter": "parameter markers",
    "PosParameter": "parameter markers",
    "ExpressionWithUnresolvedIdentifier": "IDENTIFIER(...)",
    "PlanWithUnresolvedIdentifier": "IDENTIFIER(...)",
}
_TREE, _OPTION, _ITERABLE, _PRODUCT, _OTHER = range(5)
_KIND_BASES = (
    (_TREE, _CATALYST + "trees.TreeNode"),
    (_OPTION, "scala.Option"),
    (_ITERABLE, "scala.collection.Iterable"),
    (_PRODUCT, "scala.Product"),
)
_kinds: dict[str, int] = {}  # JVM class name -> how to walk it (class names are stable in a JVM)


class SparkRefused(ValueError):
    """Spark SQL that query does not run; the message says what, and what is allowed."""


class SparkFailed(ValueError):
    """Spark's own error (a syntax error, an unknown column...)."""


class SparkTimeout(ValueError):
    """The query reached its time limit and its jobs were cancelled."""


def allowed(frames: Any) -> str:
    """What query runs on Spark frames, naming ``frames``."""
    names = ", ".join(sorted(frames)) or "(none)"
    return (
        f"one SELECT (or WITH ... SELECT) statement in Spark SQL over the exposed Spark frames ({names}) and CTEs; "
        f"Spark's built-in functions except {_REFUSED_FUNCTIONS}; "
        f"table functions {', '.join(sorted(_TABLE_FUNCTIONS))}; "
        "join hints. No files (text.`path`, parquet.`path`), catalog tables or views, TRANSFORM ... USING, "
        "user-defined functions or commands"
    )


@dataclass
class Planned:
    """A query parsed by the session that will run it, and what its plan reads."""

    session: Any  # a pyspark SparkSession: newSession() of the frame's, file SQL off
    plan: Any  # the parsed LogicalPlan (py4j): exactly what runs
    frame_type: type  # the DataFrame class of that session
    relations: dict[str, str] = field(default_factory=dict)  # one-part table names, lower case -> as written
    problems: list[str] = field(default_factory=list)  # what the allowlists refuse, in plan order


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def plan(text: str, frame: Any, timeout: float) -> Planned:
    """Parse ``text`` in a locked new session of ``frame``'s and walk the plan; raises :class:`SparkFailed` on a
    syntax error. Problems are collected, not raised: the caller decides first whether this is a Spark query."""
    if not hasattr(frame, "_jdf"):  # Spark Connect: no plan to check on this side
        raise SparkFailed(
            "query cannot check SQL over Spark Connect frames (their plans live on the server); page them with "
            "read_rows instead"
        )
    try:
        base = frame.sparkSession
        session = base.newSession()
        session.conf.set("spark.sql.runSQLOnFiles", "false")
        for key in ("spark.sql.session.timeZone", "spark.sql.caseSensitive", "spark.sql.ansi.enabled"):
            session.conf.set(key, base.conf.get(key))
        parsed = session._jsparkSession.sessionState().sqlParser().parsePlan(text)
    except Exception as exc:  # a syntax error, or a stopped session: Spark cannot read this text
        raise SparkFailed(_first_line(exc)) from None
    planned = Planned(session, parsed, type(frame))
    try:
        _Walk(session._jvm, planned, time.monotonic() + timeout).run()
    except SparkTimeout:
        raise
    except Exception as exc:  # whatever cannot be walked cannot run
        raise SparkFailed(f"the plan could not be checked ({_first_line(exc)})") from None
    return planned


class _Walk:
    """Every field of every node of a parsed plan, checked against the allowlists."""

    def __init__(self, jvm: Any, planned: Planned, deadline: float) -> None:
        self.planned = planned
        self.deadline = deadline
        self._bases = [(kind, jvm.java.lang.Class.forName(name)) for kind, name in _KIND_BASES]

    def problem(self, text: str) -> None:
        if text not in self.planned.problems:
            self.planned.problems.append(text)

    def kind(self, obj: Any) -> tuple[str, int]:
        cls = obj.getClass()
        name = cls.getName()
        if name not in _kinds:
            _kinds[name] = next((kind for kind, base in self._bases if base.isAssignableFrom(cls)), _OTHER)
        return name, _kinds[name]

    def run(self) -> None:
        stack: list[tuple[Any, frozenset[str]]] = [(self.planned.plan, frozenset())]
        visited = 0
        while stack:
            obj, ctes = stack.pop()
            if not hasattr(obj, "getClass"):  # py4j gave a Python value: str, int, float, bool, bytes, None
                continue
            visited += 1
            if visited % 256 == 0 and time.monotonic() > self.deadline:
                raise SparkTimeout("checking the query took longer than its time limit")
            name, kind = self.kind(obj)
            if name.startswith(_DATA):
                continue
            if kind == _OPTION:
                if obj.isDefined():
                    stack.append((obj.get(), ctes))
            elif kind == _ITERABLE:
                items = obj.toIndexedSeq()
                stack.extend((items.apply(i), ctes) for i in reversed(range(items.length())))
            elif kind == _TREE:
                self.node(obj, name, ctes, stack)
            elif kind == _PRODUCT and name.startswith((_CATALYST, "scala.Tuple", "scala.Some")):
                stack.extend((obj.productElement(i), ctes) for i in reversed(range(obj.productArity())))
            else:
                self.problem(f"contains {name.rsplit('.', 1)[-1]}, which query cannot check")

    def node(self, obj: Any, name: str, ctes: frozenset[str], stack: list) -> None:
        package, _, simple = name.rpartition(".")
        if simple not in _ALLOWED_NODES.get(package, ()):
            command = simple.endswith(("Command", "Statement")) or package.endswith("commands")
            what = _WHAT.get(simple) or ("a command" if command else f"the form {simple}")
            self.problem(f"uses {what}, which query does not allow")
        elif simple == "UnresolvedRelation":
            self.relation(obj, ctes)
            return
        elif simple == "UnresolvedWith":
            self.with_ctes(obj, ctes, stack)
            return
        elif simple == "UnresolvedFunction":
            self.function(list(_strings(obj.nameParts())))
        elif simple == "UnresolvedGenerator":
            ident = obj.name()
            qualified = ident.database().isDefined() or ident.catalog().isDefined()
            self.function([*(["?"] if qualified else []), str(ident.funcName())])
        elif simple == "UnresolvedTableValuedFunction":
            parts = list(_strings(obj.name()))
            if len(parts) != 1 or parts[0].lower() not in _TABLE_FUNCTIONS:
                self.problem(f"calls the table function {'.'.join(parts)}(), which query does not allow")
        elif simple == "UnresolvedHint" and str(obj.name()).upper() not in _JOIN_HINTS:
            self.problem(f"has the hint {obj.name()}; only join hints are allowed")
        # Reversed: the stack pops fields in the order they are written, so the first problem is the first named.
        stack.extend((obj.productElement(i), ctes) for i in reversed(range(obj.productArity())))

    def function(self, parts: list[str]) -> None:
        if len(parts) != 1 or parts[0].lower() not in _FUNCTIONS:
            self.problem(f"calls {'.'.join(parts)}(), which query does not allow (built-in functions by plain name)")

    def relation(self, obj: Any, ctes: frozenset[str]) -> None:
        parts = list(_strings(obj.multipartIdentifier()))
        written = ".".join(parts)
        if obj.productArity() != 3 or not obj.options().isEmpty() or obj.isStreaming():
            self.problem(f"reads {written} with options or as a stream, which query does not allow")
        if len(parts) != 1:
            self.problem(
                f"reads {written!r}: files (format.`path`), catalog tables and other databases are not available"
            )
        elif parts[0].lower() not in ctes:
            self.planned.relations.setdefault(parts[0].lower(), parts[0])

    def with_ctes(self, obj: Any, ctes: frozenset[str], stack: list) -> None:
        # A CTE is visible in the definitions after it and in the body, not before: a name out of scope is a
        # table, and must be an exposed frame.
        arity = obj.productArity()  # (child, cteRelations) in Spark 3.5; allowRecursion since Spark 4.1
        if arity not in (2, 3):
            self.problem("uses a WITH clause of a form query cannot check")
        recursive = arity == 3 and bool(obj.allowRecursion())
        relations = obj.cteRelations().toIndexedSeq()
        scope, parts = set(ctes), []
        for i in range(relations.length()):
            entry = relations.apply(i)
            name = str(entry._1()).lower()
            parts.append((entry._2(), frozenset(scope | ({name} if recursive else set()))))
            scope.add(name)
        parts.append((obj.child(), frozenset(scope)))
        stack.extend(reversed(parts))


def _strings(seq: Any) -> list[str]:
    items = seq.toIndexedSeq()
    return [str(items.apply(i)) for i in range(items.length())]


def refusal(planned: Planned, frames: Mapping[str, Any]) -> str | None:
    """Why ``planned`` may not run over ``frames`` (exposed name -> Spark frame), or None."""
    exposed = {name.lower() for name in frames}
    problems = list(planned.problems)
    for lower, written in planned.relations.items():
        if lower not in exposed:
            problems.append(f"reads {written!r}, which is not an exposed Spark frame")
    return problems[0] if problems else None


def _dataset(session: Any) -> Any:
    from py4j.java_gateway import JavaClass

    classic = session._jvm.org.apache.spark.sql.classic.Dataset  # Spark 4; Spark 3.5 has it one package up
    return classic if isinstance(classic, JavaClass) else session._jvm.org.apache.spark.sql.Dataset


def _check_analysed(analysed: Any, views: set[str]) -> None:
    """Defence in depth: outside the frames' own views, the analysed plan reads only rows it generates."""
    stack = [analysed]
    while stack:
        node = stack.pop()
        simple = node.getClass().getName().rpartition(".")[2]
        if simple == "View" and node.isTempView() and str(node.desc().identifier().table()).lower() in views:
            continue
        children = [*_items(node.children()), *_items(node.innerChildren())]
        if not children and simple not in _ANALYSED_LEAVES:
            raise SparkRefused(f"reads {simple}, which is not an exposed Spark frame")
        stack.extend(children)


def _items(seq: Any) -> list[Any]:
    items = seq.toIndexedSeq()
    return [items.apply(i) for i in range(items.length())]


def run(planned: Planned, frames: Mapping[str, Any], fetch: int, timeout: float, bounds: Any) -> Any:
    """Run ``planned`` over ``frames`` (the exposed Spark frames it names); up to ``fetch`` rows, cut inside Spark
    by ``bounds`` (a ``spark_bounds.SparkBounds``), as a ``sql_bounds.Fetched``. Cancelled at ``timeout`` s."""
    session = planned.session
    dataset = _dataset(session)
    context = session.sparkContext
    group = f"nbmcp-query-{uuid.uuid4().hex}"
    context.setJobGroup(group, "nbmcp query", interruptOnCancel=True)
    done, expired = threading.Event(), threading.Event()

    def cancel_until_done() -> None:
        # cancelJobGroup cancels the jobs running now; a query still planning starts its jobs later, so the
        # group is cancelled again until the query has returned.
        expired.set()
        while not done.is_set():
            with contextlib.suppress(Exception):
                context.cancelJobGroup(group)
            done.wait(0.25)

    timer = threading.Timer(timeout, cancel_until_done)
    timer.daemon = True
    timer.start()
    views: list[str] = []
    try:
        for name, frame in frames.items():
            view = dataset.ofRows(session._jsparkSession, frame._jdf.queryExecution().analyzed())
            view.createOrReplaceTempView("`" + name.replace("`", "``") + "`")
            views.append(name)
        query = dataset.ofRows(session._jsparkSession, planned.plan)  # the plan that was checked, analysed here
        analysed = query.queryExecution().analyzed()
        _check_analysed(analysed, {v.lower() for v in views})
        fetched = bounds.fetch(planned.frame_type(query, session), fetch, analysed)  # cut and bounded in Spark
    except SparkRefused:
        raise
    except Exception as exc:
        if expired.is_set():
            raise SparkTimeout(f"interrupted at {timeout:g} s") from None
        raise SparkFailed(_first_line(exc)) from None
    finally:
        done.set()
        timer.cancel()
        with contextlib.suppress(Exception):
            context.setLocalProperty("spark.jobGroup.id", None)
        for name in views:  # the session is dropped too; no view outlives the query
            with contextlib.suppress(Exception):
                session.catalog.dropTempView(name)
    return fetched


@dataclass
class Outcome:
    """What Spark made of a query: its result when it ran it, or why DuckDB gets it."""

    frames: list[str] = field(default_factory=list)  # the exposed Spark frames
    table: Any = None  # the result (pyarrow.Table), when Spark ran the query
    more: bool = False
    fetched: Any = None  # the same as a sql_bounds.Fetched: its long values cut, and whether its bytes were
    used: list[str] = field(default_factory=list)  # the frames it read
    error: str | None = None  # Spark's parser could not read the text (DuckDB's may)


def first(
    text: str,
    sources: Mapping[str, Any],
    frames: Mapping[str, Any],
    fetch: int,
    timeout: float,
    *,
    duckdb_available: bool,
    bounds: Any,
) -> Outcome:
    """Run ``text`` here when Spark's own parser reads it as naming exposed Spark ``frames`` (or there is no DuckDB);
    otherwise an :class:`Outcome` without a table, for DuckDB. ``sources`` are all exposed objects, by name. Raises
    SparkRefused, SparkFailed or SparkTimeout with the message for the client."""
    outcome = Outcome(sorted(frames))
    try:
        planned = plan(text, next(iter(frames.values())), timeout)
    except SparkFailed as exc:
        if not duckdb_available:
            raise SparkFailed(f"sql (Spark): {exc}") from None
        outcome.error = str(exc)
        return outcome
    exposed = {name.lower(): name for name in sources}
    named = sorted({exposed[r] for r in planned.relations if r in exposed})
    outcome.used = [name for name in named if name in frames]
    others = [name for name in named if name not in frames]
    if not outcome.used and (others or duckdb_available):
        return outcome
    if others:
        raise SparkRefused(
            f"sql mixes Spark frames ({', '.join(outcome.used)}) with other objects ({', '.join(others)}); "
            "one query runs on one engine: query them separately, or save_as a small result and join that"
        )
    problem = refusal(planned, frames)
    if problem:
        raise SparkRefused(f"sql (Spark SQL) {problem}; allowed: {allowed(frames)}")
    try:
        fetched = run(planned, {name: frames[name] for name in outcome.used}, fetch, timeout, bounds)
        outcome.table, outcome.more, outcome.fetched = fetched.table, fetched.more, fetched
    except SparkRefused as exc:
        raise SparkRefused(f"sql (Spark SQL) {exc}; allowed: {allowed(frames)}") from None
    except SparkFailed as exc:
        raise SparkFailed(f"sql (Spark): {exc}") from None
    return outcome

"""The ``query`` engine: SQL checked and run by the engine that owns each frame (DuckDB, Spark), bounded, worded once.

Its modules import only the standard library at import time: ``nbmcp serve`` sends them to kernels without nbmcp as
sources (:data:`nbmcp.serve.kernel_tools.query.ENGINE_MODULES`), where each finds the others by name.
"""

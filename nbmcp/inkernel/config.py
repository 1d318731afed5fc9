"""Configuration, the Jupyter way: ``c.NbMCP.port = 8765`` in an IPython or Jupyter config file; and the frozen
:class:`InKernelSettings` the in-kernel server is built from (:meth:`InKernelSettings.from_config`)."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from traitlets import Bool, CaselessStrEnum, Float, Int, List, Unicode, default, validate
from traitlets.config import Configurable

if TYPE_CHECKING:
    from ..frames import Limits

__all__ = ["InKernelSettings", "NbMCP", "load_config"]


class NbMCP(Configurable):
    """The in-kernel MCP server. Environment variables ``NBMCP_TOKEN`` and ``NBMCP_PORT`` win over config."""

    ip = Unicode("127.0.0.1", help="Address to bind. Anything but loopback needs a token.").tag(config=True)
    port = Int(0, help="Port to bind; 0 picks a free one.").tag(config=True)
    token = Unicode("", help="Bearer token clients must send; empty generates a random one.").tag(config=True)
    allowed_origins = List(
        Unicode(), help="Browser origins allowed besides the server's own (e.g. 'https://my.app')."
    ).tag(config=True)
    output_budget = Int(20_000, help="Characters of text one call may return before it is cut.").tag(config=True)
    image_max_px = Int(1568, help="Long side, in pixels, that images are downscaled to.").tag(config=True)
    mode = CaselessStrEnum(
        ["read-only", "tools", "execute"],
        default_value="tools",
        help="read-only: built-in read tools only; tools: user tools too; execute: adds `execute`.",
    ).tag(config=True)
    allow_execute = Bool(False, help="Serve the `execute` tool (same as mode='execute').").tag(config=True)
    approval_timeout = Float(120.0, help="Seconds to wait for the owner to approve a call.").tag(config=True)
    approval_policy = CaselessStrEnum(
        ["ask", "all", "none", "client"],
        default_value="ask",
        help="For tools that need approval (requires_approval=True) and execute: ask, approve all, deny all, "
        "or client (ask in the panel while it is open, else the client's user through elicitation).",
    ).tag(config=True)
    audit_log = Unicode("", help="Path of the JSONL audit log; empty puts it in the Jupyter runtime dir.").tag(
        config=True
    )
    main_thread_timeout = Float(60.0, help="Seconds a main_thread tool waits for the kernel to be idle.").tag(
        config=True
    )
    query_timeout = Float(30.0, help="Seconds a `query` may run before it is interrupted.").tag(config=True)
    query_save_max_rows = Int(1_000_000, help="Rows of a `query` result that save_as keeps.").tag(config=True)
    query_memory_limit = Unicode("2GB", help="DuckDB memory limit of one `query` (e.g. '2GB').").tag(config=True)
    query_save_max_bytes = Int(
        256 * 1024 * 1024,
        help="Bytes (as Arrow) of a `query` result that save_as keeps; past them it keeps fewer rows and says so.",
    ).tag(config=True)
    query_max_spill_bytes = Int(
        1024**3,
        help="Bytes of disk one `query` may spill to when it outgrows query_memory_limit (in a temporary directory "
        "of its own, removed afterwards); past them it fails with a clear error. 0: no spilling.",
    ).tag(config=True)
    count_cap = Int(
        1_000_000, help="Rows counted at most where a count is not free; past it totals read 'more than N'."
    ).tag(config=True)
    max_resource_bytes = Int(
        32 * 1024 * 1024, help="Bytes one Arrow resource read may build; larger reads stop there (page instead)."
    ).tag(config=True)
    profile_rows = Int(100_000, help="Rows describe_object profiles (the first ones); more is 'sampled'.").tag(
        config=True
    )
    profile_seconds = Float(10.0, help="Seconds describe_object spends on top values before it skips columns.").tag(
        config=True
    )

    @validate("count_cap", "max_resource_bytes", "profile_rows", "query_save_max_bytes")
    def _check_positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1, not {proposal['value']}")
        return proposal["value"]

    task_grace = Float(
        5.0,  # nbmcp.tasks.TASK_GRACE (not imported here: config stays light)
        min=0,
        help="Seconds a call of a client with the tasks extension may take before it is answered as a task the "
        "client polls (0: at once).",
    ).tag(config=True)

    # Limits that keep a misbehaving or flooding client from freezing the server (or the kernel).
    tool_timeout = Float(
        60.0,
        help="Seconds a user tool may run before its client gets an error (async tools are cancelled, a sync tool's "
        "thread is abandoned); a tool's own timeout= wins; 0 means no limit.",
    ).tag(config=True)
    max_tool_threads = Int(40, help="User tool calls running at once; past it a call is answered 'busy' at once.").tag(
        config=True
    )
    max_calls_per_client = Int(8, help="User tool calls one client may have running at once; 0 means no limit.").tag(
        config=True
    )
    max_abandoned_calls = Int(
        4, help="Timed-out calls of one tool whose threads still run before the tool is refused until they end."
    ).tag(config=True)
    gc_freeze = Bool(
        False,
        help="Call gc.freeze() when the server first starts: CPython's full garbage collections then skip every object "
        "existing at that moment (the kernel's, IPython's and nbmcp's, ~130,000), which otherwise pause every request "
        "for 40-80 ms now and then under load. The price: reference cycles existing then that later become garbage "
        "are never freed (gc.unfreeze() undoes it), so load the extension before making big data.",
    ).tag(config=True)
    icons = List(
        Unicode(),
        help="Icons of the server shown by clients: https: or data: URLs (tools take @nbmcp.tool(icons=...)).",
    ).tag(config=True)

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get("NBMCP_TOKEN", "")

    @default("port")
    def _port_default(self) -> int:
        return int(os.environ.get("NBMCP_PORT", "0") or 0)

    @validate("query_max_spill_bytes")
    def _check_not_negative(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be 0 (no spilling) or more, not {proposal['value']}")
        return proposal["value"]

    @validate("port")
    def _check_port(self, proposal: dict[str, Any]) -> int:
        value = proposal["value"]
        if not 0 <= value <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {value}")
        return value

    @property
    def effective_mode(self) -> str:
        return "execute" if self.allow_execute and self.mode == "tools" else self.mode


@dataclasses.dataclass(frozen=True)
class InKernelSettings:
    """Everything the in-kernel server is told, frozen at its start: one field per ``c.NbMCP`` setting
    (``mode`` is the effective one: ``allow_execute`` folded in). The defaults are the traits'; a new setting
    is a trait of :class:`NbMCP` and a field here, and a test checks that the two agree."""

    ip: str
    port: int
    token: str
    allowed_origins: tuple[str, ...]
    output_budget: int
    image_max_px: int
    mode: str
    approval_timeout: float
    approval_policy: str
    audit_log: str
    main_thread_timeout: float
    query_timeout: float
    query_save_max_rows: int
    query_memory_limit: str
    query_save_max_bytes: int
    query_max_spill_bytes: int
    count_cap: int
    max_resource_bytes: int
    profile_rows: int
    profile_seconds: float
    tool_timeout: float
    task_grace: float
    max_tool_threads: int
    max_calls_per_client: int
    max_abandoned_calls: int
    gc_freeze: bool
    icons: tuple[str, ...]

    @classmethod
    def from_config(cls, config: NbMCP | None = None) -> InKernelSettings:
        """The settings of ``config`` (None: the defaults, without reading any config file)."""
        config = config if config is not None else NbMCP()
        values = {field.name: getattr(config, field.name) for field in dataclasses.fields(cls)}
        values["mode"] = config.effective_mode
        return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})

    @property
    def query_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~nbmcp.inkernel.views.query.QueryTool`."""
        return {
            "timeout": self.query_timeout,
            "save_max_rows": self.query_save_max_rows,
            "memory_limit": self.query_memory_limit,
            "max_result_bytes": self.max_resource_bytes,
            "save_max_bytes": self.query_save_max_bytes,
            "max_spill_bytes": self.query_max_spill_bytes,
        }

    @property
    def frame_limits(self) -> Limits:
        from ..frames import Limits

        return Limits(
            count_cap=self.count_cap,
            max_resource_bytes=self.max_resource_bytes,
            profile_rows=self.profile_rows,
            profile_seconds=self.profile_seconds,
        )


def load_config(parent: Any = None, **overrides: Any) -> NbMCP:
    """The NbMCP configuration of ``parent`` (an IPython shell) or of the user's config files.

    ``NBMCP_TOKEN``/``NBMCP_PORT`` override the files; explicit ``overrides`` override everything.
    """
    if parent is not None and getattr(parent, "config", None) is not None:
        config = NbMCP(parent=parent)
    else:
        config = NbMCP(config=_user_config())
    env_token, env_port = os.environ.get("NBMCP_TOKEN"), os.environ.get("NBMCP_PORT")
    if env_token:
        config.token = env_token
    if env_port:
        config.port = int(env_port)
    for key, value in overrides.items():
        if value is not None:
            if not config.has_trait(key):
                raise TypeError(f"unknown nbmcp option {key!r}; options: {', '.join(sorted(config.trait_names()))}")
            setattr(config, key, value)
    return config


def _user_config() -> Any:
    """Config from ``nbmcp_config.py``/``.json`` in the Jupyter config path, if any."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import Config, JSONFileConfigLoader, PyFileConfigLoader

    merged = Config()
    for directory in reversed(jupyter_config_path()):
        for loader_cls, filename in (
            (JSONFileConfigLoader, "nbmcp_config.json"),
            (PyFileConfigLoader, "nbmcp_config.py"),
        ):
            if os.path.exists(os.path.join(directory, filename)):
                try:
                    merged.merge(loader_cls(filename, path=directory).load_config())
                except Exception:
                    continue
    return merged

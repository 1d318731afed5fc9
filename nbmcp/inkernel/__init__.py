"""The in-kernel server (``%load_ext nbmcp``): the user's tools, objects and prompts, served live.

Nothing is imported here: :mod:`nbmcp.inkernel.api` is the public Python API, re-exported by ``nbmcp``.

Rooms: :mod:`.calls` (a tool call from ``tools/call`` to the user's function and back, where it runs, what it may
ask); :mod:`.protocol` (MCP beyond calling a tool: completion, logging, notifications, prompts, structured output);
:mod:`.views` (exposed objects as resources and pages, ``query``, the table app); :mod:`.oversight` (what the
notebook's owner sees and decides: activity, approvals, audit log, panel). At the top: :mod:`.api`, :mod:`.config`,
:mod:`.extension`, :mod:`.lifecycle`, :mod:`.magics`, :mod:`.registry`, :mod:`.server`, :mod:`.shell`.
"""

"""The in-kernel server (``%load_ext nbmcp``): the user's tools, objects and prompts, served live.

Nothing is imported here: :mod:`nbmcp.inkernel.api` is the public Python API, re-exported by ``nbmcp``.
"""

"""nbmcp's JupyterHub service: an OAuth 2.1 authorization server for MCP clients, and the checks that make a
user's ``nbmcp`` endpoints a protected resource.

The service (``python -m nbmcp.jupyter.hub``, a Hub-managed service) signs people in through the Hub's own
OAuth, asks them to consent, and issues short-lived access tokens (EdDSA-signed JWTs) whose audience is one
user's ``{hub}/user/{name}/nbmcp``. A user's server checks them with the service's public key (``resource``).
"""

from .scopes import EXECUTE, READ, SCOPES

__all__ = ["EXECUTE", "READ", "SCOPES"]

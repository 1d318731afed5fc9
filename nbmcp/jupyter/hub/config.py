"""``nbmcp hub-config``: the ``jupyterhub_config.py`` lines that add nbmcp's OAuth service to a Hub.

They declare the Hub-managed service (``python -m nbmcp.jupyter.hub``, a Hub OAuth client whose own
consent page replaces the Hub's), and give every user's server the two settings that make its nbmcp
endpoints an OAuth protected resource.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["add_arguments", "hub_config", "run"]

SERVICE = "nbmcp"


def hub_config(
    public_url: str,
    *,
    port: int = 10101,
    state_dir: str = "/srv/jupyterhub/nbmcp-oauth",
    python: str = sys.executable,
    access_ttl: int = 600,
    proxy_url: str | None = None,
) -> str:
    """The config lines for a Hub people open at ``public_url``; the service listens on 127.0.0.1:``port`` and
    reaches the Hub's proxy at ``proxy_url`` (default ``public_url``) to forward the one URL."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--public-url {public_url!r}: expected the Hub's URL, e.g. https://hub.example.org/")
    public = public_url.rstrip("/") + "/"
    internal = f"http://127.0.0.1:{port}"
    proxy = (proxy_url or public).rstrip("/") + "/"
    return f'''\
# nbmcp: assistants connect by URL and sign in with the Hub (OAuth 2.1): everyone at {public}services/{SERVICE}/mcp,
# or one person at {public}user/<name>/nbmcp/mcp
c.JupyterHub.services.append(
    {{
        "name": "{SERVICE}",
        "url": "{internal}",
        "command": [{python!r}, "-m", "nbmcp.jupyter.hub"],
        "oauth_no_confirm": True,  # nbmcp shows its own consent page, naming the assistant and the scopes
        "environment": {{
            "NBMCP_HUB_PUBLIC_URL": "{public}",
            "NBMCP_OAUTH_STATE_DIR": {state_dir!r},
            "NBMCP_OAUTH_ACCESS_TTL": "{access_ttl}",
            "NBMCP_HUB_PROXY_URL": "{proxy}",  # where the service forwards {public}services/{SERVICE}/mcp
        }},
    }}
)
# the service asks the Hub whose server runs (to say "alice's server is not running" rather than forward)
c.JupyterHub.load_roles.append({{"name": "{SERVICE}-service", "scopes": ["read:servers"], "services": ["{SERVICE}"]}})
# every user may sign in to the service (if you already define the "user" role, add this scope to it)
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}})
c.Spawner.environment.update(
    {{
        "NBMCP_OAUTH_ISSUER": "{public}services/{SERVICE}",
        # where users' servers read the service's public key and revoked grants (the Hub's internal network)
        "NBMCP_OAUTH_KEYS_URL": "{internal}/services/{SERVICE}/keys",
    }}
)
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--public-url", required=True, help="the Hub's URL as people open it")
    parser.add_argument("--port", type=int, default=10101, help="loopback port of the service (default 10101)")
    parser.add_argument(
        "--proxy-url",
        help="the Hub's proxy as the service reaches it, when not at --public-url (e.g. http://127.0.0.1:8000/ "
        "behind a TLS-terminating front end)",
    )
    parser.add_argument(
        "--state-dir",
        default="/srv/jupyterhub/nbmcp-oauth",
        help="where the service keeps its signing key and grants file (both 0600; back it up, keep it private)",
    )


def run(args: argparse.Namespace) -> int:
    print(hub_config(args.public_url, port=args.port, state_dir=str(Path(args.state_dir)), proxy_url=args.proxy_url))
    return 0

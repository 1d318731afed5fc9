"""nbmcp through a real JupyterHub route, measured against the same user server reached directly (medians).

``execute("1+1")`` in a notebook's kernel through ``{hub}/user/<name>/nbmcp/mcp`` (configurable-http-proxy in
front of the single-user server) vs through the single-user server's own loopback port, same token, calls
alternating so the shared machine's drift hits both alike. Target: p50 ratio <= 1.3. And the Hub route with an
OAuth access token of nbmcp's Hub service (signed with the service's key, as its /token issues them) vs the
same route with a Hub API token. Target: p50 ratio <= 1.1.

Run: ``python benchmarks/bench_hub.py [--iterations N]`` (starts and stops its own JupyterHub; needs
configurable-http-proxy from npm, see ``.ci/run``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verdicts import Verdicts

from nbmcp.client import connect
from nbmcp.jupyter.hub.config import hub_config
from nbmcp.jupyter.hub.tokens import SigningKey
from tests.hub_helpers import chp_command, jupyterhub
from tests.jupyter_helpers import free_port

MODE = "legacy"  # one protocol era for both routes
RATIO_TARGET = 1.3
OAUTH_RATIO_TARGET = 1.1
USER = "bench"


async def bench(hub_route: str, direct_route: str, token: str, oauth_token: str, n: int) -> dict[str, Any]:
    args = {"code": "1+1", "notebook": "bench.ipynb"}
    hub_ms: list[float] = []
    direct_ms: list[float] = []
    oauth_ms: list[float] = []
    async with (
        connect(hub_route, token, mode=MODE) as via_hub,
        connect(direct_route, token, mode=MODE) as direct,
        connect(hub_route, oauth_token, mode=MODE) as via_oauth,
    ):

        async def timed(client: Any, into: list[float] | None) -> None:
            started = time.perf_counter()
            result = await client.call_tool("execute", args)
            elapsed = (time.perf_counter() - started) * 1000
            assert not result.is_error and result.structured_content["status"] == "ok", result.content
            if into is not None:
                into.append(elapsed)

        for _ in range(5):  # warm-up: connections, the Hub's token cache, the kernel
            await timed(via_hub, None)
            await timed(direct, None)
            await timed(via_oauth, None)
        for _ in range(n):
            await timed(via_hub, hub_ms)
            await timed(direct, direct_ms)
            await timed(via_oauth, oauth_ms)
    return {
        "iterations": n,
        "execute_via_hub_ms": statistics.median(hub_ms),
        "execute_direct_ms": statistics.median(direct_ms),
        "execute_via_hub_oauth_ms": statistics.median(oauth_ms),
        "ratio": statistics.median(hub_ms) / statistics.median(direct_ms),
        "oauth_ratio": statistics.median(oauth_ms) / statistics.median(hub_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="calls per route (default 100)")
    args = parser.parse_args()
    n = max(10, min(args.iterations, 2000))
    if chp_command() is None:
        print(
            "configurable-http-proxy is not installed: npm install --prefix ~/.cache/nbmcp-npm configurable-http-proxy"
        )
        return 2
    service_port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="nbmcp-bench-oauth-") as state,
        jupyterhub(
            (USER,), extra_config=lambda url: hub_config(url, port=service_port, state_dir=state, access_ttl=3600)
        ) as hub,
    ):
        _wait_for(hub.url + "services/nbmcp/keys")
        hub.start_server(USER)
        token = hub.create_token(USER)
        oauth_token, _ = SigningKey(Path(state)).mint(
            issuer=hub.url + "services/nbmcp",
            subject=USER,
            audience=hub.user_url(USER) + "nbmcp",
            client_id="bench",
            scopes=["nbmcp:execute"],
            grant_id="bench",
            ttl=3600,
        )
        body = {"path": "bench.ipynb", "type": "notebook", "name": "bench.ipynb", "kernel": {"name": "python3"}}
        headers = {"Authorization": f"token {token}"}
        httpx.post(hub.user_url(USER) + "api/sessions", json=body, headers=headers, timeout=60).raise_for_status()
        hub_route = hub.user_url(USER) + "nbmcp/mcp"
        direct_route = hub.direct_url(USER) + "nbmcp/mcp"
        results = anyio.run(bench, hub_route, direct_route, token, oauth_token, n)
    print(f"JupyterHub route vs the single-user server directly, {n} calls each, medians ({MODE} protocol era)")
    print(f"  execute('1+1') via {hub_route}   {results['execute_via_hub_ms']:8.2f} ms")
    print(f"  execute('1+1') via {direct_route}   {results['execute_direct_ms']:8.2f} ms")
    print(f"  execute('1+1') via {hub_route} (OAuth token)   {results['execute_via_hub_oauth_ms']:8.2f} ms")
    print(json.dumps(results))
    verdicts = Verdicts()
    verdicts.check("execute via the Hub / direct (p50 ratio)", results["ratio"], RATIO_TARGET)
    verdicts.check("execute via the Hub, OAuth / Hub API token (p50 ratio)", results["oauth_ratio"], OAUTH_RATIO_TARGET)
    return verdicts.report()


def _wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, trust_env=False, timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())

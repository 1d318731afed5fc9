"""A real JupyterHub on loopback (configurable-http-proxy, dummy auth, local-process spawner) whose
single-user servers run nbmcp's Jupyter Server extension; for tests and benchmarks.

configurable-http-proxy is an npm package: it is looked up on PATH, then in ``$NBMCP_NPM_PREFIX`` (default
``~/.cache/nbmcp-npm``, where ``.ci/run`` installs it); ``chp_command()`` returns None when neither has it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.jupyter_helpers import free_port

# nbmcp's extension only: JupyterLab and friends take seconds of a user server's start and no part here
EXTENSIONS = repr(
    {
        "nbmcp": False,
        "nbmcp.jupyter": True,
        "jupyterlab": False,
        "jupyter_lsp": False,
        "jupyter_server_terminals": False,
        "notebook_shim": False,
    }
)
NPM_PREFIX = Path(os.environ.get("NBMCP_NPM_PREFIX", Path.home() / ".cache" / "nbmcp-npm"))


def chp_command() -> list[str] | None:
    """How to run configurable-http-proxy here, or None when it is not installed."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    local = NPM_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists() and shutil.which("node"):
        return [str(local)]
    return None


class HubProcess:
    """A running JupyterHub: its public URL, an admin service token for its REST API, its users' dirs."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, admin_token: str, tmp: Path, log: Path) -> None:
        self.proc = proc
        self.url = url  # ends with "/"
        self.admin_token = admin_token
        self.tmp = tmp
        self.log = log

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return httpx.request(
            method, f"{self.url}hub/api/{path}", headers=headers, timeout=30, trust_env=False, **kwargs
        )

    def user_url(self, name: str) -> str:
        return f"{self.url}user/{name}/"

    def root_of(self, name: str) -> Path:
        return self.tmp / "home" / name

    def runtime_of(self, name: str) -> Path:
        return self.tmp / "runtime" / name

    def create_token(self, name: str, scopes: list[str] | None = None) -> str:
        """A Hub API token of ``name`` (default scope: access to that user's servers), made via the REST API."""
        body = {"scopes": scopes or [f"access:servers!user={name}"], "note": "nbmcp test", "expires_in": 3600}
        response = self.api("POST", f"users/{name}/tokens", json=body)
        response.raise_for_status()
        return response.json()["token"]

    def start_server(self, name: str, timeout: float = 60) -> str:
        """Spawn ``name``'s single-user server and wait until it is ready; its URL."""
        response = self.api("POST", f"users/{name}/server")
        if response.status_code not in (201, 202, 400):  # 400: already running
            response.raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"users/{name}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                return self.user_url(name)
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited:\n{self.log_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"{name}'s server did not start within {timeout} s:\n{self.log_text()}")

    def direct_url(self, name: str) -> str:
        """``name``'s single-user server at its own loopback port, bypassing the proxy (from the Hub's routes)."""
        routes = self.api("GET", "proxy").json()
        target = routes[f"/user/{name}/"]["target"]
        return f"{target.rstrip('/')}/user/{name}/"

    def stop_server(self, name: str, timeout: float = 30) -> None:
        self.api("DELETE", f"users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api("GET", f"users/{name}").json().get("servers"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name}'s server did not stop within {timeout} s")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


@contextmanager
def jupyterhub(
    users: tuple[str, ...] = ("alice", "bob"),
    *,
    timeout: float = 60,
    extra_config: Callable[[str], str] | None = None,
) -> Iterator[HubProcess]:
    """Start a JupyterHub on free loopback ports; stop it, its proxy and its users' servers afterwards.

    ``extra_config(hub_url)``: more ``jupyterhub_config.py`` lines, appended to the test Hub's."""
    chp = chp_command()
    if chp is None:
        raise RuntimeError("configurable-http-proxy is not installed (npm install --prefix ~/.cache/nbmcp-npm ...)")
    port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    admin_token = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="nbmcp-hub-test-") as tmp_name:
        tmp = Path(tmp_name)
        for name in users:
            (tmp / "home" / name).mkdir(parents=True)
            (tmp / "runtime" / name).mkdir(parents=True)
        singleuser = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
        config = {
            "port": port,
            "hub_port": hub_port,
            "proxy_api_port": proxy_api_port,
            "chp": chp,
            "tmp": str(tmp),
            "users": list(users),
            "singleuser": singleuser,
            "extensions": EXTENSIONS,
            "admin_token": admin_token,
        }
        (tmp / "settings.json").write_text(json.dumps(config))
        extra = extra_config(f"http://127.0.0.1:{port}/") if extra_config else ""
        (tmp / "jupyterhub_config.py").write_text(_HUB_CONFIG + extra)
        log = tmp / "hub.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NBMCP_HUB_SETTINGS": str(tmp / "settings.json")}
        env.pop("JUPYTER_TOKEN", None)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                start_new_session=True,  # the Hub, its proxy and the user servers: one group to clean up
            )
        hub = HubProcess(proc, f"http://127.0.0.1:{port}/", admin_token, tmp, log)
        try:
            _wait_until_up(hub, timeout)
            yield hub
        finally:
            _stop(hub)


# Read by the Hub process: everything it needs comes from the settings file the fixture wrote.
_HUB_CONFIG = """
import json, os
s = json.load(open(os.environ["NBMCP_HUB_SETTINGS"]))
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = s["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.JupyterHub.db_url = "sqlite:///" + os.path.join(s["tmp"], "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(s["tmp"], "cookie_secret")
c.JupyterHub.pid_file = os.path.join(s["tmp"], "hub.pid")
c.ConfigurableHTTPProxy.command = s["chp"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % s["proxy_api_port"]
c.ConfigurableHTTPProxy.pid_file = os.path.join(s["tmp"], "proxy.pid")
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(s["users"])
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(s["tmp"], "home", "{username}")
# a home as users have it: with jupyter-collaboration, jupyter_server_fileid opens its database in the
# user's Jupyter data dir and fails when that directory does not exist
for name in s["users"]:
    os.makedirs(os.path.join(s["tmp"], "home", name, ".local", "share", "jupyter"), exist_ok=True)
c.Spawner.cmd = [s["singleuser"]]
c.Spawner.args = [
    "--allow-root",
    "--ServerApp.jpserver_extensions=" + s["extensions"],
    "--ServerApp.reraise_server_extension_failures=True",
]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# each user's kernels and nbmcp discovery files stay in the test's own directory
c.Spawner.environment = {
    "JUPYTER_RUNTIME_DIR": lambda spawner: os.path.join(s["tmp"], "runtime", spawner.user.name),
    "JUPYTER_PLATFORM_DIRS": "1",
}
c.JupyterHub.services = [{"name": "nbmcp-test", "api_token": s["admin_token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "nbmcp-test-admin",
        "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "proxy"],
        "services": ["nbmcp-test"],
    }
]
"""


def _wait_until_up(hub: HubProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {hub.proc.returncode}:\n{hub.log_text()}")
        # through the proxy: both the Hub and configurable-http-proxy are up
        with suppress(httpx.HTTPError):
            if hub.api("GET", "users").status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"jupyterhub did not start within {timeout} s:\n{hub.log_text()}")


def _stop(hub: HubProcess) -> None:
    # SIGTERM: the Hub stops its users' servers and its proxy (cleanup_servers, cleanup_proxy), bounded
    if hub.proc.poll() is None:
        hub.proc.terminate()
        try:
            hub.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
            hub.proc.wait()
    # whatever is left in the Hub's process group (a proxy or server it could not stop)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(hub.proc.pid, signal.SIGKILL)

"""A new user's first hour, as the README tells it: run by .ci/run, not by pytest (it builds its own venv).

    .venv/bin/python tests/user_journey.py [--keep]

In a fresh copy of this checkout it runs the README's own words, read from README.md so they cannot drift:
the set-up command (install and demo), the extra the notebook section asks for, the notebook snippet in a
real kernel of that venv, then the client configs nbmcp prints (`%mcp config claude`, `nbmcp config claude`),
each launched as an MCP client would launch it: with a PATH that does not contain the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from jupyter_client import KernelManager
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CLEAN_PATH = "/usr/bin:/bin"  # what a desktop client starts with: not the venv, not pyenv shims


def blocks(language: str, after: str) -> list[str]:
    """The fenced ``language`` blocks of the README section whose heading is ``after``."""
    section = README.split(f"\n{after}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(command: str, cwd: Path) -> str:
    print(f"$ {command}", flush=True)
    done = subprocess.run(command, shell=True, cwd=cwd, text=True, capture_output=True, timeout=900)
    print(done.stdout[-3000:], done.stderr[-3000:], sep="", flush=True)
    if done.returncode:
        raise SystemExit(f"user journey: `{command}` failed with exit code {done.returncode}")
    return done.stdout


def copy_checkout(target: Path) -> None:
    """The tracked files as they are in the working tree (what a fresh clone of this commit would hold)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run_cell(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(content["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            raise SystemExit(f"user journey: the README's cell failed: {content['ename']}: {content['evalue']}")

    kc.execute_interactive(code, output_hook=hook, timeout=120)
    return "".join(out)


def stdio_params(entry: dict[str, Any], cwd: Path) -> StdioServerParameters:
    env = {"PATH": CLEAN_PATH, "JUPYTER_RUNTIME_DIR": os.environ["JUPYTER_RUNTIME_DIR"], **entry.get("env", {})}
    return StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=cwd)


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def use_bridge(entry: dict[str, Any], cwd: Path) -> None:
    async with Client(stdio_params(entry, cwd)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"top_customers", "list_objects", "read_rows"} <= tools, tools
        top = await client.call_tool("top_customers", {"n": 2})
        assert not top.is_error and "cy" in text_of(top), text_of(top)
        page = await client.read_resource("nbmcp://objects/sales/rows/0/2")
        assert "ana" in page.contents[0].text, page.contents[0].text
        print(f"bridge: {len(tools)} tools; top_customers(n=2) ->\n{text_of(top)}")


async def use_serve(entry: dict[str, Any], cwd: Path) -> None:
    async with Client(stdio_params(entry, cwd)) as client:
        result = await client.call_tool("execute", {"code": "1 + 1"})
        assert not result.is_error and text_of(result).startswith("2"), text_of(result)
        print(f"nbmcp serve: execute('1 + 1') -> {text_of(result).splitlines()[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary checkout and venv")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbmcp-journey-"))
    runtime = work / "runtime"
    runtime.mkdir()
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    try:
        clone = work / "nbmcp"
        copy_checkout(clone)

        step("README, Set up: install and run the demo")
        setup = blocks("bash", "## Set up")[0].strip()
        demo = sh(setup, clone)
        assert "call revenue_by_city" in demo, "the demo printed no tool call"

        step("README, In a notebook: the extra it asks for")
        notebook_setup = blocks("bash", "## In a notebook")[0]
        install = next(line for line in notebook_setup.splitlines() if "pip install" in line)
        sh(install.split("&&")[0].strip(), clone)  # the install; starting JupyterLab itself is for a person

        step("README, In a notebook: the snippet, in a kernel of that venv")
        python = clone / ".venv" / "bin" / "python"
        # A kernelspec of the fresh venv, found through JUPYTER_PATH, as a user's Jupyter would find theirs.
        spec = work / "jupyter" / "kernels" / "journey"
        spec.mkdir(parents=True)
        argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "journey", "language": "python"}))
        os.environ["JUPYTER_PATH"] = str(work / "jupyter")
        km = KernelManager(kernel_name="journey")
        km.start_kernel(cwd=str(clone))
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            cells = blocks("python", "## In a notebook")
            assert run_cell(kc, "import sys; print(sys.executable)").strip() == str(python), "not the fresh venv"
            for cell in cells[:2]:  # %load_ext nbmcp, then the snippet
                print(run_cell(kc, cell))
            printed = run_cell(kc, "%mcp config claude")
            claude = json.loads(printed[printed.index("{") :])
            (entry,) = claude["mcpServers"].values()
            assert entry["command"].startswith(str(clone)), f"the config launches another venv's nbmcp: {entry}"
            print(f"%mcp config claude -> {entry['command']} {' '.join(entry['args'][:1])} ...")

            step("the printed Claude config, launched with PATH=" + CLEAN_PATH)
            anyio.run(use_bridge, entry, work)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

        step("README, nbmcp serve: `nbmcp config claude`, launched with PATH=" + CLEAN_PATH)
        printed = sh(".venv/bin/nbmcp config claude", clone)
        (entry,) = json.loads(printed)["mcpServers"].values()
        anyio.run(use_serve, entry, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nuser journey: every README step worked as written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

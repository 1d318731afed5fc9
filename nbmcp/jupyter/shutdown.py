"""A Jupyter Server process that ends when JupyterHub (or anyone) stops it, within a second or two.

JupyterHub stops a user's server with SIGINT, then SIGTERM, then SIGKILL (``LocalProcessSpawner.stop``). With
real-time collaboration and a notebook open in a browser tab, two gaps outside nbmcp keep the process alive
until SIGKILL, whether or not nbmcp is loaded (reproduced with plain ``jupyter lab`` and jupyter-collaboration;
``tests/jupyter/test_stop.py``):

1. Without a terminal, ``jupyter_server.serverapp.ServerApp.init_signal`` installs no SIGINT handler (its
   confirmation prompt needs a tty, and JupyterHub's ``_handle_sigint`` → ``_signal_stop`` of
   ``jupyterhub.singleuser.mixins`` is installed by that same tty-only code). SIGINT is then Python's
   ``KeyboardInterrupt``: ``start_ioloop`` logs "Interrupted..." and leaves the loop without ``_cleanup()``:
   no extension stopped, no kernel shut down.
2. anyio's worker threads (``anyio.to_thread``: jupyter_server's file reads in ``services/contents/fileio.py``,
   pycrdt-store's ``SQLiteYStore``) are not daemon threads, and each stops only when the task anyio took as its
   root finishes. For a collaboration WebSocket that is tornado's request task, which lives as long as the
   tab stays connected: jupyter_server_ydoc's stop deletes its rooms but leaves those connections open. Once
   the loop has stopped that task never finishes, and ``threading._shutdown`` waits for the worker forever,
   after SIGTERM too.

So a SIGINT without a terminal stops the server as SIGTERM does, and when the process exits (the main thread
has finished), the anyio workers of the server's stopped loop are told to stop, as anyio does when their root
tasks finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

__all__ = ["end_with_the_server", "stop_loop_workers"]

log = logging.getLogger(__name__)

#: The name anyio gives its worker threads (``anyio.to_thread``).
WORKER_NAME = "AnyIO worker thread"

_registered: set[int] = set()  # id() of the loops whose workers are stopped at exit


def end_with_the_server(serverapp: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Make SIGINT stop ``serverapp`` gracefully when nobody handles it, and free ``loop``'s anyio workers at
    exit. Call it on the main thread, from the server's running loop (an extension's start)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; an embedding application owns them
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        # Jupyter's own handler (the confirmation prompt on a terminal) or anyone else's is left alone

        def stop_on_sigint(signum: int, frame: Any) -> None:
            # a second SIGINT while stopping is a KeyboardInterrupt again, as a second ^C is in a terminal
            signal.signal(signal.SIGINT, signal.default_int_handler)
            serverapp.log.critical("received signal %s, stopping (nbmcp: SIGINT without a terminal)", signum)
            serverapp.stop(from_signal=True)

        signal.signal(signal.SIGINT, stop_on_sigint)
    if id(loop) not in _registered:
        _registered.add(id(loop))
        # the interpreter's exit marks the main thread finished, then joins the other non-daemon threads
        threading.Thread(target=_at_exit, args=(loop,), name="nbmcp-exit-watch", daemon=True).start()


def _at_exit(loop: asyncio.AbstractEventLoop) -> None:
    threading.main_thread().join()
    stop_loop_workers(loop)


def stop_loop_workers(loop: asyncio.AbstractEventLoop) -> int:
    """Tell the anyio worker threads of ``loop``, which no longer runs, to stop: idle ones end at once, busy
    ones after their current call. Returns how many were told."""
    if loop.is_running():
        return 0  # only at exit: a running loop's workers are anyio's to manage
    told = 0
    for thread in threading.enumerate():
        # anyio's worker threads by their name and their public attributes (its class is in a private module);
        # stop() is what anyio calls when the worker's root task finishes
        worker: Any = thread
        if (
            worker.name == WORKER_NAME
            and getattr(worker, "loop", None) is loop
            and not getattr(worker, "stopping", True)
        ):
            worker.stop()
            told += 1
    if told:
        log.debug("nbmcp: told %d anyio worker thread(s) of the stopped server loop to stop", told)
    return told

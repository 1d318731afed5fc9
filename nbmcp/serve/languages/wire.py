"""The answer channel of nbmcp's kernel-side code in a Python kernel; runs *inside* the kernel as the
module ``_nbmcp_wire``.

nbmcp does not import this module: :mod:`.python` sends its source to the kernel. A kernel-side call's
JSON answer goes out as a ``display_data`` of :data:`MIME` (through the shell's display publisher:
ipykernel, xeus-python), or as stdout text between :data:`START` and :data:`END` in a kernel without one.
Not ``user_expressions``: IRkernel and Deno's kernel answer those with ``{}``, and one transport serves
every kernel. The execute is silent and nbmcp's own, so the answer never reaches a notebook or the session
recording. Standard library only; the kernel's Python may be older than nbmcp's.
"""

import json
import sys

MIME = "application/vnd.nbmcp.answer+json"
START = "\x02nbmcp-answer\x02"
END = "\x03nbmcp-end\x03"


def emit(text):
    """Send one answer (JSON text) to the nbmcp request being executed."""
    try:
        from IPython import get_ipython

        publisher = getattr(get_ipython(), "display_pub", None)
    except Exception:  # no IPython in this kernel
        publisher = None
    if publisher is not None:
        try:
            publisher.publish(data={MIME: text}, metadata={"nbmcp": "answer"})
            return
        except Exception:
            pass
    sys.stdout.write(START + text + END)
    sys.stdout.flush()


def answer(module, function, call):
    """Answer ``call(module)`` (JSON text), or say that ``module.function`` is not installed (yet)."""
    mod = sys.modules.get(module)
    if mod is None or not hasattr(mod, function):
        emit(json.dumps({"nbmcp_missing": module}))
        return
    try:
        text = call(mod)
    except Exception as e:
        text = json.dumps({"error": f"{type(e).__name__}: {e}"})
    emit(text)

"""The grants file: what the service must remember across a restart (registered clients, grants and whether
they are revoked, refresh tokens), as JSON in its state directory.

Written whole on each change, atomically (a new 0600 file, flushed, then renamed over the old one), so a
crash leaves the old or the new state, never half of one. It holds no usable secret: refresh tokens are
kept as SHA-256 hashes, client secrets are derived from the signing key (``tokens``) and not stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["GrantsFile", "token_hash"]

VERSION = 1


def token_hash(token: str) -> str:
    """What is kept of a refresh token: enough to recognise it, useless to present."""
    return hashlib.sha256(token.encode()).hexdigest()


class GrantsFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "grants.json"

    def load(self) -> dict[str, Any]:
        """The saved state, or an empty one when there is none yet."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SystemExit(
                f"nbmcp.jupyter.hub: cannot read {self.path} ({exc}); move it away to start with no grants "
                "(everyone signs in again)"
            ) from None
        if data.get("version") != VERSION:
            raise SystemExit(f"nbmcp.jupyter.hub: {self.path} has version {data.get('version')}, expected {VERSION}")
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)  # O_EXCL: the mode below is the file's, whatever was there
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"version": VERSION, **data}, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

"""The OAuth scopes of nbmcp and what each allows, in the words the consent page uses."""

from __future__ import annotations

READ = "nbmcp:read"
EXECUTE = "nbmcp:execute"

# what a person is asked to allow; execute includes read
SCOPES: dict[str, str] = {
    READ: "see your notebooks and running kernels: list them, read cells and outputs, inspect variables and "
    "data frames, and run read-only queries",
    EXECUTE: "run code in your kernels and edit your notebooks, as you could yourself",
}


def granted(scopes: list[str] | str) -> set[str]:
    """The scopes a token's ``scope`` claim grants, with what each implies (execute implies read)."""
    names = set(scopes.split() if isinstance(scopes, str) else scopes)
    if EXECUTE in names:
        names.add(READ)
    return names & set(SCOPES)

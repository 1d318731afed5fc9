"""``python -m nbmcp.jupyter.hub``: the Hub-managed OAuth service (see ``service``)."""

from .service import main

main()

"""``python -m nbmcp``: the same CLI as the ``nbmcp`` command."""

import sys

from .cli import main

sys.exit(main())

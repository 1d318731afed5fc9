"""Notebook files of ``nbmcp serve``: the session recording, and the notebook tools' ``.ipynb`` edits."""

"""How exposed objects are shown: their resources and pages, the ``query`` tool, the table app."""

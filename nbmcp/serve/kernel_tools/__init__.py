"""Serve's kernel tools: declared once (catalog), what they do (tool_logic), their arguments and answers."""

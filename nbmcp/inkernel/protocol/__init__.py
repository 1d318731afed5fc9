"""MCP beyond calling a tool: completion, logging, notifications, rich prompts, structured output, tool hints."""

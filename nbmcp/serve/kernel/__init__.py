"""One Jupyter kernel over the messaging protocol: reaching it, channels, requests, execute, session."""

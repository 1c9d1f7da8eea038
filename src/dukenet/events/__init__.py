"""Live task events: what changed, pushed to the browser as server-sent events."""

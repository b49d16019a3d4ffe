"""CloudEvent types hekaton emits and consumes, and parsers for external payloads (imports nothing of ours)."""

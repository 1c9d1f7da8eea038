"""Uploaded files: type and size checks, SHA-256, storage backends, download, excerpts."""

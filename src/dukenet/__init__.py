"""DukeNET: a self-improving AI agent marketplace."""

__version__ = "0.1.0"

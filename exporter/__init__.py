"""probewatch's exporter: config, scheduler, exposition, HTTP server and CLI."""

from probes import __version__

__all__ = ["__version__"]

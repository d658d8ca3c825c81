"""probewatch's exporter: config, scheduler, exposition, HTTP server and CLI."""

__version__ = "0.1.0"

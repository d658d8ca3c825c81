"""The status API and page, attached to the exporter by ``probewatch serve``.

``attach(exporter, router)`` adds GET / (the page), GET /status (200/503 for load
balancers, Megaphone's collated JSON), GET /api/v1/probes[/NAME] and, when
``api.token_file`` is set, PUT and DELETE /api/v1/probes/NAME; and Megaphone's
own routes (/check/add, /check/list, /check/show/ID, DELETE /check/ID).  Probes
registered through the API are merged after the config file's probes; their
state file is read when the exporter first applies its config (at start,
before any probe runs).
"""

from __future__ import annotations

import logging
import threading

from ..config import ProbeSpec, config_dir
from ..routing import Router
from ..service import Exporter
from .api import StatusApi
from .megaphone import attach as attach_megaphone
from .page import StatusPage
from .store import RegisteredProbes, Settings, state_file_path

log = logging.getLogger("probewatch.status")


class RegisteredSource:
    """Opens the registered-probe store once the exporter's config is known."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self._store: RegisteredProbes | None = None
        self._lock = threading.Lock()

    def _settings(self) -> Settings:
        config = self.exporter.config
        assert config is not None, "the exporter's config is loaded before probes are applied"
        return Settings(config.defaults, config.api, config_dir(config.path))

    def store(self) -> RegisteredProbes:
        with self._lock:
            if self._store is None:
                config = self.exporter.config
                assert config is not None, "the store opens once the config is loaded"
                path = state_file_path(config.path, config.api, self.exporter.shard)
                store = RegisteredProbes(path, self._settings)
                store.load()
                self._store = store
            else:
                self._warn_if_moved()
            return self._store

    def _warn_if_moved(self) -> None:
        config = self.exporter.config
        if config is not None and self._store is not None:
            wanted = state_file_path(config.path, config.api, self.exporter.shard)
            if wanted != self._store.path:
                log.warning("api.state_file changed; restart probewatch to use the new file",
                            extra={"file": self._store.path, "configured": wanted})

    def specs(self) -> list[ProbeSpec]:
        return self.store().specs()


def attach(exporter: Exporter, router: Router) -> None:
    source = RegisteredSource(exporter)
    exporter.add_probe_source(source.specs)
    router.add("GET", "/", StatusPage(exporter).get)
    api = StatusApi(exporter, source.store)
    api.add_routes(router)
    attach_megaphone(api, router)

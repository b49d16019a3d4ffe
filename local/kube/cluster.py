"""The local cluster in one object: API server, garbage collector, Knative controller,
revision runtime and ingress gateway, started and stopped together."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.kube import knative_admission
from local.kube.apiserver import MAX_BODY_BYTES, ApiServer
from local.kube.contracts import RevisionRuntime, Router
from local.kube.garbage_collector import GarbageCollector
from local.kube.knative_controller import KnativeController
from local.kube.registry import Registry
from local.kube.store import Store

if TYPE_CHECKING:
    from local.faults.kube import KubeFaultInjector

log = logging.getLogger(__name__)

DEFAULT_DOMAIN = "example.com"


class LocalCluster:
    """A Kubernetes API with Knative Serving behaviour whose revisions run as local processes.

    Give ``catalog`` to run real processes behind the real gateway, or inject ``runtime`` and
    ``router`` (tests with fakes). ``start()`` binds the ports (0 picks free ones).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        gateway_port: int = 0,
        domain: str = DEFAULT_DOMAIN,
        catalog: Path | None = None,
        revision_log_dir: Path | None = None,
        runtime: RevisionRuntime | None = None,
        router: Router | None = None,
        auto_create_namespaces: bool = True,
        history_limit: int = 5000,
        max_body_bytes: int = MAX_BODY_BYTES,
        tokens: Mapping[str, str] | None = None,
        faults: KubeFaultInjector | None = None,
    ) -> None:
        if runtime is None:
            if catalog is None:
                raise ValueError("LocalCluster needs an image catalog or a runtime")
            from local.kube.catalog import ImageCatalog
            from local.kube.runtime import ProcessRuntime

            runtime = ProcessRuntime(ImageCatalog.load(catalog), log_dir=revision_log_dir)
        self._gateway: Any = None
        if router is None:
            from local.kube.gateway import Gateway

            self._gateway = Gateway(host, gateway_port, runtime, domain)
            router = self._gateway
        self.domain = domain
        self.runtime = runtime
        self.router = router
        self.store = Store(history_limit)
        self.registry = Registry(self.store, [knative_admission.admit], auto_create_namespaces)
        self._api = ApiServer(self.registry, host, port, max_body_bytes, tokens, faults)
        self._collector = GarbageCollector(self.registry)
        self._controller = KnativeController(self.registry, runtime, router, domain)
        self._policies: Any = None
        if self._gateway is not None:
            from local.kube.mesh_auth import PolicyWatcher

            self._policies = PolicyWatcher(self.store, self._gateway.auth)
        self._started = False

    @property
    def kube_server(self) -> str:
        """The API server's URL (``kubectl --server=...``, ``Configuration.host``)."""
        return self._api.url

    @property
    def gateway_url(self) -> str | None:
        """The ingress gateway's URL, or None when a router was injected."""
        return self._gateway.url if self._gateway is not None else None

    def start(self) -> LocalCluster:
        """Start serving; returns self so ``LocalCluster(...).start()`` reads naturally."""
        if self._started:
            return self
        try:
            if self._gateway is not None:
                self._gateway.start()
            self._api.start()
            self._collector.start()
            self._controller.start()
            if self._policies is not None:
                self._policies.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        log.info("local cluster up: api %s, gateway %s", self.kube_server, self.gateway_url)
        return self

    def stop(self) -> None:
        """Stop everything and every revision process; safe to call twice."""
        if self._policies is not None:
            self._policies.stop()
        self._controller.stop()
        self._collector.stop()
        self._api.stop()
        self.runtime.stop_all()
        if self._gateway is not None:
            self._gateway.stop()
        self._started = False

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

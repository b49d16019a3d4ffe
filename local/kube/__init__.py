"""The local cluster: a Kubernetes API server with Knative Serving's behaviour (dev tooling).

Layers, bottom up:

- ``store``: objects in memory, one global resourceVersion, event history, watches.
- ``registry``: what create/update/patch/delete mean (server-managed metadata, generation,
  status subresource, optimistic concurrency, finalizers, namespaces), with admission plugins
  (``validation`` for metadata, ``knative_admission`` for Knative's webhooks).
- ``apiserver``: the HTTP API (``routing``, ``discovery``, ``openapi``, ``tables``,
  ``protobuf`` for kubectl's built-in-kind bodies, ``selectors``, ``patching``, ``errors``).
- ``garbage_collector``: ownerReference cascading deletion.
- ``knative_controller`` + ``knative_reconcile``: Services -> Configurations/Routes ->
  Revisions, run through a ``contracts.RevisionRuntime`` and routed by a ``contracts.Router``.
- ``cluster.LocalCluster`` wires it all; ``python -m local.kube serve`` runs it.
"""

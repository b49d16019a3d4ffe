"""The Kubernetes API over plain HTTP: request parsing, verbs, watch streaming, responses."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from local.kube import discovery, errors, openapi, protobuf, rbac, routing, tables
from local.kube import store as storage
from local.kube.errors import ApiError
from local.kube.registry import DeleteOptions, Options, Registry
from local.kube.resources import ResourceType
from local.kube.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

if TYPE_CHECKING:
    from local.faults.kube import KubeFaultInjector

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_BODY_BYTES = 3 * 1024 * 1024  # the real API server's request body limit
_WATCH_POLL_SECONDS = 1.0
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
_DRAIN_TIMEOUT_SECONDS = 10.0
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


def _present(obj: Obj, resource: ResourceType, version: str) -> Obj:
    """The object as served at ``version`` (versions differ only in apiVersion)."""
    return {**obj, "apiVersion": resource.api_version(version), "kind": resource.kind}


class _Request:
    """The parsed parts of one request that the verbs need."""

    def __init__(self, handler: ApiHandler, method: str) -> None:
        url = urlsplit(handler.path)
        self.method = method
        self.path = url.path.rstrip("/") or "/"
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.accept = handler.headers.get("Accept", "application/json")
        self.content_type = handler.headers.get("Content-Type", "")
        self.user: str | None = rbac.ADMIN

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")

    def options(self) -> Options:
        validation = self.query.get("fieldValidation", "Warn") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{validation}"'
            )
        dry_run = self.query.get("dryRun", "")
        if dry_run not in ("", "All"):
            raise errors.bad_request(f'dryRun must be "All", not "{dry_run}"')
        return Options(
            dry_run=dry_run == "All",
            field_validation=validation,
            field_manager=self.query.get("fieldManager"),
            force=self.flag("force"),
        )


class ApiHandler(BaseHTTPRequestHandler):
    """One connection's requests; every error becomes a ``Status`` response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: ApiHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        self._streaming = False
        try:
            request = _Request(self, method)
            self._authorize(request)
            if not self._serve_static(request):
                self._serve_resource(request)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug must not kill the server thread
            if not isinstance(error, ApiError):
                log.exception("request %s %s failed", method, self.path)
            if self._streaming:
                self.close_connection = True  # a response is under way: cut it off
                return
            failure = error if isinstance(error, ApiError) else errors.internal(str(error))
            self._discard_body()
            self._send_json(failure.code, failure.status())

    def _authorize(self, request: _Request) -> None:
        """Identify the caller and refuse what RBAC does not grant it (401/403)."""
        authorizer = self.server.authorizer
        request.user = authorizer.identify(
            self.headers.get("Authorization", ""), self.headers.get("Impersonate-User")
        )
        attributes = rbac.request_attributes(request.method, request.path, request.query)
        if attributes is not None:
            authorizer.authorize(request.user, attributes)

    def _serve_static(self, request: _Request) -> bool:
        """Non-resource paths: health, version, discovery, OpenAPI."""
        path = request.path
        if path in _HEALTH_PATHS:
            self._require_get(request)
            self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
            return True
        document: Obj | str | None = None
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            document = discovery.version()
        elif path == "/api":
            document = discovery.core_versions(self.headers.get("Host", "127.0.0.1"))
        elif path == "/apis":
            document = discovery.group_list()
        elif len(parts) == 2 and parts[0] == "api":
            document = discovery.resource_list("", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            document = discovery.group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            document = discovery.resource_list(parts[1], parts[2])
        elif path == "/openapi/v3":
            document = openapi.v3_index()
        elif len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            if parts[2] == "api" and len(parts) == 4:
                document = openapi.v3_document("", parts[3])
            elif parts[2] == "apis" and len(parts) == 5:
                document = openapi.v3_document(parts[3], parts[4])
            if document is None:
                raise errors.path_not_found()
        elif path == "/openapi/v2":
            if "json" not in request.accept and "*/*" not in request.accept:
                # Only JSON is on offer; protobuf-only clients get what the real server
                # answers for a media type it cannot produce.
                raise ApiError(406, "NotAcceptable", "only application/json is served")
            document = openapi.v2_document()
        else:
            return False
        if document is None:
            raise errors.path_not_found()
        self._require_get(request)
        if isinstance(document, str):
            self._send_bytes(200, document.encode(), "application/json")
        else:
            self._send_json(200, document)
        return True

    @staticmethod
    def _require_get(request: _Request) -> None:
        if request.method != "GET":
            raise errors.method_not_allowed(request.method)

    def _serve_resource(self, request: _Request) -> None:
        target = routing.parse(request.path)
        if target is None:
            raise errors.path_not_found()
        method = request.method
        self._drop_watch = False
        if self.server.faults is not None:
            self._inject(request, target)
        if target.resource.review:
            if method != "POST" or target.name is not None:
                raise errors.method_not_allowed(method)
            answer = self.server.authorizer.review(
                request.user, target.resource.kind, self._read_object()
            )
            self._send_json(201, answer)
            return
        if target.name is None:
            if method == "GET":
                if request.flag("watch"):
                    self._watch(request, target)
                else:
                    self._list(request, target)
            elif method == "POST" and (
                target.namespace is not None or not target.resource.namespaced
            ):
                self._create(request, target)
            elif method == "DELETE" and (
                target.namespace is not None or not target.resource.namespaced
            ):
                self._delete_collection(request, target)
            else:
                raise errors.method_not_allowed(method)
            return
        namespace = target.namespace or ""
        registry = self.server.registry
        resource = target.resource
        if method == "GET":
            obj = registry.get(resource, namespace, target.name)
            self._send_object(request, target, 200, obj)
        elif method == "PUT":
            options = request.options()
            body = self._read_object()
            obj = registry.update(
                resource, namespace, target.name, body, target.subresource, options
            )
            self._send_object(request, target, 200, obj, options.warnings)
        elif method == "PATCH":
            options = request.options()
            raw = self._read_body()
            obj, created = registry.patch(
                resource,
                namespace,
                target.name,
                request.content_type,
                raw,
                target.subresource,
                options,
            )
            self._send_object(request, target, 201 if created else 200, obj, options.warnings)
        elif method == "DELETE" and target.subresource is None:
            obj = registry.delete(resource, namespace, target.name, self._delete_options(request))
            self._send_object(request, target, 200, obj)
        else:
            raise errors.method_not_allowed(method)

    def _inject(self, request: _Request, target: routing.Target) -> None:
        """Apply the fault plan for this request (fault-injection runs only)."""
        assert self.server.faults is not None
        watch = request.method == "GET" and target.name is None and request.flag("watch")
        plan = self.server.faults.plan(request.method, watch=watch)
        if plan.slow_seconds:
            threading.Event().wait(plan.slow_seconds)  # the injected slowness itself
        if plan.error_code is not None:
            reason = "ServiceUnavailable" if plan.error_code == 503 else "InternalError"
            raise ApiError(plan.error_code, reason, "injected fault: the API server is unwell")
        if plan.conflict:
            resource = target.resource
            raise errors.conflict(
                resource.group, resource.plural, target.name or "", errors.STALE_OBJECT
            )
        self._drop_watch = plan.drop_watch

    # ------------------------------------------------------------------ verbs

    def _create(self, request: _Request, target: routing.Target) -> None:
        options = request.options()
        body = self._read_object()
        obj = self.server.registry.create(target.resource, target.namespace or "", body, options)
        self._send_object(request, target, 201, obj, options.warnings)

    def _selectors(self, request: _Request) -> tuple[Any, Any]:
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        fields = parse_field_selector(request.query.get("fieldSelector", ""))
        return labels, fields

    def _list(self, request: _Request, target: routing.Target) -> None:
        labels, fields = self._selectors(request)
        limit_text = request.query.get("limit", "")
        try:
            limit = int(limit_text) if limit_text else None
        except ValueError as error:
            raise errors.bad_request(f"invalid limit {limit_text!r}") from error
        result = self.server.registry.list_objects(
            target.resource,
            target.namespace if target.resource.namespaced else "",
            labels,
            fields,
            limit,
            request.query.get("continue"),
        )
        resource, version = target.resource, target.version
        items = [_present(obj, resource, version) for obj in result.items]
        if tables.wants_table(request.accept):
            document = tables.to_table(
                resource,
                items,
                str(result.resource_version),
                request.query.get("includeObject", "Metadata"),
                result.continue_token,
            )
        else:
            metadata: Obj = {"resourceVersion": str(result.resource_version)}
            if result.continue_token:
                metadata["continue"] = result.continue_token
                metadata["remainingItemCount"] = result.remaining
            document = {
                "apiVersion": resource.api_version(version),
                "kind": resource.list_kind,
                "metadata": metadata,
                "items": items,
            }
        self._send_json(200, document)

    def _delete_collection(self, request: _Request, target: routing.Target) -> None:
        labels, fields = self._selectors(request)
        options = self._delete_options(request)
        registry = self.server.registry
        matching = registry.list_objects(
            target.resource, target.namespace or "", labels, fields
        ).items
        deleted = []
        for obj in matching:
            try:
                deleted.append(
                    registry.delete(
                        target.resource, target.namespace or "", obj["metadata"]["name"], options
                    )
                )
            except ApiError as error:
                if error.code != 404:
                    raise
        resource, version = target.resource, target.version
        self._send_json(
            200,
            {
                "apiVersion": resource.api_version(version),
                "kind": resource.list_kind,
                "metadata": {"resourceVersion": str(registry.store.revision())},
                "items": [_present(obj, resource, version) for obj in deleted],
            },
        )

    def _delete_options(self, request: _Request) -> DeleteOptions:
        body = self._read_body()
        given: Obj = {}
        if body.strip():
            parsed = self._parse(body)
            if not isinstance(parsed, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            given = parsed
        preconditions = given.get("preconditions") or {}
        propagation = (
            given.get("propagationPolicy") or request.query.get("propagationPolicy") or "Background"
        )
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
        if given.get("orphanDependents") is True:
            propagation = "Orphan"
        dry_run = given.get("dryRun") or (
            [request.query["dryRun"]] if "dryRun" in request.query else []
        )
        return DeleteOptions(
            propagation=propagation,
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
            dry_run="All" in dry_run,
        )

    def _watch(self, request: _Request, target: routing.Target) -> None:
        labels, fields = self._selectors(request)
        timeout_text = request.query.get("timeoutSeconds", "")
        try:
            timeout = float(timeout_text) if timeout_text else None
        except ValueError as error:
            raise errors.bad_request(f"invalid timeoutSeconds {timeout_text!r}") from error
        as_table = tables.wants_table(request.accept)
        namespace = target.namespace if target.resource.namespaced else ""
        try:
            watch = self.server.registry.watch(
                target.resource, namespace, request.query.get("resourceVersion")
            )
        except ApiError as error:
            if error.code != 410:
                raise
            # As the real server does: a too-old resourceVersion is an ERROR event in the stream.
            self._start_stream()
            self._write_event({"type": "ERROR", "object": error.status()})
            self._end_stream()
            return
        self._start_stream()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not watch.closed:
                wait = _WATCH_POLL_SECONDS
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    event = watch.next(wait)
                except storage.HistoryExpired as expired:
                    self._write_event(
                        {"type": "ERROR", "object": errors.expired(str(expired)).status()}
                    )
                    break
                if event is None:
                    if self._client_gone():
                        return
                    continue
                rendered = self._render_event(event, target, labels, fields, as_table, request)
                if rendered is not None:
                    self._write_event(rendered)
                    if self._drop_watch:  # injected: the connection breaks mid-stream
                        self.close_connection = True
                        return
            self._end_stream()
        finally:
            watch.close()

    def _render_event(
        self,
        event: storage.Event,
        target: routing.Target,
        labels: Any,
        fields: Any,
        as_table: bool,
        request: _Request,
    ) -> Obj | None:
        """The watch event as the client sees it; selectors turn MODIFIED into ADDED/DELETED."""

        def selected(obj: Obj | None) -> bool:
            return obj is not None and labels_match(labels, obj) and fields_match(fields, obj)

        now_selected = selected(event.object)
        kind = event.type
        if kind == storage.MODIFIED:
            was_selected = selected(event.previous)
            if not now_selected and not was_selected:
                return None
            if now_selected and not was_selected:
                kind = storage.ADDED
            elif was_selected and not now_selected:
                kind = storage.DELETED
        elif not now_selected:
            return None
        obj = _present(event.object, target.resource, target.version)
        if as_table:
            obj = tables.to_table(
                target.resource,
                [obj],
                str(event.resource_version),
                request.query.get("includeObject", "Metadata"),
            )
        return {"type": kind, "object": obj}

    # ------------------------------------------------------------------ bodies

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError as error:
            raise errors.bad_request(f"invalid Content-Length {length_text!r}") from error
        if length > limit:
            self._drain(length)
            raise errors.too_large(limit)
        self._body_read = True
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Discard a refused body so the client reads our answer instead of a reset connection;
        bodies beyond the drain limit are cut off by closing the connection."""
        self.close_connection = True
        self._body_read = True
        if length > _DRAIN_LIMIT_BYTES:
            return
        self.connection.settimeout(_DRAIN_TIMEOUT_SECONDS)
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:
            return

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        self._body_read = True
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as error:
                self.close_connection = True
                raise errors.bad_request("malformed chunked request body") from error
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise errors.too_large(limit)
            body += self.rfile.read(size)
            self.rfile.readline(16)

    def _discard_body(self) -> None:
        """Consume an unread small body so the keep-alive connection stays in sync."""
        if getattr(self, "_body_read", False) or self.close_connection:
            return
        length_text = self.headers.get("Content-Length") if self.headers else None
        if length_text and length_text.isdigit() and int(length_text) <= self.server.max_body_bytes:
            self.rfile.read(int(length_text))
            self._body_read = True
        elif length_text or (self.headers and self.headers.get("Transfer-Encoding")):
            self.close_connection = True

    def _parse(self, raw: bytes) -> Any:
        content_type = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as error:
                raise errors.bad_request(f"the request body is not valid YAML: {error}") from error
        if content_type == protobuf.MEDIA_TYPE:
            return protobuf.decode(raw)
        if content_type not in ("application/json", "", "*/*"):
            raise errors.unsupported_media_type(
                content_type, ["application/json", "application/yaml"]
            )
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise errors.bad_request(f"the request body is not valid JSON: {error}") from error

    def _read_object(self) -> Any:
        raw = self._read_body()
        if not raw.strip():
            raise errors.bad_request("the request body is empty; an object is required")
        return self._parse(raw)

    # ------------------------------------------------------------------ responses

    def _send_object(
        self,
        request: _Request,
        target: routing.Target,
        code: int,
        obj: Obj,
        warnings: list[str] | None = None,
    ) -> None:
        presented = _present(obj, target.resource, target.version)
        if tables.wants_table(request.accept):
            document = tables.to_table(
                target.resource,
                [presented],
                str(obj.get("metadata", {}).get("resourceVersion", "")),
                request.query.get("includeObject", "Metadata"),
            )
            self._send_json(code, document, warnings)
        else:
            self._send_json(code, presented, warnings)

    def _send_json(self, code: int, document: Obj, warnings: list[str] | None = None) -> None:
        self._send_bytes(code, json.dumps(document).encode(), "application/json", warnings)

    def _send_bytes(
        self, code: int, body: bytes, content_type: str, warnings: list[str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for warning in warnings or []:
            self.send_header("Warning", f'299 - "{warning}"')
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self) -> None:
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _write_event(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """Whether the client closed an idle watch connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class ApiHttpServer(ThreadingHTTPServer):
    """The HTTP server holding the registry that handlers serve."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        max_body_bytes: int,
        authorizer: rbac.Authorizer,
        faults: KubeFaultInjector | None = None,
    ) -> None:
        super().__init__(address, ApiHandler)
        self.registry = registry
        self.max_body_bytes = max_body_bytes
        self.authorizer = authorizer
        self.faults = faults  # fault injection (local/faults/kube.py); None: none


class ApiServer:
    """The API server bound to a host/port (port 0 picks a free one) and served on a thread."""

    def __init__(
        self,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
        tokens: Mapping[str, str] | None = None,
        faults: KubeFaultInjector | None = None,
    ) -> None:
        """`tokens` maps bearer tokens to user names, whose requests RBAC then decides."""
        self._registry = registry
        authorizer = rbac.Authorizer(registry, tokens)
        self._http = ApiHttpServer((host, port), registry, max_body_bytes, authorizer, faults)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="kube-apiserver",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, end every watch and close the socket."""
        self._registry.store.close()
        if self._thread is not None:  # shutdown() would wait forever on a server never started
            self._http.shutdown()
            self._thread.join(5)
            self._thread = None
        self._http.server_close()

"""Object semantics on top of the store: what create, update, patch and delete do to an object.

Server-managed metadata (uid, resourceVersion, generation, creationTimestamp), the status
subresource, optimistic concurrency, admission (defaulting and validation), finalizers,
namespaces, dry runs and unknown-field handling all live here; the HTTP layer only parses
requests and renders responses.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from local.kube import errors, patching
from local.kube import store as storage
from local.kube.errors import ApiError, FieldError
from local.kube.resources import NAMESPACES, ResourceType, by_key
from local.kube.selectors import FieldRequirement, Requirement, fields_match, labels_match
from local.kube.validation import metadata_errors

Obj = dict[str, Any]
Admission = Callable[[ResourceType, Obj, Obj | None], list[FieldError]]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CUSTOM_RESOURCE_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]

_TOP_LEVEL_FIELDS = {"apiVersion", "kind", "metadata"}  # and each kind's own (ResourceType.fields)
_METADATA_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_SERVER_MANAGED = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Options:
    """Per-request options: dry run, field validation (Strict/Warn/Ignore), collected warnings."""

    dry_run: bool = False
    field_validation: str = "Warn"
    field_manager: str | None = None
    force: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeleteOptions:
    """The parts of ``DeleteOptions`` this server honours."""

    propagation: str = "Background"  # Background | Foreground | Orphan
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ListResult:
    """One page of a list."""

    items: list[Obj]
    resource_version: int
    continue_token: str | None = None
    remaining: int | None = None


def _spec_part(obj: Obj) -> Obj:
    """Everything that counts for ``generation``: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Registry:
    """Create/read/update/patch/delete/watch with Kubernetes' semantics."""

    def __init__(
        self,
        store: storage.Store,
        admission: list[Admission] | None = None,
        auto_create_namespaces: bool = True,
    ) -> None:
        self.store = store
        self._admission = admission or []
        self._auto_create_namespaces = auto_create_namespaces
        self._ensure_namespace("default")

    # ------------------------------------------------------------------ reads

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        """The object, or a 404 ApiError."""
        found = self.store.get(resource.key, namespace, name)
        if found is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return found

    def find(self, resource: ResourceType, namespace: str, name: str) -> Obj | None:
        """The object, or None."""
        return self.store.get(resource.key, namespace, name)

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Matching objects sorted by namespace/name, paged by ``limit``/``continue``."""
        items, revision = self.store.list_objects(resource.key, namespace)
        items = [
            obj
            for obj in items
            if labels_match(labels or [], obj) and fields_match(fields or [], obj)
        ]
        if continue_token:
            start = self._decode_continue(continue_token)
            items = [obj for obj in items if self._position(obj) > start]
        if limit and limit > 0 and len(items) > limit:
            page, rest = items[:limit], items[limit:]
            token = base64.urlsafe_b64encode(
                json.dumps({"rv": revision, "start": self._position(page[-1])}).encode()
            ).decode()
            return ListResult(page, revision, token, len(rest))
        return ListResult(items, revision)

    @staticmethod
    def _position(obj: Obj) -> str:
        metadata = obj["metadata"]
        return f"{metadata.get('namespace', '')}/{metadata['name']}"

    @staticmethod
    def _decode_continue(token: str) -> str:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            return str(decoded["start"])
        except (ValueError, KeyError, TypeError) as error:
            raise errors.bad_request(f"invalid continue token: {error}") from error

    def watch(
        self, resource: ResourceType, namespace: str | None, since: str | None
    ) -> storage.Watch:
        """A watch from ``since`` (None, "" or "0": current state first as ADDED events)."""
        start: int | None = None
        if since not in (None, "", "0"):
            try:
                start = int(str(since))
            except ValueError as error:
                raise errors.bad_request(f"invalid resourceVersion {since!r}") from error
        try:
            return self.store.watch(resource.key, namespace, start)
        except storage.HistoryExpired as error:
            raise errors.expired(str(error)) from error

    # ------------------------------------------------------------------ writes

    def create(
        self, resource: ResourceType, namespace: str, body: Any, options: Options | None = None
    ) -> Obj:
        """Create an object from a request body; 201-worthy result or an ApiError."""
        options = options or Options()
        obj = self._decode_body(resource, body, options)
        metadata = obj["metadata"]
        self._check_namespace(resource, namespace, metadata)
        if metadata.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if not metadata.get("name") and metadata.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_NAME_ALPHABET, k=5))
            metadata["name"] = f"{metadata['generateName']}{suffix}"
        for key in (*_SERVER_MANAGED, "managedFields", "deletionGracePeriodSeconds", "selfLink"):
            metadata.pop(key, None)
        if resource is NAMESPACES:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif resource.status_subresource:
            obj.pop("status", None)
        self._admit(resource, obj, None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if resource is NAMESPACES:
            metadata.pop("generation")
        name = metadata["name"]
        if options.dry_run:
            if self.store.get(resource.key, namespace, name) is not None:
                raise errors.already_exists(resource.group, resource.plural, name)
            return obj
        with self.store.lock:
            if resource.namespaced:
                self._require_namespace(namespace)
            try:
                return self.store.create(resource.key, namespace, name, obj)
            except storage.ObjectExists as error:
                raise errors.already_exists(resource.group, resource.plural, name) from error

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str | None = None,
        options: Options | None = None,
    ) -> Obj:
        """PUT: replace the object (or its status) if the body's resourceVersion is current."""
        options = options or Options()
        obj = self._decode_body(resource, body, options)
        self._check_namespace(resource, namespace, obj["metadata"])
        self._check_name(obj, name)
        version = obj["metadata"].get("resourceVersion")
        if not version and resource.custom:
            raise errors.unprocessable(
                resource.group,
                resource.kind,
                name,
                [
                    errors.invalid(
                        "metadata.resourceVersion", "0x0", "must be specified for an update"
                    )
                ],
            )
        old = self.get(resource, namespace, name)
        if version and version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name, errors.STALE_OBJECT)
        return self._write(resource, namespace, name, old, obj, subresource, options)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        subresource: str | None = None,
        options: Options | None = None,
    ) -> tuple[Obj, bool]:
        """PATCH by Content-Type; returns (object, created) — apply may create."""
        options = options or Options()
        media_type = content_type.split(";")[0].strip().lower()
        accepted = CUSTOM_RESOURCE_PATCH_TYPES + (
            [] if resource.custom else [STRATEGIC_MERGE_PATCH]
        )
        if media_type not in accepted:
            raise errors.unsupported_media_type(media_type or "none", accepted)
        if media_type == APPLY_PATCH:
            return self._apply(resource, namespace, name, body, subresource, options)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise errors.bad_request(f"the patch is not valid JSON: {error}") from error
        # The real server (etcd3's GuaranteedUpdate) retries an unpinned patch for as long as it
        # takes: each conflict means another write landed, so this ends. A bounded retry answered
        # 409 under four concurrent writers, which no client expects for an unpinned patch.
        while True:
            old = self.get(resource, namespace, name)
            try:
                if media_type == JSON_PATCH:
                    patched = patching.json_patch(old, document)
                else:  # merge patch; strategic merge on built-in kinds acts the same for our fields
                    if not isinstance(document, dict):
                        raise errors.bad_request("a merge patch must be a JSON object")
                    patched = patching.merge_patch(old, document)
            except patching.PatchError as error:
                raise errors.unprocessable(
                    resource.group, resource.kind, name, [errors.invalid("patch", None, str(error))]
                ) from error
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            self._check_type(resource, patched)
            self._check_name(patched, name)
            version = (patched.get("metadata") or {}).get("resourceVersion")
            # Only a patch that names a resourceVersion pins it; the merged object always carries one.
            pinned = _pins_resource_version(media_type, document)
            if version and version != old["metadata"]["resourceVersion"]:
                raise errors.conflict(resource.group, resource.plural, name, errors.STALE_OBJECT)
            try:
                return self._write(
                    resource, namespace, name, old, patched, subresource, options
                ), False
            except ApiError as error:
                # Someone wrote in between: re-apply the patch to the newer object, as the real
                # server does for patches that do not pin a resourceVersion.
                if error.reason != "Conflict" or pinned:
                    raise

    def _apply(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: bytes,
        subresource: str | None,
        options: Options,
    ) -> tuple[Obj, bool]:
        """Server-side apply, simplified: create if absent, else merge the applied configuration."""
        if not options.field_manager:
            raise errors.bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set"
            )
        try:
            applied = yaml.safe_load(body)
        except yaml.YAMLError as error:
            raise errors.bad_request(f"error decoding YAML: {error}") from error
        if not isinstance(applied, dict):
            raise errors.bad_request("an apply patch must be an object")
        self._check_type(resource, applied)
        self._check_name(applied, name)
        old = self.find(resource, namespace, name)
        if old is None:
            if subresource:
                raise errors.not_found(resource.group, resource.plural, name)
            return self.create(resource, namespace, applied, options), True
        merged = patching.merge_patch(old, applied)
        return self._write(resource, namespace, name, old, merged, subresource, options), False

    def _write(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        old: Obj,
        new: Obj,
        subresource: str | None,
        options: Options,
    ) -> Obj:
        """Merge server-managed state into ``new``, admit it, bump generation and store it."""
        if subresource == "status":
            status = new.get("status")
            if status is not None and not isinstance(status, dict):
                raise errors.unprocessable(
                    resource.group,
                    resource.kind,
                    name,
                    [errors.invalid("status", status, "must be an object")],
                )
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            new = copy.deepcopy(new)
            new.setdefault("metadata", {})
            if resource.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            metadata = new["metadata"]
            for key in _SERVER_MANAGED:
                if key in old["metadata"]:
                    metadata[key] = old["metadata"][key]
                else:
                    metadata.pop(key, None)
            metadata["namespace"] = old["metadata"].get("namespace")
            if metadata["namespace"] is None:
                metadata.pop("namespace")
            metadata.pop("managedFields", None)
            self._prune_unknown(resource, new, options)
            self._admit(resource, new, old)
            if "generation" in metadata and _spec_part(new) != _spec_part(old):
                metadata["generation"] = int(old["metadata"]["generation"]) + 1
        if new == old:
            return old  # a no-op write stores nothing and emits no event
        if options.dry_run:
            return new
        finished = bool(metadata_of(new).get("deletionTimestamp")) and not metadata_of(new).get(
            "finalizers"
        )
        try:
            if finished:
                return self.store.delete(
                    resource.key,
                    namespace,
                    name,
                    expected_version=old["metadata"]["resourceVersion"],
                )
            return self.store.update(
                resource.key, namespace, name, new, old["metadata"]["resourceVersion"]
            )
        except storage.VersionConflict as error:
            raise errors.conflict(
                resource.group, resource.plural, name, errors.STALE_OBJECT
            ) from error
        except storage.ObjectNotFound as error:
            raise errors.not_found(resource.group, resource.plural, name) from error

    def replace_status(
        self, resource: ResourceType, namespace: str, name: str, status: Obj, expected_version: str
    ) -> Obj:
        """Controller helper: set ``status`` if the object is still at ``expected_version``."""
        old = self.get(resource, namespace, name)
        if old["metadata"]["resourceVersion"] != expected_version:
            raise errors.conflict(resource.group, resource.plural, name, errors.STALE_OBJECT)
        return self._write(resource, namespace, name, old, {"status": status}, "status", Options())

    def delete(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        options: DeleteOptions | None = None,
    ) -> Obj:
        """Delete now, or mark for deletion while finalizers remain; returns the object."""
        options = options or DeleteOptions()
        old = self.get(resource, namespace, name)
        metadata = old["metadata"]
        if options.uid is not None and options.uid != metadata.get("uid"):
            raise errors.conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {options.uid}, UID in object meta: {metadata.get('uid')}",
            )
        if (
            options.resource_version is not None
            and options.resource_version != metadata["resourceVersion"]
        ):
            raise errors.conflict(
                resource.group,
                resource.plural,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{options.resource_version}, ResourceVersion in object meta: {metadata['resourceVersion']}",
            )
        if options.dry_run:
            return old
        if options.propagation == "Orphan":
            self._orphan_dependents(namespace, metadata.get("uid"))
        if resource is NAMESPACES:
            self._empty_namespace(name)
        if metadata.get("finalizers") and resource is not NAMESPACES:
            if metadata.get("deletionTimestamp"):
                return old
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.store.update(
                resource.key, namespace, name, marked, metadata["resourceVersion"]
            )
        try:
            return self.store.delete(resource.key, namespace, name)
        except storage.ObjectNotFound as error:
            raise errors.not_found(resource.group, resource.plural, name) from error

    def delete_dependents(self, namespace: str, owner_uid: str) -> int:
        """Garbage collection: delete every object in ``namespace`` owned by ``owner_uid``."""
        deleted = 0
        for key, name in self.store.keys_in_namespace(namespace):
            obj = self.store.get(key, namespace, name)
            if obj is None or not _owned_by(obj, owner_uid):
                continue
            try:
                self.delete(by_key(key), namespace, name)
                deleted += 1
            except ApiError as error:
                if error.code != 404:
                    raise
        return deleted

    # ------------------------------------------------------------------ helpers

    def _orphan_dependents(self, namespace: str, owner_uid: str | None) -> None:
        for key, name in self.store.keys_in_namespace(namespace):
            obj = self.store.get(key, namespace, name)
            if obj is None or not owner_uid or not _owned_by(obj, owner_uid):
                continue
            kept = [
                ref for ref in obj["metadata"]["ownerReferences"] if ref.get("uid") != owner_uid
            ]
            updated = copy.deepcopy(obj)
            updated["metadata"]["ownerReferences"] = kept
            if not kept:
                del updated["metadata"]["ownerReferences"]
            self.store.update(key, namespace, name, updated, None)

    def _empty_namespace(self, namespace: str) -> None:
        for key, name in self.store.keys_in_namespace(namespace):
            with contextlib.suppress(storage.ObjectNotFound):
                self.store.delete(key, namespace, name)

    def _ensure_namespace(self, name: str) -> None:
        if self.store.get(NAMESPACES.key, "", name) is None:
            self.create(NAMESPACES, "", {"metadata": {"name": name}})

    def _require_namespace(self, namespace: str) -> None:
        if self.store.get(NAMESPACES.key, "", namespace) is not None:
            return
        if not self._auto_create_namespaces:
            raise errors.not_found("", "namespaces", namespace)
        self._ensure_namespace(namespace)

    def _admit(self, resource: ResourceType, obj: Obj, old: Obj | None) -> None:
        found = metadata_errors(resource, obj)
        if not found:
            for plugin in self._admission:
                found += plugin(resource, obj, old)
        if found:
            name = str(metadata_of(obj).get("name") or "")
            raise errors.unprocessable(resource.group, resource.kind, name, found)

    def _decode_body(self, resource: ResourceType, body: Any, options: Options) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {resource.kind}): "
                "the body must be a JSON object"
            )
        obj = copy.deepcopy(body)
        if not resource.custom:
            obj.setdefault("apiVersion", resource.api_version(resource.versions[0]))
            obj.setdefault("kind", resource.kind)
        self._check_type(resource, obj)
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        obj.setdefault("metadata", {})
        self._prune_unknown(resource, obj, options)
        return obj

    def _check_type(self, resource: ResourceType, obj: Obj) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not kind:
            raise errors.bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if not api_version:
            raise errors.bad_request(f"Object 'apiVersion' is missing in '{json.dumps(obj)[:200]}'")
        served = [resource.api_version(v) for v in resource.versions]
        if api_version not in served:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({served[0]})"
            )
        if kind != resource.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )

    @staticmethod
    def _check_namespace(resource: ResourceType, namespace: str, metadata: Obj) -> None:
        if not resource.namespaced:
            metadata.pop("namespace", None)
            return
        given = metadata.get("namespace")
        if given and given != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = namespace

    @staticmethod
    def _check_name(obj: Obj, name: str) -> None:
        given = metadata_of(obj).get("name")
        if given != name:
            raise errors.bad_request(
                f"the name of the object ({given}) does not match the name on the URL ({name})"
            )

    @staticmethod
    def _prune_unknown(resource: ResourceType, obj: Obj, options: Options) -> None:
        """Drop fields the schema does not know; Strict refuses them, Warn also warns."""
        known = _TOP_LEVEL_FIELDS | set(resource.fields)
        unknown = [f'unknown field "{key}"' for key in obj if key not in known]
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            unknown += [
                f'unknown field "metadata.{key}"' for key in metadata if key not in _METADATA_FIELDS
            ]
        if not unknown:
            return
        if options.field_validation == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(unknown))
        if options.field_validation == "Warn":
            options.warnings += unknown
        for key in [k for k in obj if k not in known]:
            del obj[key]
        if isinstance(metadata, dict):
            for key in [k for k in metadata if k not in _METADATA_FIELDS]:
                del metadata[key]


def metadata_of(obj: Obj) -> Obj:
    """``obj.metadata`` or an empty dict."""
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _owned_by(obj: Obj, owner_uid: str) -> bool:
    return any(
        isinstance(ref, dict) and ref.get("uid") == owner_uid
        for ref in metadata_of(obj).get("ownerReferences") or []
    )


def _pins_resource_version(media_type: str, document: Any) -> bool:
    """Whether a merge or JSON patch itself names metadata.resourceVersion (then no retry on conflict)."""
    if media_type == JSON_PATCH:
        return isinstance(document, list) and any(
            isinstance(op, dict) and str(op.get("path", "")).startswith("/metadata/resourceVersion")
            for op in document
        )
    metadata = document.get("metadata") if isinstance(document, dict) else None
    return isinstance(metadata, dict) and metadata.get("resourceVersion") is not None

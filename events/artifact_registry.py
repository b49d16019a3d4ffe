"""Parse Artifact Registry's Pub/Sub notifications (topic `gcr`) in their three shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from events import jsontext
from events.errors import MalformedEvent

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# A repository path: host[:port]/path/segments, lower-case as registries require.
_REPOSITORY = re.compile(r"^[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)+$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class RegistryAction(StrEnum):
    """What happened in the registry."""

    INSERT = "INSERT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class ImageReference:
    """An image as the registry names it: repository plus digest and/or tag."""

    repository: str
    digest: str | None = None
    tag: str | None = None

    @property
    def by_digest(self) -> str:
        """`repo@sha256:...`, the immutable reference hekaton deploys."""
        if self.digest is None:
            raise ValueError(f"{self.repository} has no digest")
        return f"{self.repository}@{self.digest}"

    @property
    def display(self) -> str:
        """`repo:tag@sha256:...` with whatever parts are known, for humans."""
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class RegistryEvent:
    """One Artifact Registry notification."""

    action: RegistryAction
    image: ImageReference


def split_image(reference: str, *, field_name: str = "image") -> ImageReference:
    """Split `repo[:tag][@sha256:hex]` into its parts, validating each."""
    if not isinstance(reference, str) or not reference:
        raise MalformedEvent(f"'{field_name}' must be a non-empty string")
    rest, digest = reference, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise MalformedEvent(
                f"'{field_name}' has an invalid digest {digest!r}: expected sha256:<64 hex>"
            )
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise MalformedEvent(f"'{field_name}' has an invalid tag {tag!r}")
    if not _REPOSITORY.match(rest):
        raise MalformedEvent(f"'{field_name}' has an invalid repository {rest!r}")
    return ImageReference(repository=rest, digest=digest, tag=tag)


def parse_notification(data: bytes) -> RegistryEvent:
    """Parse the JSON body `{"action", "digest"?, "tag"?}` of an Artifact Registry notification."""
    body = jsontext.loads(data, "Artifact Registry notification")
    if not isinstance(body, dict):
        raise MalformedEvent("Artifact Registry notification is not a JSON object")
    action_text = body.get("action")
    try:
        action = RegistryAction(str(action_text))
    except ValueError as exc:
        raise MalformedEvent(
            f"Artifact Registry notification has unknown action {action_text!r}: expected INSERT or DELETE"
        ) from exc
    digest_ref = body.get("digest")
    tag_ref = body.get("tag")
    if digest_ref is None and tag_ref is None:
        raise MalformedEvent("Artifact Registry notification has neither 'digest' nor 'tag'")
    by_digest = split_image(digest_ref, field_name="digest") if digest_ref is not None else None
    by_tag = split_image(tag_ref, field_name="tag") if tag_ref is not None else None
    if by_digest is not None and by_digest.digest is None:
        raise MalformedEvent("'digest' must name an image by digest (repo@sha256:...)")
    if by_tag is not None and by_tag.tag is None:
        raise MalformedEvent("'tag' must name an image by tag (repo:tag)")
    if by_digest and by_tag and by_digest.repository != by_tag.repository:
        raise MalformedEvent(
            f"'digest' and 'tag' name different repositories: {by_digest.repository} vs {by_tag.repository}"
        )
    repository = (by_digest or by_tag).repository  # type: ignore[union-attr]
    return RegistryEvent(
        action=action,
        image=ImageReference(
            repository=repository,
            digest=by_digest.digest if by_digest else (by_tag.digest if by_tag else None),
            tag=by_tag.tag if by_tag else (by_digest.tag if by_digest else None),
        ),
    )

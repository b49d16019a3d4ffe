"""The local image catalog: which model-server command an image reference runs as.

`examples/catalog.yaml` plays the registry for the local cluster::

    images:
      us-docker.pkg.dev/demo/models/iris:
        v1:
          command: ["{python}", "-m", "examples.iris.server"]
          env: {IRIS_MODEL_VERSION: "v1"}
          digests: ["sha256:..."]   # optional, in addition to the derived one

Every entry is reachable by tag and by digest; the digest of `repo:tag` is
`local.registry.derive_digest(repo, tag)`, the same one `hekaton push` announces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from local.registry import derive_digest

PYTHON_PLACEHOLDER = "{python}"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENTRY_FIELDS = {"command", "env", "digests"}


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the offending entry and field."""


@dataclass(frozen=True)
class CatalogEntry:
    """One published image: `repository:tag`, the command it runs and its environment."""

    repository: str
    tag: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    digests: frozenset[str]

    @property
    def reference(self) -> str:
        """`repo:tag`, as users name the image."""
        return f"{self.repository}:{self.tag}"

    @property
    def digest(self) -> str:
        """The derived digest, the one a registry notification carries."""
        return derive_digest(self.repository, self.tag)

    def argv(self, python: str) -> list[str]:
        """The command line with `{python}` replaced by the interpreter to use."""
        return [part.replace(PYTHON_PLACEHOLDER, python) for part in self.command]


@dataclass(frozen=True)
class ImageName:
    """An image reference split into its parts (tag and digest both optional)."""

    repository: str
    tag: str | None
    digest: str | None


def split_reference(image: str) -> ImageName:
    """Split `repo[:tag][@sha256:hex]`; the tag's colon is the one after the last slash."""
    rest, _, digest = image.partition("@")
    tag = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
    return ImageName(repository=rest, tag=tag or None, digest=digest or None)


class ImageCatalog:
    """Resolves image references to catalog entries, by tag or by digest, like a registry."""

    def __init__(self, entries: list[CatalogEntry], *, origin: str = "image catalog") -> None:
        self.origin = origin
        self._by_tag: dict[tuple[str, str], CatalogEntry] = {}
        self._by_digest: dict[tuple[str, str], CatalogEntry] = {}
        for entry in entries:
            self._by_tag[(entry.repository, entry.tag)] = entry
            for digest in entry.digests:
                owner = self._by_digest.setdefault((entry.repository, digest), entry)
                if owner is not entry:
                    raise CatalogError(
                        f"images.{entry.repository}: digest {digest} is listed for both "
                        f"tags {owner.tag!r} and {entry.tag!r}"
                    )

    @classmethod
    def load(cls, path: Path) -> ImageCatalog:
        """Read a catalog YAML file; raise CatalogError naming the file and the bad field."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"cannot read image catalog {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CatalogError(f"image catalog {path} is not valid YAML: {exc}") from exc
        return cls.from_data(data, origin=str(path))

    @classmethod
    def from_data(cls, data: Any, *, origin: str = "image catalog") -> ImageCatalog:
        """Build a catalog from decoded YAML (`{"images": {repo: {tag: entry}}}`)."""
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise CatalogError(f"{origin}: expected a mapping with an 'images' mapping at the top")
        entries = []
        for repository, tags in data["images"].items():
            if not isinstance(repository, str) or not repository:
                raise CatalogError(f"{origin}: image repository {repository!r} must be a string")
            if not isinstance(tags, dict) or not tags:
                raise CatalogError(f"{origin}: images.{repository} must map tags to entries")
            for tag, raw in tags.items():
                entries.append(_parse_entry(origin, repository, str(tag), raw))
        return cls(entries, origin=origin)

    def resolve(self, image: str) -> CatalogEntry | None:
        """The entry `image` names, or None if unknown.

        A digest wins over a tag, as with a registry pull: `repo:tag@sha256:x` runs whatever
        `sha256:x` is, whatever the tag says.
        """
        name = split_reference(image.strip())
        if name.digest is not None:
            return self._by_digest.get((name.repository, name.digest))
        return self._by_tag.get((name.repository, name.tag or "latest"))

    def entries(self) -> list[CatalogEntry]:
        """Every entry, in file order."""
        return list(self._by_tag.values())


def _parse_entry(origin: str, repository: str, tag: str, raw: Any) -> CatalogEntry:
    where = f"{origin}: images.{repository}.{tag}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where} must be a mapping with 'command' (and optionally 'env')")
    unknown = sorted(set(raw) - _ENTRY_FIELDS)
    if unknown:
        raise CatalogError(
            f"{where} has unknown field(s) {unknown}; allowed: {sorted(_ENTRY_FIELDS)}"
        )
    command = raw.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(part, str) and part for part in command)
    ):
        raise CatalogError(f"{where}.command must be a non-empty list of non-empty strings")
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise CatalogError(f"{where}.env must be a mapping of names to strings")
    for name, value in env.items():
        if not isinstance(value, str):
            raise CatalogError(f"{where}.env.{name} must be a string (quote it in YAML)")
    extra = raw.get("digests") or []
    if not isinstance(extra, list):
        raise CatalogError(f"{where}.digests must be a list of sha256:<64 hex> digests")
    for digest in extra:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise CatalogError(f"{where}.digests: {digest!r} is not sha256:<64 hex>")
    return CatalogEntry(
        repository=repository,
        tag=tag,
        command=tuple(command),
        env=MappingProxyType({str(name): value for name, value in env.items()}),
        digests=frozenset([derive_digest(repository, tag), *extra]),
    )

"""The image catalog: resolution by tag and by digest, and clear errors for bad catalog files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from runtime_fixtures import CATALOG_PATH, IRIS

from local.kube.catalog import CatalogError, ImageCatalog, split_reference
from local.registry import derive_digest

EXTRA_DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def catalog() -> ImageCatalog:
    """The catalog shipped in examples/."""
    return ImageCatalog.load(CATALOG_PATH)


def test_digest_is_sha256_of_repo_colon_tag() -> None:
    expected = hashlib.sha256(b"us-docker.pkg.dev/demo/models/iris:v1").hexdigest()
    assert derive_digest(IRIS, "v1") == f"sha256:{expected}"
    assert derive_digest(IRIS, "v1") != derive_digest(IRIS, "v2")
    with pytest.raises(ValueError, match="repository and a tag"):
        derive_digest(IRIS, "")


def test_shipped_catalog_publishes_iris_v1_to_v6(catalog: ImageCatalog) -> None:
    versions = {
        entry.tag: entry.env.get("IRIS_MODEL_VERSION")
        for entry in catalog.entries()
        if entry.repository == IRIS
    }
    assert versions == {tag: tag for tag in ("v1", "v2", "v3", "v4", "v5", "v6")}
    entry = catalog.resolve(f"{IRIS}:v1")
    assert entry is not None
    assert entry.argv("/usr/bin/python3") == ["/usr/bin/python3", "-m", "examples.iris.server"]


@pytest.mark.parametrize(
    "reference",
    [
        f"{IRIS}:v3",
        f"{IRIS}@{derive_digest(IRIS, 'v3')}",
        f"{IRIS}:v3@{derive_digest(IRIS, 'v3')}",
        # A digest wins over the tag next to it, as with a registry pull.
        f"{IRIS}:v1@{derive_digest(IRIS, 'v3')}",
    ],
)
def test_tags_and_digests_resolve_to_the_same_model(catalog: ImageCatalog, reference: str) -> None:
    entry = catalog.resolve(reference)
    assert entry is not None
    assert (entry.repository, entry.tag) == (IRIS, "v3")


@pytest.mark.parametrize(
    "reference",
    [
        f"{IRIS}:v9",
        f"{IRIS}@sha256:{'0' * 64}",
        f"{IRIS}:v1@{derive_digest(IRIS, 'v9')}",
        "us-docker.pkg.dev/demo/models/other:v1",
        f"{IRIS}",  # means :latest, which is not published
        "",
    ],
)
def test_unknown_images_resolve_to_none(catalog: ImageCatalog, reference: str) -> None:
    assert catalog.resolve(reference) is None


def test_explicit_extra_digests_resolve_too() -> None:
    catalog = ImageCatalog.from_data(
        {"images": {"r.io/a/m": {"v1": {"command": ["x"], "digests": [EXTRA_DIGEST]}}}}
    )
    by_extra = catalog.resolve(f"r.io/a/m@{EXTRA_DIGEST}")
    by_derived = catalog.resolve(f"r.io/a/m@{derive_digest('r.io/a/m', 'v1')}")
    assert by_extra is not None and by_extra is by_derived


def test_a_registry_port_is_not_mistaken_for_a_tag() -> None:
    name = split_reference("localhost:5000/models/iris")
    assert (name.repository, name.tag, name.digest) == ("localhost:5000/models/iris", None, None)
    name = split_reference("localhost:5000/models/iris:v2@" + EXTRA_DIGEST)
    assert (name.repository, name.tag, name.digest) == (
        "localhost:5000/models/iris",
        "v2",
        EXTRA_DIGEST,
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "'images' mapping"),
        ({"images": {"r.io/m": {"v1": {"env": {}}}}}, r"images\.r\.io/m\.v1\.command"),
        ({"images": {"r.io/m": {"v1": {"command": []}}}}, r"v1\.command must be a non-empty"),
        ({"images": {"r.io/m": {"v1": {"command": ["x"], "env": {"N": 4}}}}}, r"env\.N must be"),
        ({"images": {"r.io/m": {"v1": {"command": ["x"], "comand": 1}}}}, "unknown field.*comand"),
        ({"images": {"r.io/m": {"v1": {"command": ["x"], "digests": ["md5:1"]}}}}, "md5:1"),
        (
            {
                "images": {
                    "r.io/m": {
                        "v1": {"command": ["x"], "digests": [EXTRA_DIGEST]},
                        "v2": {"command": ["x"], "digests": [EXTRA_DIGEST]},
                    }
                }
            },
            "listed for both tags 'v1' and 'v2'",
        ),
    ],
)
def test_bad_catalogs_are_rejected_naming_the_field(data: Any, problem: str) -> None:
    with pytest.raises(CatalogError, match=problem):
        ImageCatalog.from_data(data)


def test_load_names_the_file_when_it_is_missing_or_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read image catalog"):
        ImageCatalog.load(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("images: [unclosed", encoding="utf-8")
    with pytest.raises(CatalogError, match=f"{broken} is not valid YAML"):
        ImageCatalog.load(broken)

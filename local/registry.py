"""The local image registry's one rule: how an image's digest is derived from its name."""

from __future__ import annotations

import hashlib


def derive_digest(repo: str, tag: str) -> str:
    """The digest the local registry gives `repo:tag`: "sha256:" + hex sha256 of "<repo>:<tag>"."""
    if not repo or not tag:
        raise ValueError(f"an image needs a repository and a tag, got {repo!r} and {tag!r}")
    return "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()

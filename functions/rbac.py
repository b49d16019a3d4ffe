"""The Kubernetes RBAC objects of one model namespace: hekaton's Role and its binding to our identities."""

from __future__ import annotations

from typing import Any

from functions.manifest import RBAC_ROLE, RBAC_RULES, SERVICE_ACCOUNTS

RBAC_API = "rbac.authorization.k8s.io"


def kubernetes_members(project: str) -> list[str]:
    """The Google service accounts that drive Knative and Istio (GKE sees them as users by email)."""
    return [sa.email(project) for sa in SERVICE_ACCOUNTS if sa.kubernetes]


def rbac_objects(namespace: str, members: list[str]) -> list[dict[str, Any]]:
    """The Role (exactly hekaton's kinds and verbs) and the RoleBinding granting it to `members`."""
    metadata = {
        "name": RBAC_ROLE,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "hekaton"},
    }
    role = {
        "apiVersion": f"{RBAC_API}/v1",
        "kind": "Role",
        "metadata": metadata,
        "rules": [
            {
                "apiGroups": [rule.api_group],
                "resources": list(rule.resources),
                "verbs": list(rule.verbs),
            }
            for rule in RBAC_RULES
        ],
    }
    binding = {
        "apiVersion": f"{RBAC_API}/v1",
        "kind": "RoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": RBAC_ROLE},
        "subjects": [{"apiGroup": RBAC_API, "kind": "User", "name": member} for member in members],
    }
    return [role, binding]

"""The namespace RBAC deploy.sh applies, enforced by the local API for the functions' identity.

The Role and RoleBinding come from the manifest (functions/rbac.py) and are applied with the real
kubectl; then hekaton's own clients (shared/knative.py, shared/istio.py) run a whole rollout's
calls under the steps account's bearer identity, and everything else is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from functions import manifest
from functions.rbac import kubernetes_members, rbac_objects
from local.kube.cluster import LocalCluster
from shared.errors import PermanentError
from shared.istio import IstioPolicies
from shared.knative import KnativeServing
from shared.serving import RevisionTemplate, TrafficTarget
from tests.local.kube_helpers import KUBECTL_MISSING, FakeRouter, FakeRuntime, Kubectl, wait_until
from tests.local.test_istio_policies import AUTH

PROJECT = "demo-proj"
NAMESPACE = "models"
STEPS = manifest.account(manifest.STEPS).email(PROJECT)
TOKENS = {"steps-token": STEPS, "stranger-token": "someone@example.com"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A cluster whose API knows two bearer identities, with hekaton's RBAC in `models` only."""
    local = LocalCluster(runtime=FakeRuntime(), router=FakeRouter(), tokens=TOKENS).start()
    admin = k8s.CustomObjectsApi(_client(local, None))
    for body in rbac_objects(NAMESPACE, kubernetes_members(PROJECT)):
        plural = "roles" if body["kind"] == "Role" else "rolebindings"
        admin.create_namespaced_custom_object(
            "rbac.authorization.k8s.io", "v1", NAMESPACE, plural, body
        )
    yield local
    local.stop()


def _client(cluster: LocalCluster, token: str | None) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = cluster.kube_server
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return k8s.ApiClient(configuration)


def _can(api: k8s.ApiClient, verb: str, group: str, resource: str, namespace: str) -> bool:
    review = k8s.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    "namespace": namespace,
                }
            }
        }
    )
    return bool(review.status.allowed)


def test_the_steps_identity_runs_every_call_of_a_rollout(cluster: LocalCluster) -> None:
    api = _client(cluster, "steps-token")
    serving, policies = KnativeServing(api), IstioPolicies(api)
    first = RevisionTemplate(name="iris-aaaa", image="example.test/iris@sha256:" + "a" * 64)
    serving.deploy(NAMESPACE, "iris", first, [TrafficTarget("iris-aaaa", 100)])
    policies.apply(NAMESPACE, "iris", AUTH)
    policies.apply(NAMESPACE, "iris", AUTH.model_copy(update={"principals": ["*"]}))  # update
    wait_until(lambda: serving.revision_health(NAMESPACE, "iris-aaaa").ready, what="ready")
    second = RevisionTemplate(name="iris-bbbb", image="example.test/iris@sha256:" + "b" * 64)
    staged = [TrafficTarget("iris-aaaa", 100), TrafficTarget("iris-bbbb", 0, "candidate")]
    serving.deploy(NAMESPACE, "iris", second, staged)
    wait_until(lambda: serving.revision_exists(NAMESPACE, "iris-bbbb"), what="the candidate")
    serving.set_traffic(NAMESPACE, "iris", [TrafficTarget("iris-bbbb", 100)])
    view = serving.get_service(NAMESPACE, "iris")
    assert view is not None and view.name == "iris"
    assert serving.delete_service(NAMESPACE, "iris")  # lists and deletes its policies too
    assert serving.get_service(NAMESPACE, "iris") is None


def test_the_role_grants_exactly_the_manifest_rules(cluster: LocalCluster) -> None:
    api = _client(cluster, "steps-token")
    verbs = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
    for rule in manifest.RBAC_RULES:
        for resource in rule.resources:
            for verb in verbs:
                allowed = _can(api, verb, rule.api_group, resource, NAMESPACE)
                assert allowed == (verb in rule.verbs), (verb, resource)
    for group, resource in [
        ("", "secrets"),
        ("", "pods"),
        ("apps", "deployments"),
        ("serving.knative.dev", "routes"),
        ("networking.istio.io", "virtualservices"),
        ("rbac.authorization.k8s.io", "roles"),
    ]:
        assert not _can(api, "get", group, resource, NAMESPACE), resource
    assert not _can(api, "get", "serving.knative.dev", "services", "elsewhere")


def test_everything_else_is_refused_for_what_it_is(cluster: LocalCluster) -> None:
    steps = _client(cluster, "steps-token")
    refusals = [
        lambda: k8s.CoreV1Api(steps).list_namespaced_secret(NAMESPACE),
        lambda: k8s.CoreV1Api(steps).create_namespace({"metadata": {"name": "mine"}}),
        lambda: k8s.AppsV1Api(steps).list_namespaced_deployment(NAMESPACE),
        lambda: k8s.CustomObjectsApi(steps).list_namespaced_custom_object(
            "serving.knative.dev", "v1", NAMESPACE, "services"
        ),
        lambda: k8s.CustomObjectsApi(steps).get_namespaced_custom_object(
            "serving.knative.dev", "v1", "elsewhere", "services", "iris"
        ),
    ]
    for call in refusals:
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
        assert STEPS in (refused.value.body or "")
    stranger = KnativeServing(_client(cluster, "stranger-token"))
    with pytest.raises(PermanentError, match="403"):
        stranger.get_service(NAMESPACE, "iris")
    with pytest.raises(ApiException) as unknown:
        k8s.CoreV1Api(_client(cluster, "forged")).list_namespace()
    assert unknown.value.status == 401


def test_kubectl_applies_the_rbac_and_auth_can_i_agrees(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip(KUBECTL_MISSING)
    kubectl = Kubectl(binary, cluster.kube_server, tmp_path / "cache")
    manifest_file = tmp_path / "rbac.yaml"
    manifest_file.write_text(
        yaml.safe_dump_all(rbac_objects("team-b", kubernetes_members(PROJECT)))
    )
    assert kubectl("apply", "-f", str(manifest_file)).stdout.count(" created") == 2
    assert kubectl("apply", "-f", str(manifest_file)).stdout.count(" unchanged") == 2
    # kubectl sends no bearer token over plain HTTP: ask as the identity (impersonation) instead.
    can = "auth", "can-i"
    as_steps = ("--as", STEPS, "-n", "team-b")
    assert kubectl(*can, "patch", "services.serving.knative.dev", *as_steps).stdout.strip() == "yes"
    assert kubectl(*can, "delete", "authorizationpolicies", *as_steps).stdout.strip() == "yes"
    for verb, kind in [("get", "secrets"), ("list", "services.serving.knative.dev")]:
        denied = kubectl(*can, verb, kind, *as_steps, check=False)
        assert denied.returncode == 1 and denied.stdout.strip() == "no", (verb, kind)
    elsewhere = kubectl(*can, "get", "services.serving.knative.dev", "--as", STEPS, check=False)
    assert elsewhere.stdout.strip() == "no"  # the default namespace has no binding


def test_the_rollout_test_covers_every_provider_method() -> None:
    """A new Kubernetes call hekaton makes needs a line above (and maybe a rule in the manifest)."""
    from shared.policies import PoliciesProvider
    from shared.serving import ServingProvider

    def methods(protocol: type) -> set[str]:
        return {name for name in vars(protocol) if not name.startswith("_")}

    covered = {
        "deploy",
        "set_traffic",
        "revision_health",
        "revision_exists",
        "get_service",
        "delete_service",
    }
    assert methods(ServingProvider) == covered
    assert methods(PoliciesProvider) == {"apply"}

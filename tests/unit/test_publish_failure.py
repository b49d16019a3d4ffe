"""A failed publish says what failed and what to check, by the kind of refusal."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as google_errors

from shared.publisher import publish_failure


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (google_errors.PermissionDenied("no"), "needs roles/pubsub.publisher on hekaton-deploy"),
        (google_errors.Forbidden("no"), "needs roles/pubsub.publisher on hekaton-deploy"),
        (google_errors.NotFound("no"), "the topic does not exist (`./deploy.sh gcp` creates it)"),
        (google_errors.ServiceUnavailable("down"), "check that Pub/Sub is reachable"),
        (TimeoutError("slow"), "check that Pub/Sub is reachable"),
    ],
)
def test_a_failed_publish_names_the_topic_the_project_and_what_to_check(
    error: BaseException, says: str
) -> None:
    text = publish_failure("p-1", "hekaton-deploy", error)
    assert text.startswith("publish to topic hekaton-deploy of project p-1 failed (")
    assert says in text

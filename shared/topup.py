"""Top-up traffic: when real users send too little, send the spec's own requests to the candidate.

The requests go to the candidate's tag URL through the ingress, so the mesh counts them for the
candidate revision like any other request and the judge gets evidence it can use. They are the
service's golden-set requests when it has them (user-like by construction), else its smoke requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.validation import target


@dataclass(frozen=True)
class TopUpRequest:
    """One request to replay: method, path and JSON body."""

    method: str
    path: str
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopUpReport:
    """What a top-up sent: how many, and how many got no answer at all."""

    sent: int
    unanswered: int
    statuses: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the rollout's analysis state."""
        return {"sent": self.sent, "unanswered": self.unanswered, "statuses": self.statuses}


def send_top_up(
    client: httpx.Client,
    url: str,
    requests: list[TopUpRequest],
    count: int,
    *,
    ingress_url: str | None,
    timeout: float,
    offset: int = 0,
    extra_headers: Mapping[str, str] | None = None,
) -> TopUpReport:
    """Send `count` requests (cycling through `requests` from `offset`) to the revision at `url`."""
    if not requests or count <= 0:
        return TopUpReport(0, 0, {})
    connect_to, host_header = target(url, ingress_url)
    host_header = {**host_header, **(extra_headers or {})}  # e.g. hekaton's token
    statuses: dict[str, int] = {}
    unanswered = 0
    for index in range(count):
        request = requests[(offset + index) % len(requests)]
        try:
            response = client.request(
                request.method,
                connect_to + request.path,
                json=request.json_body,
                headers={**request.headers, **host_header},
                timeout=timeout,
            )
        except httpx.HTTPError:
            unanswered += 1
            continue
        key = str(response.status_code)
        statuses[key] = statuses.get(key, 0) + 1
    return TopUpReport(count, unanswered, statuses)

"""The service spec's optional manual gate before promotion (`approval:`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ApprovalSpec(BaseModel):
    """`approval: {required: true, deadline_seconds: 3600}`: promotion waits for `hekaton approve`."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    # At the deadline an unapproved rollout is rolled back (recorded as approval_deadline_exceeded).
    deadline_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)

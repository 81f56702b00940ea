"""What Git cannot say: whether an attempt not yet in production waits for approval, is being
delivered, or failed. The delivery builds know; `status --project --region` asks Cloud Build.

For each environment's delivery trigger of an app (by name, at the region's endpoint) the
newest builds are listed (`trigger_id="..."` filter) and the one that ran the newest attempt
(its `COMMIT_SHA`) says where that attempt is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gitops.cloudbuild_client import regional_client
from gitops.errors import OperationFailed, one_line

AWAITING_APPROVAL = "awaiting approval"
DELIVERING = "delivering"
FAILED = "failed"
REJECTED = "approval rejected"
BUILDS_PER_TRIGGER = 20


class BuildLookup(Protocol):
    def attempt_state(self, project: str, region: str, trigger: str,
                      commit: str) -> str | None:
        """Where the delivery of commit by trigger is, or None when no build ran it."""


def state_of(build: Any) -> str | None:
    """A build's state in the words status uses (None: succeeded, or nothing to say)."""
    from google.cloud.devtools import cloudbuild_v1

    status = cloudbuild_v1.Build.Status
    approval = cloudbuild_v1.BuildApproval.State
    if build.approval.state == approval.PENDING:
        return AWAITING_APPROVAL
    if build.approval.state == approval.REJECTED:
        return REJECTED
    if build.status in (status.PENDING, status.QUEUED, status.WORKING):
        return DELIVERING
    if build.status in (status.FAILURE, status.INTERNAL_ERROR, status.TIMEOUT,
                        status.CANCELLED, status.EXPIRED):
        return FAILED
    return None


@dataclass
class CloudBuildStatus:
    """The only place status calls Cloud Build: a regional client per call."""

    client_for_region: Callable[[str], Any] = regional_client

    def attempt_state(self, project: str, region: str, trigger: str,
                      commit: str) -> str | None:
        from google.cloud.devtools import cloudbuild_v1

        client = self.client_for_region(region)
        name = f"projects/{project}/locations/{region}/triggers/{trigger}"
        try:
            found = client.get_build_trigger(request=cloudbuild_v1.GetBuildTriggerRequest(
                name=name, project_id=project, trigger_id=trigger))
            builds = client.list_builds(request=cloudbuild_v1.ListBuildsRequest(
                project_id=project, parent=f"projects/{project}/locations/{region}",
                filter=f'trigger_id="{found.id}"', page_size=BUILDS_PER_TRIGGER))
            for build in builds:  # newest first
                if build.substitutions.get("COMMIT_SHA") == commit:
                    return state_of(build)
        except Exception as exc:  # any client, auth or API error: one line, exit 1
            raise OperationFailed(f"cannot list the builds of {name}: "
                                  f"{one_line(str(exc))}") from None
        return None

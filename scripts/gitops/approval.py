"""Who approved this delivery build: read from the build's own Build resource.

An environment with an approval gate holds each delivery build until an approver approves it;
Cloud Build then records the decision on the build (`approval.result.approver_account`). The
delivery build reads its own Build through the Cloud Build API (regional endpoint, like
`gitops.rollback`) and the production commit names the approver (`Approved-By:`).

A gated build that carries no approval (it was not held, or not approved) is refused before
anything is applied: the gate would otherwise leave no record.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from gitops.checks import check_trailer_value
from gitops.cloudbuild_client import regional_client
from gitops.errors import BadInput, OperationFailed, one_line

RECORD_APPROVAL_ENV = "GITOPS_RECORD_APPROVAL"  # "true" in a gated environment's builds


class ApprovalReader(Protocol):
    def approver(self, project: str, region: str, build_id: str) -> str:
        """The account that approved the build; OperationFailed when there is none."""


def build_name(project: str, region: str, build_id: str) -> str:
    return f"projects/{project}/locations/{region}/builds/{build_id}"


def approval_required() -> bool:
    """Whether this build runs in a gated environment (the trigger says so)."""
    value = os.environ.get(RECORD_APPROVAL_ENV, "")
    if value not in ("", "true", "false"):
        raise BadInput(f"{RECORD_APPROVAL_ENV} must be true or false, not {value!r}")
    return value == "true"


class CloudBuildApprovals:
    """The only place that reads a Build: a regional client per call."""

    def __init__(self, client_for_region: Callable[[str], Any] = regional_client) -> None:
        self.client_for_region = client_for_region

    def approver(self, project: str, region: str, build_id: str) -> str:
        from google.cloud.devtools import cloudbuild_v1

        name = build_name(project, region, build_id)
        try:
            build = self.client_for_region(region).get_build(
                request=cloudbuild_v1.GetBuildRequest(name=name, project_id=project,
                                                      id=build_id))
        except Exception as exc:  # any client, auth or API error: one line, exit 1
            raise OperationFailed(f"cannot read build {name}: {one_line(str(exc))}") from None
        approved = cloudbuild_v1.BuildApproval.State.APPROVED
        account = str(build.approval.result.approver_account or "")
        if build.approval.state != approved or not account:
            raise OperationFailed(f"build {build_id} runs in a gated environment but carries "
                                  f"no approval (state {build.approval.state.name}); approve "
                                  f"it with gcloud beta builds approve {name}")
        return check_trailer_value("approver", account)

"""What `pulumi destroy` may delete: the program marks the resources that hold history."""

from __future__ import annotations

from typing import Any

import pytest

from pulumi_harness import RecordingMonitor, base_config, run_program

CSR_REPO = "gcp:sourcerepo/repository:Repository"
CSR = base_config(**{"gitops:sourceProvider": "csr", "gitops:githubAppInstallationId": None,
                     "gitops:githubTokenSecret": None, "gitops:githubOwner": None})


@pytest.fixture
def protected(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], bool]:
    """(type, name) -> the `protect` option each registration carried."""
    seen: dict[tuple[str, str], bool] = {}
    register = RecordingMonitor.RegisterResource

    def recording(self: RecordingMonitor, request: Any) -> Any:
        seen[(request.type, request.name)] = bool(request.protect)
        return register(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", recording)
    return seen


class TestDestroyKeepsHistory:
    """With Cloud Source Repositories the program creates the app, env and infra repositories:
    they hold the code and the delivery history, so they are protected and `make destroy`
    (`pulumi destroy --exclude-protected`) keeps them; nothing else is protected."""

    def test_csr_repositories_are_protected(self, protected: dict[tuple[str, str], bool]
                                            ) -> None:
        graph = run_program(CSR)
        repos = {r.name for r in graph.of_type(CSR_REPO)}
        assert repos == {"repo-env", "repo-infra", "repo-app-hello"}
        assert {name for (typ, name), on in protected.items() if on} == repos
        assert all(protected[(CSR_REPO, name)] for name in repos)

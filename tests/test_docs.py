"""The docs say what the code does: generated references match, every key is documented."""

from __future__ import annotations

import re
from dataclasses import fields

from components.config import (
    SETTINGS,
    StackConfig,
    config_reference_markdown,
    pulumi_yaml_reference,
)
from conftest import ROOT


def snake(key: str) -> str:
    name = key.split(":", 1)[1]
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class TestConfigReference:
    """docs/config.md and Pulumi.yaml are regenerated from the config model and compared."""

    def test_docs_config_matches_the_model(self) -> None:
        assert (ROOT / "docs" / "config.md").read_text() == config_reference_markdown()

    def test_pulumi_yaml_documents_every_key(self) -> None:
        assert pulumi_yaml_reference() in (ROOT / "Pulumi.yaml").read_text()

    def test_every_model_field_is_documented(self) -> None:
        documented = {snake(s.key) for s in SETTINGS}
        assert {f.name for f in fields(StackConfig)} == documented


class TestDocuments:
    """The README and docs/ hold what a newcomer needs."""

    def test_readme_links_and_diagram(self) -> None:
        readme = (ROOT / "README.md").read_text()
        assert "```mermaid" in readme
        for page in ("quickstart", "architecture", "config", "operations", "costs"):
            assert f"docs/{page}.md" in readme
            assert (ROOT / "docs" / f"{page}.md").is_file()

    def test_quickstart_covers_both_providers(self) -> None:
        text = (ROOT / "docs" / "quickstart.md").read_text()
        assert "## GitHub" in text and "## Cloud Source Repositories" in text
        for line in ("pulumi config set gcp:project", "gitops:githubAppInstallationId",
                     "gitops:sourceProvider csr", "gke-gcloud-auth-plugin", "make up"):
            assert line in text

    def test_each_real_cloud_constraint_has_a_troubleshooting_entry(self) -> None:
        text = (ROOT / "docs" / "operations.md").read_text()
        for topic in ("Logging with a user-specified service account",
                      "New triggers must name a service account", "actAs",
                      "2nd-gen repositories need regional triggers",
                      "`include_build_logs` is valid on GitHub triggers only",
                      "service agent must read the token secret",
                      "deletion protection", "APIs", "gke-gcloud-auth-plugin"):
            assert topic in text, topic

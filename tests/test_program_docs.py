"""The program's operations entries: each risk fixed for the first `up` is documented."""

from __future__ import annotations

from pulumi_harness import ROOT


class TestFirstUpEntries:
    """Each fixed risk has its symptom, cause and fix in docs/operations.md."""

    def test_entries(self) -> None:
        text = (ROOT / "docs" / "operations.md").read_text()
        section = text.split("## First `up`, repeated runs and access", 1)[1]
        for topic in ("cannot pull the steps image", "Env branches fail", "act-as grants",
                      "Tagged images are never deleted", "right after `up` created a grant",
                      "`default` network", "Config that Google rejects", "adds an app",
                      "PULUMI_K8S_DELETE_UNREACHABLE"):
            assert topic in section, topic

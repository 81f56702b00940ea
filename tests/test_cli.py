"""The command-line contract every step script shares."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

from conftest import SCRIPTS, assert_bad_input, run_script, script_module

SCRIPT_NAMES = sorted(p.stem for p in SCRIPTS.glob("*.py"))


def help_text(name: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exited:
        script_module(name).main(["--help"])
    assert exited.value.code == 0
    return " ".join(out.getvalue().split())


class TestContract:
    """A usage error is one `error:` line and exit 2, from a fresh process, for every script."""

    @pytest.mark.parametrize("name", SCRIPT_NAMES)
    def test_usage_error(self, name: str) -> None:
        assert_bad_input(run_script(name, "--no-such-option"), f"error: {name}.py: ")


class TestSharedOptions:
    """An option several commands take means the same in each: --from and --to are branches."""

    def test_branch_options(self) -> None:
        takes = {name: help_text(name) for name in SCRIPT_NAMES}
        with_from = [name for name, text in takes.items() if "--from" in text]
        with_to = [name for name, text in takes.items() if "--to " in text]
        assert with_from == with_to == ["deploy", "history", "promote", "reconcile",
                                          "rollback", "status"]
        for name in with_from:
            assert "--from BRANCH branch of attempts (default: candidate)" in takes[name]
            assert "--to BRANCH branch of successes (default: production)" in takes[name]
        assert "--target REF" in takes["rollback"]
        for name in ("publish", "freeze", "unfreeze"):
            assert "--branch BRANCH branch this command writes (default: candidate)" in \
                takes[name]

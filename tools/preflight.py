"""Check everything `make up` needs before anything is installed or created.

    python tools/preflight.py [--for up|preview|destroy]

Prints one line per prerequisite (`ok` or `FAIL` with the exact command that fixes it) and
exits 0 when all are met, 2 when any is missing. It changes nothing: it only reads (versions,
the active gcloud account, the selected stack, the stack config, and for GitHub whether the
repositories answer).

Design decisions:
- Standard library only, so `make up` runs it before creating `.venv` and installing the
  requirements: a missing login costs seconds, not a pip install.
- Every check runs even after one fails, so one run lists everything to fix. Checks that depend
  on a missing tool say they were skipped and why.
- The stack config is judged in one message: every missing required key and every value copied
  from an example (`my-gitops-project`, `12345678`, ...) at once. Which keys are required comes
  from the config model (`components/config.py`), and the values it would reject are reported
  with its own message.
- The minimum Pulumi CLI is the `pulumi` SDK version pinned in requirements.txt: the engine and
  the SDKs are released together, and an SDK may use engine features an older CLI lacks.
- Credentials never reach the output: the ADC token is captured and discarded, and the git
  token (GITOPS_GIT_TOKEN) reaches git as an HTTP header through the environment.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shell import MISSING, Result, run

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
PULUMI_INSTALL = "curl -fsSL https://get.pulumi.com | sh  (or see https://www.pulumi.com/docs/install/)"
GCLOUD_INSTALL = "install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
TOKEN_ENV = "GITOPS_GIT_TOKEN"
TOKEN_USER_ENV = "GITOPS_GIT_USERNAME"

# Values that appear as examples in Pulumi.dev.yaml, README.md, docs/ and the config model's own
# messages (and every value the preview build's stack-file check refuses, which a test keeps
# included). Copied verbatim they point at someone else's project or installation: a config
# value holding one of them as a word (split at / : , and spaces) is refused.
EXAMPLE_VALUES = frozenset({
    "my-gitops-project", "my-project-id", "my-project", "MY_PROJECT", "PROJECT", "$PROJECT",
    "REGION", "12345678", "1234567", "my-org", "OWNER", "$OWNER", "you@example.com",
    "YOU@EXAMPLE.COM",
})
WORD = re.compile(r"[^/:,\s]+")
# What to put in `pulumi config set KEY ...` when a required key is missing.
FIX_VALUE: dict[str, str] = {
    "gcp:project": "<your project id>",
    "gcp:region": "europe-west1",
    "gitops:githubAppInstallationId": "<installation id: the number at the end of "
                                      "https://github.com/settings/installations/...>",
    "gitops:githubTokenSecret": "github-token",
    "gitops:githubOwner": "<GitHub organisation or user owning the repositories>",
    "gitops:pulumiTokenSecret": "pulumi-access-token",
    "gitops:deployer": "user:<your email>",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the exact thing to do; several lines allowed
    skipped: bool = False  # not run because a check it needs failed


@dataclass
class Findings:
    """What the checks learned, for the checks that depend on earlier ones."""

    checks: list[Check] = field(default_factory=list)
    pulumi: bool = False
    gcloud: bool = False
    logged_in: bool = False
    account: str = ""  # the active gcloud account
    stack: str | None = None
    backend_url: str | None = None
    config: dict[str, str] | None = None
    secret_keys: frozenset[str] = frozenset()
    stack_config: Any = None  # components.config.StackConfig once the config is valid

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(name, ok, detail, fix))
        return ok

    def skip(self, name: str, because: str) -> None:
        self.checks.append(Check(name, False, f"not checked yet: {because}", skipped=True))


def version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else None


def minimum_pulumi() -> tuple[int, ...]:
    """The pulumi SDK version pinned in requirements.txt."""
    pin = re.search(r"^pulumi==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    found = version_tuple(pin.group(1)) if pin else None
    if found is None:
        raise SystemExit("error: requirements.txt pins no pulumi==X.Y.Z; cannot tell the "
                         "minimum Pulumi CLI")
    return found


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def pulumi(*args: str, timeout: float = 60) -> Result:
    return run(["pulumi", *args], cwd=str(ROOT), timeout=timeout,
               env={"PULUMI_SKIP_UPDATE_CHECK": "true"})


def check_python(found: Findings) -> None:
    version = sys.version_info[:3]
    found.add("Python", version >= MIN_PYTHON, f"Python {dotted(version)}",
              f"install Python {dotted(MIN_PYTHON)}+ and run `make up PYTHON=python3.11`")


def check_pulumi_cli(found: Findings) -> None:
    need = minimum_pulumi()
    result = pulumi("version")
    if result.code == MISSING:
        found.add("Pulumi CLI", False, "`pulumi` is not on PATH", PULUMI_INSTALL)
        return
    have = version_tuple(result.stdout)
    if not result.ok or have is None:
        found.add("Pulumi CLI", False, f"`pulumi version` failed: {result.first_error_line()}",
                  PULUMI_INSTALL)
        return
    found.pulumi = found.add(
        "Pulumi CLI", have >= need, f"Pulumi CLI {dotted(have)} (need {dotted(need)} or newer, "
        "the SDK version in requirements.txt)",
        f"upgrade: {PULUMI_INSTALL}")


def check_gcloud(found: Findings) -> None:
    accounts = run(["gcloud", "auth", "list", "--filter=status:ACTIVE",
                    "--format=value(account)"], timeout=60)
    if accounts.code == MISSING:
        found.add("gcloud login", False, "`gcloud` is not on PATH", GCLOUD_INSTALL)
        found.skip("application-default credentials", "gcloud is missing")
        return
    found.gcloud = True
    account = accounts.stdout.strip().splitlines()[0] if accounts.stdout.strip() else ""
    found.account = account
    found.add("gcloud login", accounts.ok and bool(account),
              f"active account {account}" if account else "no active gcloud account",
              "gcloud auth login")
    # Pulumi's Google provider and the state backend use ADC, not the gcloud login. The token
    # is captured and dropped: it must never be printed.
    token = run(["gcloud", "auth", "application-default", "print-access-token"], timeout=60)
    found.add("application-default credentials", token.ok,
              "present and usable" if token.ok
              else f"not usable: {token.first_error_line()}",
              "gcloud auth application-default login")


def check_auth_plugin(found: Findings) -> None:
    path = shutil.which("gke-gcloud-auth-plugin")
    found.add("gke-gcloud-auth-plugin", path is not None,
              f"on PATH at {path}" if path else "not on PATH (the cluster's kubeconfig runs it)",
              "gcloud components install gke-gcloud-auth-plugin  (or the package "
              "google-cloud-cli-gke-gcloud-auth-plugin), then make sure it is on PATH")


def check_git(found: Findings) -> None:
    path = shutil.which("git")
    found.add("git", path is not None, f"on PATH at {path}" if path else "not on PATH",
              "install git (the env repo's branches are created with it during `make up`)")


def check_backend(found: Findings) -> None:
    if not found.pulumi:
        found.skip("Pulumi state backend", "needs the Pulumi CLI")
        return
    who = pulumi("whoami", "--verbose")
    url = next((line.split(":", 1)[1].strip() for line in who.stdout.splitlines()
                if line.startswith("Backend URL:")), None)
    found.backend_url = url
    found.logged_in = found.add("Pulumi state backend", who.ok,
              f"logged in to {url or 'a backend'}" if who.ok
              else f"not logged in: {who.first_error_line()}",
              "make bootstrap PROJECT=<your project id> REGION=<region>  (creates the state "
              "bucket and KMS key, then logs in), or: pulumi login gs://<bucket>")


def check_stack(found: Findings) -> None:
    if not found.logged_in:
        found.skip("selected stack", "needs a logged-in state backend")
        return
    stack = pulumi("stack", "--show-name")
    name = stack.stdout.strip()
    found.stack = name if stack.ok and name else None
    found.add("selected stack", found.stack is not None,
              f"stack {name}" if found.stack else f"none: {stack.first_error_line()}",
              "pulumi stack select dev  (or create it: make bootstrap PROJECT=... REGION=...)")


def read_config(found: Findings) -> bool:
    listed = pulumi("config", "--json")
    if not listed.ok:
        found.add("stack config", False, f"`pulumi config --json` failed: "
                  f"{listed.first_error_line()}", "pulumi stack select dev")
        return False
    try:
        raw: dict[str, dict[str, Any]] = json.loads(listed.stdout or "{}")
    except json.JSONDecodeError:
        found.add("stack config", False, "`pulumi config --json` printed no JSON",
                  f"upgrade: {PULUMI_INSTALL}")
        return False
    # Secret values come without their value (no --show-secrets): present, not inspected.
    found.secret_keys = frozenset(key for key, entry in raw.items() if entry.get("secret"))
    found.config = {key: str(entry["value"]) for key, entry in raw.items()
                    if entry.get("value") is not None}
    return True


def required_keys(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, why) of every key the config model marks required for this config."""
    from components.config import SETTINGS

    github = values.get("gitops:sourceProvider", "github") == "github"
    pulumi_cloud = values.get("gitops:stateBackend", "").startswith("https://")
    keys = []
    for setting in SETTINGS:
        if setting.default == "(required)":
            keys.append((setting.key, ""))
        elif setting.default == "(required for github)" and github:
            keys.append((setting.key, "gitops:sourceProvider is github"))
        elif setting.default == "(required for Pulumi Cloud)" and pulumi_cloud:
            keys.append((setting.key, "gitops:stateBackend is Pulumi Cloud"))
    return keys


def config_problems(values: Mapping[str, str], secret_keys: frozenset[str] = frozenset()
                    ) -> tuple[list[str], Any]:
    """Every problem of the stack config (one line each), and the parsed model when none."""
    from components.config import SETTINGS, ConfigError, parse_config

    found: dict[str, str] = {}
    for key, why in required_keys(values):
        if key not in values and key not in secret_keys:
            because = f" (needed because {why})" if why else ""
            found[key] = (f"{key} is missing{because}: "
                          f"pulumi config set {key} {FIX_VALUE.get(key, '<value>')}")
    for key, value in values.items():
        if any(word in EXAMPLE_VALUES for word in WORD.findall(value)):
            found[key] = (f"{key} is the example value {value!r}: "
                          f"pulumi config set {key} {FIX_VALUE.get(key, '<your value>')}")
    if found:
        # The order of the docs and Pulumi.yaml; keys the model does not know come last.
        order = [setting.key for setting in SETTINGS]
        rank = {key: order.index(key) if key in order else len(order) for key in found}
        return [found[key] for key in sorted(found, key=lambda key: (rank[key], key))], None
    try:
        return [], parse_config(values)
    except ConfigError as error:
        if any(key in str(error) for key in secret_keys):
            return [], None  # a secret value we cannot read; the program will judge it
        return [str(error)], None


def check_config(found: Findings) -> None:
    if found.stack is None:
        found.skip("stack config", "needs a selected stack")
        return
    if not read_config(found):
        return
    assert found.config is not None
    sys.path.insert(0, str(ROOT))
    problems, model = config_problems(found.config, found.secret_keys)
    found.stack_config = model
    count = f"{len(problems)} value{'s' if len(problems) != 1 else ''} to fix"
    found.add(f"stack config ({found.stack})", not problems,
              "required keys set, no example values" if not problems else count,
              problems[0] if len(problems) == 1 else
              "\n".join(f"- {problem}" for problem in problems))


def check_backend_matches(found: Findings) -> None:
    """The preview build reads state from gitops:stateBackend: it must be where state is."""
    if found.config is None or found.backend_url is None:
        return
    project = found.config.get("gcp:project", "PROJECT")
    configured = found.config.get("gitops:stateBackend", f"gs://{project}-pulumi-state")
    actual = found.backend_url.rstrip("/")
    same = (actual == configured.rstrip("/") if actual.startswith("gs://")
            else actual.startswith("https://") and configured.startswith("https://"))
    found.add("state backend in config", same,
              f"gitops:stateBackend {configured} matches the login" if same
              else f"logged in to {actual}, but gitops:stateBackend is {configured} (the "
                   "preview build would look for state there)",
              f"pulumi config set gitops:stateBackend {actual}" if actual.startswith(("gs://",
                                                                                       "https://"))
              else f"pulumi login {configured}  (a local backend cannot be read by the "
                   "preview build: make bootstrap PROJECT=... REGION=...)")


def git_env() -> dict[str, str]:
    """What git needs to talk to GitHub without prompting, with the token as a header."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    token = os.environ.get(TOKEN_ENV)
    if token:
        user = os.environ.get(TOKEN_USER_ENV, "x-access-token")
        basic = base64.b64encode(f"{user}:{token}".encode()).decode()
        count = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
        env.update({f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
                    f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}",
                    "GIT_CONFIG_COUNT": str(count + 1)})
    return env


def check_deployer(found: Findings) -> None:
    """gitops:deployer gets the actAs grants and, with GitHub, the connection's token that
    creates the env branches: it must be who runs `pulumi up`."""
    cfg = found.stack_config
    if cfg is None or not found.account:
        return
    kind = "serviceAccount" if found.account.endswith(".gserviceaccount.com") else "user"
    you = f"{kind}:{found.account}"
    if cfg.deployer.startswith("group:"):
        found.add("deployer", True, f"{cfg.deployer} (a group: make sure {found.account} is in "
                  "it)")
        return
    found.add("deployer", cfg.deployer == you,
              f"gitops:deployer is {cfg.deployer}, you" if cfg.deployer == you
              else f"gitops:deployer is {cfg.deployer} but gcloud is logged in as "
                   f"{found.account}: the grants `pulumi up` relies on go to the deployer",
              f"pulumi config set gitops:deployer {you}  (or log in as the deployer: "
              "gcloud auth login && gcloud auth application-default login)")


def check_github(found: Findings) -> None:
    """What the GitHub path needs at `pulumi up`: the token secret the connection is created
    with, and the repositories it links (the env repo's branches are then created with the
    connection's own token, so the operator needs no GitHub credential for that)."""
    cfg = found.stack_config
    if cfg is None or not cfg.github:
        return
    secret = cfg.github_token_secret
    if found.gcloud:
        described = run(["gcloud", "secrets", "describe", secret, f"--project={cfg.project}",
                         "--format=value(name)"], timeout=60)
        found.add("GitHub token secret", described.ok,
                  f"secret {secret} exists in {cfg.project}" if described.ok
                  else f"secret {secret} not readable: {described.first_error_line()}",
                  f'printf %s "$GITHUB_TOKEN" | gcloud secrets create {secret} '
                  f"--data-file=- --project={cfg.project}  (token scopes: docs/quickstart.md)")
    helper = run(["git", "config", "--get-urlmatch", "credential.helper",
                  cfg.repo_url(cfg.env_repo)])
    can_read_private = bool(os.environ.get(TOKEN_ENV)) or bool(helper.stdout.strip())
    repos = {"env repo": cfg.env_repo, "infra repo": cfg.infra_repo,
             **{f"app repo ({app.name})": app.repo for app in cfg.apps}}
    for label, repo in repos.items():
        url = cfg.repo_url(repo)
        listed = run(["git", "ls-remote", "--heads", url], env=git_env(), timeout=60)
        create = (f"create https://github.com/{cfg.github_owner}/{repo} (the program links "
                  "repositories, it does not create them; the env repo may be empty) and give "
                  "the Cloud Build GitHub App access to it")
        if not listed.ok and not can_read_private:
            # A private repository answers like a missing one without credentials.
            found.add(f"GitHub {label}", True, f"{cfg.github_owner}/{repo}: not verified (no "
                      f"git credentials for github.com here; set {TOKEN_ENV} to check private "
                      "repositories)", f"note: make sure it exists: {create}")
            continue
        found.add(f"GitHub {label}", listed.ok,
                  f"{cfg.github_owner}/{repo} answers" if listed.ok
                  else f"{cfg.github_owner}/{repo} not reachable: {listed.first_error_line()}",
                  create)
        if label == "infra repo" and listed.ok and not listed.stdout.strip():
            found.checks.append(Check(
                "infra repo content", True, "empty for now",
                "note: push this project (with your Pulumi.<stack>.yaml) to it before the first "
                "pull request: the preview build runs on pull requests"))


def check_signing_keys(found: Findings) -> None:
    """With signed commits on (gitops:signers), each build identity's key secret needs a
    version, which only the operator adds (the program never holds a private key)."""
    cfg = found.stack_config
    if cfg is None or not cfg.signing or not found.gcloud:
        return
    from components.config import signing_secret_id

    for identity in cfg.signing_identities:
        secret = signing_secret_id(identity)
        add = (f"gcloud secrets versions add {secret} --data-file={identity}_signing "
               f"--project={cfg.project}  (docs/supply-chain.md)")
        listed = run(["gcloud", "secrets", "versions", "list", secret, f"--project={cfg.project}",
                      "--filter=state:ENABLED", "--format=value(name)", "--limit=1"], timeout=60)
        name = f"signing key ({identity})"
        if listed.ok and listed.stdout.strip():
            found.add(name, True, f"secret {secret} has an enabled version")
        elif listed.ok:
            found.add(name, False, f"secret {secret} has no enabled version: {identity} builds "
                      "fail at their start until it has one", add)
        elif "NOT_FOUND" in listed.stderr:
            found.checks.append(Check(
                name, True, f"secret {secret} is created by this `make up`",
                f"note: then add the key, or {identity} builds fail at their start: {add}"))
        else:
            found.add(name, False, f"cannot list the versions of {secret}: "
                      f"{listed.first_error_line()}", add)


PLANS: dict[str, list[Callable[[Findings], None]]] = {
    "up": [check_python, check_pulumi_cli, check_gcloud, check_auth_plugin, check_git,
           check_backend, check_stack, check_config, check_backend_matches, check_deployer,
           check_github, check_signing_keys],
    "preview": [check_python, check_pulumi_cli, check_gcloud, check_auth_plugin, check_backend,
                check_stack, check_config, check_backend_matches],
    "destroy": [check_pulumi_cli, check_gcloud, check_auth_plugin, check_backend, check_stack],
}


def preflight(purpose: str) -> Findings:
    found = Findings()
    for check in PLANS[purpose]:
        check(found)
    return found


def report(found: Findings, purpose: str) -> int:
    print(f"Checking what `make {purpose}` needs (nothing is installed or created yet):")
    for check in found.checks:
        mark = "ok  " if check.ok else "SKIP" if check.skipped else "FAIL"
        print(f"  {mark}  {check.name}: {check.detail}")
        lines = check.fix.splitlines()
        if not check.ok and len(lines) == 1:
            print(f"        fix: {lines[0]}")
        elif not check.ok or check.fix.startswith("note:"):
            for line in lines:
                print(f"        {line}")
    failed = [check for check in found.checks if not check.ok and not check.skipped]
    skipped = [check for check in found.checks if check.skipped]
    if failed or skipped:
        later = f" ({len(skipped)} more checked once those pass)" if skipped else ""
        print(f"error: {len(failed)} prerequisite{'s' if len(failed) != 1 else ''} not "
              f"met{later}; nothing was created. Fix them and run `make {purpose}` again.",
              file=sys.stderr)
        return 2
    print(f"All {len(found.checks)} prerequisites met.")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="preflight.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--for", dest="purpose", choices=sorted(PLANS), default="up",
                        help="which make target the checks are for (default: up)")
    args = parser.parse_args(argv)
    return report(preflight(args.purpose), args.purpose)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

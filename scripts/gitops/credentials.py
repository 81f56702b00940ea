"""Git's environment for the commands: identity, locale, limits, and the token for HTTPS remotes.

A plain git URL works as it is. For an HTTPS remote a token may be given in the environment
(GITOPS_GIT_TOKEN), or fetched from a Cloud Build 2nd-gen linked repository
(GITOPS_GIT_TOKEN_REPOSITORY); it reaches git as an HTTP header through GIT_CONFIG_* variables,
so it is never on a command line, in a repository's config or in output.

Design decisions:
- A token fetched from the connection stays in this process's memory, never in `os.environ`,
  so no child process inherits it; git children get GITOPS_GIT_TOKEN emptied (they get the
  header instead), kubectl and gcloud an allowlisted environment (`gitops.processes`).
- Git may use only the https, http, ssh, git and file transports (`GIT_ALLOW_PROTOCOL`), and
  an HTTP transfer slower than 1 kB/s for GITOPS_GIT_TIMEOUT seconds (at most 30) is aborted by
  git itself; every network command also has a hard deadline (`gitops.envrepo`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence

from gitops.errors import OperationFailed, one_line
from gitops.settings import env_seconds
from gitops.signing import KEY_ENV as SIGNING_KEY_ENV

TOKEN_ENV = "GITOPS_GIT_TOKEN"
# projects/*/locations/*/connections/*/repositories/*: asked for a short-lived read/write token
# when no token is given.
TOKEN_REPOSITORY_ENV = "GITOPS_GIT_TOKEN_REPOSITORY"
TOKEN_USER_ENV = "GITOPS_GIT_USERNAME"
# "1": a build that only reads (reconcile) asks for a read-only token.
READ_ONLY_ENV = "GITOPS_GIT_READ_ONLY"
# Seconds one git network command (fetch, ls-remote, push) may take.
GIT_TIMEOUT_ENV = "GITOPS_GIT_TIMEOUT"
DEFAULT_GIT_TIMEOUT = 120.0
MAX_GIT_TIMEOUT = 3600.0
LOW_SPEED_LIMIT = 1000  # bytes per second
MAX_LOW_SPEED_TIME = 30  # seconds
ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
# Variables no git child needs: the token reaches git as a header, the signing key as a file
# named in git's config (gitops.signing).
SECRET_ENV = (TOKEN_ENV, SIGNING_KEY_ENV)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "gitops-bot",
    "GIT_AUTHOR_EMAIL": "gitops-bot@noreply.invalid",
    "GIT_COMMITTER_NAME": "gitops-bot",
    "GIT_COMMITTER_EMAIL": "gitops-bot@noreply.invalid",
}

CONNECTION_TOKENS: dict[str, str] = {}  # linked repository -> token, this process only


def basic_auth(token: str) -> str:
    user = os.environ.get(TOKEN_USER_ENV, "x-access-token")
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def connection_token(repository: str) -> str:
    """A short-lived token from a Cloud Build connection's linked repository: read/write, or
    read-only when GITOPS_GIT_READ_ONLY=1."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # Python-version notices
    from google.cloud.devtools import cloudbuild_v2

    client = cloudbuild_v2.RepositoryManagerClient()
    if os.environ.get(READ_ONLY_ENV) == "1":
        return str(client.fetch_read_token(repository=repository, timeout=60).token)
    return str(client.fetch_read_write_token(repository=repository, timeout=60).token)


def git_token() -> str | None:
    """GITOPS_GIT_TOKEN, or the linked repository's token (fetched once per process)."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    repository = os.environ.get(TOKEN_REPOSITORY_ENV, "")
    if not repository:
        return None
    if repository not in CONNECTION_TOKENS:
        try:
            CONNECTION_TOKENS[repository] = connection_token(repository)
        except Exception as exc:  # any client or auth error: one line, exit 1
            raise OperationFailed(f"cannot get a token for {repository}: "
                                  f"{one_line(str(exc))}") from None
    return CONNECTION_TOKENS[repository]


def git_timeout() -> float:
    """Seconds one git network command may take (GITOPS_GIT_TIMEOUT)."""
    return env_seconds(GIT_TIMEOUT_ENV, DEFAULT_GIT_TIMEOUT, 0.1, MAX_GIT_TIMEOUT)


def git_environment(url: str, extra: Sequence[tuple[str, str]] = (),
                    email: str | None = None) -> dict[str, str]:
    """Identity (email, when given, instead of the default one), C locale (git's output is
    parsed), limits, for HTTPS with a token the header, and the extra config settings (signing)
    as GIT_CONFIG_* variables. Identity variables set in the environment win. Secret variables
    are emptied: git gets the header, not the token's variable, and never the signing key's."""
    identity = dict(GIT_IDENTITY)
    if email:
        identity.update(GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_EMAIL=email)
    env = {key: os.environ.get(key, value) for key, value in identity.items()}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    env["GIT_ALLOW_PROTOCOL"] = ALLOWED_PROTOCOLS
    env.update({key: "" for key in SECRET_ENV if key in os.environ})
    low_speed_time = min(MAX_LOW_SPEED_TIME, max(1, int(git_timeout())))
    settings = [
        # A scratch repository lives for seconds: no background maintenance after a fetch.
        ("maintenance.auto", "false"),
        # A fetch keeps the pack it receives (one file and its index) instead of writing each
        # of up to 100 objects as its own file: about a third less time per shallow fetch.
        ("fetch.unpackLimit", "1"),
        ("http.lowSpeedLimit", str(LOW_SPEED_LIMIT)),
        ("http.lowSpeedTime", str(low_speed_time)),
    ]
    if url.startswith("https://"):
        token = git_token()
        if token:
            settings.append(("http.extraHeader", f"Authorization: Basic {basic_auth(token)}"))
    settings += extra
    count = os.environ.get("GIT_CONFIG_COUNT", "0")
    start = int(count) if count.isascii() and count.isdigit() else 0
    for index, (key, value) in enumerate(settings, start=start):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(start + len(settings))
    return env


def process_environment(environment: dict[str, str]) -> dict[str, str]:
    """This process's environment without its secrets, with git's environment on top."""
    inherited = {key: value for key, value in os.environ.items() if key not in SECRET_ENV}
    return {**inherited, **{k: v for k, v in environment.items() if k not in SECRET_ENV}}


def redact(text: str) -> str:
    """Remove the token, the signing key and any credentials embedded in URLs from a message."""
    for token in filter(None, [os.environ.get(TOKEN_ENV), *CONNECTION_TOKENS.values()]):
        text = text.replace(token, "***")
        text = text.replace(basic_auth(token), "***")
    key = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if key:
        text = text.replace(key, "***")
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def strip_userinfo(url: str | None) -> str | None:
    """url without a `user:password@` part (for output of values recorded before checks)."""
    return None if url is None else re.sub(r"^(\w+://)[^/@\s]+@", r"\1", url)

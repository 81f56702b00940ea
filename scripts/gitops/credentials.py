"""Git's environment for the commands: identity, locale, and the token for HTTPS remotes.

A plain git URL works as it is. For an HTTPS remote a token may be given in the environment
(GITOPS_GIT_TOKEN), or fetched from a Cloud Build 2nd-gen linked repository
(GITOPS_GIT_TOKEN_REPOSITORY); it reaches git as an HTTP header through GIT_CONFIG_* variables,
so it is never on a command line, in a repository's config or in output.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence

from gitops.errors import OperationFailed, one_line

TOKEN_ENV = "GITOPS_GIT_TOKEN"
# projects/*/locations/*/connections/*/repositories/*: asked for a short-lived read/write token
# when no token is given.
TOKEN_REPOSITORY_ENV = "GITOPS_GIT_TOKEN_REPOSITORY"
TOKEN_USER_ENV = "GITOPS_GIT_USERNAME"
# "1": a build that only reads (reconcile) asks for a read-only token.
READ_ONLY_ENV = "GITOPS_GIT_READ_ONLY"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "gitops-bot",
    "GIT_AUTHOR_EMAIL": "gitops-bot@noreply.invalid",
    "GIT_COMMITTER_NAME": "gitops-bot",
    "GIT_COMMITTER_EMAIL": "gitops-bot@noreply.invalid",
}


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
        return str(client.fetch_read_token(repository=repository).token)
    return str(client.fetch_read_write_token(repository=repository).token)


def resolve_token() -> None:
    """Put the connection's token in the environment when a linked repository is named."""
    repository = os.environ.get(TOKEN_REPOSITORY_ENV, "")
    if repository and not os.environ.get(TOKEN_ENV):
        try:
            os.environ[TOKEN_ENV] = connection_token(repository)
        except Exception as exc:  # any client or auth error: one line, exit 1
            raise OperationFailed(f"cannot get a token for {repository}: "
                                  f"{one_line(str(exc))}") from None


def git_environment(url: str, extra: Sequence[tuple[str, str]] = (),
                    email: str | None = None) -> dict[str, str]:
    """Identity (email, when given, instead of the default one), C locale (git's output is
    parsed), for HTTPS with a token the header, and the extra config settings (signing) as
    GIT_CONFIG_* variables. Identity variables set in the environment win."""
    identity = dict(GIT_IDENTITY)
    if email:
        identity.update(GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_EMAIL=email)
    env = {key: os.environ.get(key, value) for key, value in identity.items()}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    # A scratch repository lives for seconds: no background maintenance after a fetch.
    settings = [("maintenance.auto", "false")]
    if url.startswith("https://"):
        resolve_token()
        token = os.environ.get(TOKEN_ENV)
        if token:
            settings.append(("http.extraHeader", f"Authorization: Basic {basic_auth(token)}"))
    settings += extra
    count = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
    for index, (key, value) in enumerate(settings, start=count):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(settings))
    return env


def redact(text: str) -> str:
    """Remove the token and any credentials embedded in URLs from a message."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        text = text.replace(token, "***")
        text = text.replace(basic_auth(token), "***")
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def local_path_url(url: str) -> str:
    """A relative local path made absolute (git runs elsewhere); any other URL as it is."""
    if "://" not in url and os.path.exists(url):
        return os.path.abspath(url)
    return url

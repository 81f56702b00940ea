"""Git's environment for the scripts, and their errors: everything that needs no GitPython.

Kept apart from envrepo.py so publish.py can start its first fetch before GitPython is imported
(see prefetch.py); envrepo re-exports all of it.
"""

from __future__ import annotations

import base64
import os


class BadInput(Exception):
    """Input the caller must fix; exit 2, nothing changed."""


class OperationFailed(Exception):
    """The input was fine but the operation could not complete; exit 1, nothing changed."""


TOKEN_ENV = "GITOPS_GIT_TOKEN"
# A Cloud Build 2nd-gen repository (projects/*/locations/*/connections/*/repositories/*): the
# scripts ask it for a short-lived read/write token when no token is given.
TOKEN_REPOSITORY_ENV = "GITOPS_GIT_TOKEN_REPOSITORY"
TOKEN_USER_ENV = "GITOPS_GIT_USERNAME"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "gitops-bot",
    "GIT_AUTHOR_EMAIL": "gitops-bot@noreply.invalid",
    "GIT_COMMITTER_NAME": "gitops-bot",
    "GIT_COMMITTER_EMAIL": "gitops-bot@noreply.invalid",
}


def one_line(text: str) -> str:
    return " ".join(text.split())


def basic_auth(token: str) -> str:
    user = os.environ.get(TOKEN_USER_ENV, "x-access-token")
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def connection_token(repository: str) -> str:
    """A short-lived read/write token from a Cloud Build connection's linked repository."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # Python-version notices
    from google.cloud.devtools import cloudbuild_v2

    client = cloudbuild_v2.RepositoryManagerClient()
    return str(client.fetch_read_write_token(repository=repository).token)


def resolve_token() -> None:
    """Put the connection's token in the environment when a linked repository is named."""
    repository = os.environ.get(TOKEN_REPOSITORY_ENV, "")
    if repository and not os.environ.get(TOKEN_ENV):
        try:
            os.environ[TOKEN_ENV] = connection_token(repository)
        except Exception as exc:
            raise OperationFailed(f"cannot get a token for {repository}: "
                                  f"{one_line(str(exc))}") from None


def git_environment(url: str) -> dict[str, str]:
    """Identity and, for HTTPS remotes with a token in the environment, the auth header."""
    env = {key: os.environ.get(key, value) for key, value in GIT_IDENTITY.items()}
    env["GIT_TERMINAL_PROMPT"] = "0"
    # A scratch repository lives for seconds: no background maintenance after a fetch.
    settings = [("maintenance.auto", "false")]
    if url.startswith("https://"):
        resolve_token()
        token = os.environ.get(TOKEN_ENV)
        if token:
            settings.append(("http.extraHeader", f"Authorization: Basic {basic_auth(token)}"))
    count = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
    for index, (key, value) in enumerate(settings, start=count):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(settings))
    return env


def local_path_url(url: str) -> str:
    """A relative local path made absolute (git runs elsewhere); any other URL as it is."""
    if "://" not in url and os.path.exists(url):
        return os.path.abspath(url)
    return url


def fetch_args(url: str, branch: str, depth: int, shallow: bool) -> list[str]:
    """`git fetch` arguments for one branch into refs/remotes/origin/ (0: whole history)."""
    args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
    if depth:
        args.append(f"--depth={depth}")
    elif shallow:
        args.append("--unshallow")
    return [*args, url, f"+refs/heads/{branch}:refs/remotes/origin/{branch}"]

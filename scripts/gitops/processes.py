"""Child processes with a deadline and only the environment they need.

Design decisions:
- Every child runs in its own session (process group). On timeout the whole group is killed,
  so a helper it started (git's `git-remote-https`, `ssh`; kubectl's auth plugin) cannot keep
  the build waiting on a pipe.
- kubectl and gcloud get an allowlisted environment (`tool_environment`): the path, home,
  locale, proxies, certificates and Google Cloud's own settings; never the git token or any
  other variable of the step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from gitops.errors import OperationFailed

# What kubectl, gcloud and gke-gcloud-auth-plugin read; everything else stays in this process.
TOOL_ENV_KEYS = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TZ", "LANG",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "USE_GKE_GCLOUD_AUTH_PLUGIN",
    "GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT",
})
# CLOUDSDK_*: gcloud's settings; KUBECTL_*: kubectl's (KUBECTL_EXTERNAL_DIFF for drift).
TOOL_ENV_PREFIXES = ("CLOUDSDK_", "KUBECTL_")


def tool_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted part of this process's environment, plus extra."""
    env = {key: value for key, value in os.environ.items()
           if key in TOOL_ENV_KEYS or key.startswith(TOOL_ENV_PREFIXES)}
    env["LC_ALL"] = "C"
    return {**env, **(extra or {})}


def start(argv: Sequence[str], env: Mapping[str, str], cwd: str | None = None,
          stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """A child in its own process group, its output captured."""
    return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and everything it started; reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def finish(proc: subprocess.Popen[bytes], timeout: float, what: str,
           data: bytes | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a started child; OperationFailed after timeout seconds."""
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise OperationFailed(f"{what} timed out after {timeout:g}s") from None
    except BaseException:  # interrupted: the child is in its own session, take it down too
        kill_group(proc)
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float, what: str,
        cwd: str | None = None, data: bytes | None = None) -> tuple[int, str, str]:
    """Run a child to the end, within timeout seconds."""
    proc = start(argv, env, cwd, stdin=subprocess.PIPE if data is not None else
                 subprocess.DEVNULL)
    return finish(proc, timeout, what, data)

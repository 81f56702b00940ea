"""Validation of every value that reaches git, a commit message or a command line.

Each check returns the value it accepted, or raises `BadInput` naming what was wrong.

Design decisions:
- Every pattern is applied with `fullmatch`: `$` would accept a trailing newline, and a newline
  in a trailer value forges a trailer (`Rollback: true`) in the history the builds read.
- Free text that reaches a commit message (build id, source repository, freeze reason) may hold
  no control, format or line-break character at all, and no space but the plain one: Python's
  `str.splitlines` breaks lines at `\\v`, `\\x85`, U+2028 and more, not only at `\\n`.
- A remote is an `https`, `http`, `ssh`, `git` or `file` URL, an scp-like `user@host:path`,
  or an existing local path; nothing git could read as an option (`-...`) or as another
  transport (`ext::...`).
- A `--source-repo` with credentials in it is refused, not stripped: it is recorded in every
  commit and printed by `history --json`, and a silently edited value would hide that a build
  holds a secret in a plain substitution.
"""

from __future__ import annotations

import os
import re
import unicodedata
from urllib.parse import urlsplit

from gitops.errors import BadInput

APP_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
BRANCH_RE = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<![./])")
# name[:tag]@sha256:<64 hex>; name is a registry path (host[:port]/path or a bare path).
IMAGE_REF_RE = re.compile(
    r"(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@(?P<digest>sha256:[0-9a-f]{64})"
)
REMOTE_SCHEMES = ("https", "http", "ssh", "git", "file")
HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# git@github.com:acme/env.git: user and host never start with '-', the path never with ':'.
SCP_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"
                    r":(?![:/-])[^\s]+")
MAX_REMOTE = 2048
MAX_TEXT = 1024
# Google Cloud names that reach gcloud's command line.
PROJECT_RE = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
CLUSTER_RE = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
LOCATION_RE = re.compile(r"[a-z]+-[a-z]+[0-9]+(?:-[a-z])?")
# Categories refused in free text: controls (Cc: \n \v \x85 ...), format characters (Cf:
# bidirectional overrides, zero-width), surrogates, private use, unassigned, line and paragraph
# separators (U+2028, U+2029) and every space but U+0020.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def unsafe_char(text: str) -> str | None:
    """The first control, format, line-break or unusual space character of text, if any."""
    for ch in text:
        if ch != " " and unicodedata.category(ch) in UNSAFE_CATEGORIES:
            return ch
    return None


def printable(text: str) -> str:
    """text safe to print on a terminal: every control, format, line-break or unusual space
    character but the newlines between lines and tabs is written as its Python escape
    (`\\x1b`, `\\u202e`). Values read from Git (trailers of commits written by hand) reach
    tables and logs; an escape sequence there must not move the cursor, recolour or reorder
    what an operator reads."""
    if unsafe_char(text.replace("\n", " ").replace("\t", " ")) is None:
        return text
    return "\n".join("".join(ch if ch in " \t" or unicodedata.category(ch) not in
                              UNSAFE_CATEGORIES else ch.encode("unicode_escape").decode("ascii")
                              for ch in line) for line in text.split("\n"))


def check_app(app: str) -> str:
    if len(app) > 63 or not APP_RE.fullmatch(app):
        raise BadInput(f"app {app!r} is not a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, max 63)")
    return app


def check_environments(names: str, what: str = "--environments") -> tuple[str, ...]:
    """The stack's environments in delivery order, from the CI trigger's `_ENVIRONMENTS`
    (names separated by spaces): each a DNS label, none twice, at least one."""
    environments = tuple(names.split(" "))
    for name in environments:
        if len(name) > 63 or not APP_RE.fullmatch(name):
            raise BadInput(f"{what} {names!r}: environment {name!r} is not a DNS label "
                           "([a-z0-9]([-a-z0-9]*[a-z0-9])?, max 63); separate names by one "
                           "space")
    if len(set(environments)) != len(environments):
        raise BadInput(f"{what} {names!r} names an environment twice")
    return environments


def check_sha(sha: str, what: str = "commit") -> str:
    if not SHA_RE.fullmatch(sha):
        raise BadInput(f"{what} {sha!r} is not a full hex commit SHA (40 or 64 digits)")
    return sha


def check_branch(branch: str) -> str:
    if not BRANCH_RE.fullmatch(branch) or branch.endswith(".lock") or len(branch) > 255:
        raise BadInput(f"branch {branch!r} is not a valid branch name")
    return branch


def check_image_ref(ref: str) -> re.Match[str]:
    match = IMAGE_REF_RE.fullmatch(ref)
    if not match:
        raise BadInput(
            f"image reference {ref!r} is invalid: it must be NAME[:TAG]@sha256:<64 hex digits>"
        )
    return match


# A Cloud Build build's resource name: the build whose provenance describes an image.
BUILD_NAME_RE = re.compile(r"projects/[a-z][-a-z0-9.:]{4,61}[a-z0-9]/locations/[a-z0-9-]+/"
                           r"builds/[A-Za-z0-9][A-Za-z0-9-]{0,127}")


def check_build_name(name: str, what: str) -> str:
    if not BUILD_NAME_RE.fullmatch(name):
        raise BadInput(f"{what} {name!r} is not a build name "
                       f"(projects/PROJECT/locations/LOCATION/builds/BUILD_ID)")
    return name


def check_text(key: str, value: str) -> str:
    """One line of printable text: no control, format or line-break character, at most 1024."""
    bad = unsafe_char(value)
    if bad is not None:
        raise BadInput(f"{key} holds the control or line-break character "
                       f"U+{ord(bad):04X}: {value!r}")
    if len(value) > MAX_TEXT:
        raise BadInput(f"{key} is longer than {MAX_TEXT} characters")
    return value


def check_trailer_value(key: str, value: str) -> str:
    """A value for a `Key: value` trailer: non-empty, one clean line, no outer spaces."""
    if not value or value != value.strip():
        raise BadInput(f"{key} {value!r} must be a non-empty single line")
    return check_text(key, value)


def check_source_repo(value: str) -> str:
    """The app repository recorded in the Source-Repo trailer: no credentials in it.

    The value is never repeated in the message: it may be a token.
    """
    check_trailer_value("--source-repo", value)
    if "://" in value:
        parts = urlsplit(value)
        userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
        if userinfo is not None and (":" in userinfo or parts.scheme in ("http", "https")):
            raise BadInput("--source-repo carries credentials (the part before '@'): give the "
                           "repository's URL without a user or token")
    elif ":" in value.partition("@")[0] and "@" in value:
        raise BadInput("--source-repo carries credentials (the part before '@'): give the "
                       "repository's URL without a user or token")
    return value


def check_remote(url: str) -> str:
    """An env repo remote git can only read as a repository; a local path made absolute.

    git runs elsewhere (in a scratch repository), so a relative path is made absolute here.
    """
    what = "--repo must be an https, http, ssh, git or file URL, user@host:path, or an " \
           "existing local path"
    if not url or len(url) > MAX_REMOTE or unsafe_char(url) is not None or " " in url:
        raise BadInput(f"{what}; got a value with spaces, control characters or none at all")
    if url.startswith("-"):
        raise BadInput(f"{what}, never an option: {url!r}")
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in REMOTE_SCHEMES:
            raise BadInput(f"{what}: scheme {scheme!r} is not allowed")
        if scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise BadInput(f"{what}: a file URL names an absolute local path")
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        port = host[len(hostname) + 1:]
        if (not HOST_RE.fullmatch(hostname) or (port and not port.isascii())
                or (port and not port.isdigit()) or (user and not USER_RE.fullmatch(user))):
            raise BadInput(f"{what}: {scheme} URL with an invalid user, host or port")
        return url
    if os.path.exists(url):
        return os.path.abspath(url)
    if "::" not in url and SCP_RE.fullmatch(url):
        return url
    raise BadInput(f"{what}: {url!r} is none of these (a local path must exist)")


def check_gcloud_names(project: str, cluster: str, location: str) -> None:
    """The cluster's coordinates, which reach gcloud's command line."""
    if not PROJECT_RE.fullmatch(project):
        raise BadInput(f"--project {project!r} is not a Google Cloud project id")
    if not CLUSTER_RE.fullmatch(cluster):
        raise BadInput(f"--cluster {cluster!r} is not a GKE cluster name")
    if not LOCATION_RE.fullmatch(location):
        raise BadInput(f"--location {location!r} is not a region or zone (europe-west1, "
                       "europe-west1-b)")


def short_ref(image: str) -> str:
    """`hello@sha256:0123456789ab` for a subject line: last path part, 12 digest digits."""
    name, _, digest = image.rpartition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}"

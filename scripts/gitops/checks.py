"""Validation of every value that reaches git, a commit message or a command line.

Each check returns the value it accepted, or raises `BadInput` naming what was wrong.
"""

from __future__ import annotations

import re

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


def check_app(app: str) -> str:
    if len(app) > 63 or not APP_RE.fullmatch(app):
        raise BadInput(f"app {app!r} is not a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, max 63)")
    return app


def check_sha(sha: str, what: str = "commit") -> str:
    if not SHA_RE.fullmatch(sha):
        raise BadInput(f"{what} {sha!r} is not a full hex commit SHA (40 or 64 digits)")
    return sha


def check_branch(branch: str) -> str:
    if not BRANCH_RE.fullmatch(branch) or branch.endswith(".lock"):
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


def check_trailer_value(key: str, value: str) -> str:
    if not value or any(ch in value for ch in "\r\n") or value != value.strip():
        raise BadInput(f"{key} {value!r} must be a non-empty single line")
    return value


def short_ref(image: str) -> str:
    """`hello@sha256:0123456789ab` for a subject line: last path part, 12 digest digits."""
    name, _, digest = image.rpartition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}"

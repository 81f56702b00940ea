"""Signed env-repo commits: SSH signing keys for the commits made, allowed signers for checks.

Design decisions:
- Git does the cryptography (`gpg.format=ssh`, `commit-tree -S`, `%G?` in `git log`), through
  OpenSSH's `ssh-keygen -Y`. This module only gets the key and the allowed signers to git.
- The private key arrives in the environment (`GITOPS_SIGNING_KEY`, set by Cloud Build from
  Secret Manager through `availableSecrets`/`secretEnv`), never on a command line, in a
  substitution or in the image. It is written to a file readable by its owner only (0600, in a
  0700 scratch folder), named to git by `GIT_CONFIG_*` variables, and removed when the command
  ends (or by the next command, if this one was killed); git's children never get the variable.
- The allowed signers are trusted input from outside the env repo (the stack's config, handed
  to the delivery trigger, or a file an operator passes): a file inside the env repo would be
  writable by anyone who can push to it, so it could not be the anchor of trust.
  `GITOPS_ALLOWED_SIGNERS` holds the `allowed_signers` lines, separated by line breaks or by
  `;` (a trigger substitution is one line); an entry never contains `;`.
- Verifying is on when allowed signers are given: `history` and `status` then say, for every
  entry, whether its signature verifies, and `deploy` refuses a commit whose does not.
- The key's comment (`ssh-keygen -C`), when it is an email address, becomes the author and
  committer email of the commits it signs (unless GIT_COMMITTER_EMAIL / GIT_AUTHOR_EMAIL are
  set): GitHub marks an SSH-signed commit Verified only when the committer email is a verified
  address of the account that registered the key, and the secret then carries both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitops import scratch
from gitops.errors import BadInput, OperationFailed, one_line

KEY_ENV = "GITOPS_SIGNING_KEY"
ALLOWED_SIGNERS_ENV = "GITOPS_ALLOWED_SIGNERS"
PRIVATE_KEY_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
# The key types ssh-keygen signs with (security keys included).
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "ssh-rsa", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")
PUBLIC_KEY = re.compile(r"(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,3})(?: [^\r\n;]*)?")
PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
# A key comment that is an email address becomes the committer email.
EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
# An allowed_signers entry as this project writes it: principal, git namespace, key.
ENTRY = re.compile(r'(?P<principal>[^\s;"]+) namespaces="git" (?P<type>[a-z0-9@.-]+) '
                   r"(?P<blob>[A-Za-z0-9+/]+={0,3})")

# `%G?` of git log -> what it means here.
GOOD, BAD, UNSIGNED, UNTRUSTED, UNCHECKABLE = "good", "bad", "unsigned", "untrusted", "error"
STATUS_OF = {"G": GOOD, "B": BAD, "N": UNSIGNED, "U": UNTRUSTED, "X": BAD, "Y": BAD, "R": BAD,
             "E": UNCHECKABLE}


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking one commit's signature against the allowed signers."""

    status: str  # GOOD, BAD (tampered or revoked), UNSIGNED, UNTRUSTED (key not allowed), ...
    signer: str | None = None  # the allowed signer's principal when GOOD

    @property
    def good(self) -> bool:
        return self.status == GOOD

    def describe(self) -> str:
        if self.good:
            return f"good ({self.signer})"
        return {BAD: "BAD signature", UNSIGNED: "UNSIGNED",
                UNTRUSTED: "signed by a key not allowed"}.get(self.status,
                                                             "signature not checkable")

    @classmethod
    def from_git(cls, flag: str, signer: str) -> SignatureCheck:
        status = STATUS_OF.get(flag, UNCHECKABLE)
        return cls(status, signer if status == GOOD and signer else None)


def public_key_entry(principal: str, public_key: str) -> str:
    """One allowed_signers line: `principal namespaces="git" type blob` (no comment)."""
    if not PRINCIPAL.fullmatch(principal):
        raise BadInput(f"signer name {principal!r} must be letters, digits and . _ @ + -")
    key = public_key.strip()
    if PRIVATE_KEY_BEGIN in key or "PRIVATE KEY" in key:
        raise BadInput(f"the key given for signer {principal!r} is a private key: give its "
                       f"public half (the .pub file)")
    match = PUBLIC_KEY.fullmatch(key)
    if not match or match["type"] not in KEY_TYPES:
        raise BadInput(f"the key given for signer {principal!r} is not an SSH public key "
                       f"(`ssh-ed25519 AAAA...`)")
    return f'{principal} namespaces="git" {match["type"]} {match["blob"]}'


def parse_allowed_signers(text: str) -> list[str]:
    """The entries of GITOPS_ALLOWED_SIGNERS (or an allowed_signers file), validated."""
    entries = [e.strip() for e in re.split(r"[;\n]", text)
               if e.strip() and not e.strip().startswith("#")]
    for entry in entries:
        if not ENTRY.fullmatch(entry):
            raise BadInput(f"allowed signers entry {entry[:40]!r}... is not "
                           f'`PRINCIPAL namespaces="git" KEYTYPE KEY`')
    if not entries:
        raise BadInput("the allowed signers list is empty")
    return entries


@dataclass(frozen=True)
class Signing:
    """What the git layer signs with and verifies against; both optional."""

    key: str | None = None  # an unencrypted OpenSSH private key (the text of the file)
    allowed_signers: tuple[str, ...] = ()  # validated allowed_signers entries

    @property
    def signs(self) -> bool:
        return self.key is not None

    @property
    def verifies(self) -> bool:
        return bool(self.allowed_signers)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Signing:
        environ = os.environ if environ is None else environ
        key = environ.get(KEY_ENV, "").strip()
        if key and PRIVATE_KEY_BEGIN not in key:
            raise BadInput(f"{KEY_ENV} does not hold an OpenSSH private key "
                           f"({PRIVATE_KEY_BEGIN} ...)")
        allowed = environ.get(ALLOWED_SIGNERS_ENV, "")
        return cls(key=key + "\n" if key else None,
                   allowed_signers=tuple(parse_allowed_signers(allowed)) if allowed.strip()
                   else ())

    def with_allowed_signers(self, text: str | None) -> Signing:
        """This signing with the allowed signers replaced by text (None: unchanged)."""
        if text is None:
            return self
        return Signing(self.key, tuple(parse_allowed_signers(text)))


@dataclass(frozen=True)
class GitSigning:
    """What the git layer hands git: config settings, and the signer's email if the key has one."""

    settings: list[tuple[str, str]]
    email: str | None = None


@contextmanager
def git_settings(signing: Signing) -> Iterator[GitSigning]:
    """Git config settings that sign with the key and verify against the allowed signers.

    The key and the allowed signers are written to a private folder for the duration, and
    removed afterwards whatever happens. A key ssh-keygen cannot read is refused up front, so a
    bad key fails before anything is fetched or pushed.
    """
    if not signing.signs and not signing.verifies:
        yield GitSigning([])
        return
    # A scratch folder (mode 0700): removed below, or by the next run if this one is killed.
    folder = scratch.make()
    try:
        settings: list[tuple[str, str]] = []
        email = None
        if signing.key is not None:
            key_file = folder / "signing-key"
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(signing.key)
            comment = key_comment(key_file)
            email = comment if EMAIL.fullmatch(comment) else None
            settings += [("gpg.format", "ssh"), ("user.signingKey", str(key_file))]
        if signing.verifies:
            allowed = folder / "allowed_signers"
            allowed.write_text("\n".join(signing.allowed_signers) + "\n")
            settings.append(("gpg.ssh.allowedSignersFile", str(allowed)))
        yield GitSigning(settings, email)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def key_comment(key_file: Path) -> str:
    """The comment of a private key ssh-keygen can use without a passphrase; BadInput if it
    cannot (the message names the file, never the key material)."""
    try:
        # The key is in the file: ssh-keygen does not get it in its environment too.
        environment = {k: v for k, v in os.environ.items() if k != KEY_ENV}
        proc = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(key_file)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env=environment, check=False)
    except FileNotFoundError:
        raise OperationFailed("ssh-keygen is not installed: commits cannot be signed") from None
    if proc.returncode != 0:
        raise BadInput(f"{KEY_ENV} is not a usable unencrypted OpenSSH private key: "
                       f"{one_line(proc.stderr) or 'ssh-keygen refused it'}")
    fields = proc.stdout.split(maxsplit=2)  # type, key, comment (when the key has one)
    return fields[2].strip() if len(fields) == 3 else ""

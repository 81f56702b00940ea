#!/usr/bin/env python3
"""A stand-in `kubectl` for tests: Leases with real create/replace semantics, and a cluster
whose state is the last manifests applied per namespace. State lives in $FAKE_CLUSTER_DIR (set
by the wrapper on PATH: deploy gives kubectl an allowlisted environment), so concurrent
processes share one cluster. A rollout fails when the applied manifests contain the text of
the file `fail-marker` in that folder. Every call is appended to calls.log.
"""

import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_CLUSTER_DIR"])


def option(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--kubeconfig=")]
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one kubectl at a time, like one API server
        with open(STATE / "calls.log", "a") as log:
            log.write(json.dumps(args) + "\n")
        verb = args[0]
        if verb in ("create", "replace"):
            lease = json.loads(sys.stdin.read())
            meta = lease["metadata"]
            path = STATE / "leases" / meta["namespace"] / meta["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if verb == "create" and path.exists():
                print(f'Error from server (AlreadyExists): leases "{meta["name"]}" already '
                      'exists', file=sys.stderr)
                return 1
            if verb == "replace":
                current = json.loads(path.read_text())
                if current["metadata"]["resourceVersion"] != meta.get("resourceVersion"):
                    print("Error from server (Conflict): the object has been modified",
                          file=sys.stderr)
                    return 1
                meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
            else:
                meta["resourceVersion"] = "1"
            path.write_text(json.dumps(lease))
            print(f"lease.coordination.k8s.io/{meta['name']} {verb}d")
            return 0
        if verb in ("get", "delete") and args[1] == "lease":
            path = STATE / "leases" / option(args, "namespace") / args[2]
            if not path.exists():
                if verb == "delete":
                    return 0
                print(f'Error from server (NotFound): leases "{args[2]}" not found',
                      file=sys.stderr)
                return 1
            if verb == "get":
                print(path.read_text())
            else:
                path.unlink()
            return 0
        if verb == "apply":
            namespace, source = option(args, "namespace"), Path(option(args, "filename"))
            target = STATE / "applied" / namespace
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            with open(STATE / "applied.log", "a") as log:
                log.write(f"{namespace} {tree_hash(source)}\n")
            print("deployment.apps/hello configured")
            return 0
        if verb == "rollout":
            namespace = option(args, "namespace")
            marker_file = STATE / "fail-marker"
            marker = marker_file.read_text() if marker_file.exists() else None
            applied = STATE / "applied" / namespace
            text = "".join(p.read_text() for p in applied.rglob("*") if p.is_file())
            if marker and marker in text:
                print(f'error: deployment "{args[2]}" exceeded its progress deadline',
                      file=sys.stderr)
                return 1
            print(f'deployment "{args[2]}" successfully rolled out')
            return 0
        print(f"fake kubectl: unsupported {args}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

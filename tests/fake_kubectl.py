#!/usr/bin/env python3
"""A stand-in `kubectl` for tests: Leases with real create/replace semantics, and a cluster
whose objects live in files. State lives in $FAKE_CLUSTER_DIR (set by the wrapper on PATH:
kubectl gets an allowlisted environment, so the tests' variables do not reach it), and
concurrent processes share one cluster. A rollout fails when the namespace's objects contain
the text of the file `fail-marker` in that folder. Every call is appended to calls.log, every
deleted object to deleted.log (namespace and name). `kustomize` (a local build, no cluster)
runs the real kubectl the wrapper names in $FAKE_REAL_KUBECTL.

`applied/NS/` holds the live objects (edit a file there to change the cluster by hand; files
under `created/NS/` are objects someone created without kubectl apply). `apply` creates or
updates objects and never deletes one (an object stays in the file it was first applied from),
recording its field manager in managedFields (tests/fake_api.py). `get TYPE NAME` and
`delete TYPE NAME` resolve types as kubectl does. `diff` writes LIVE and MERGED folders
(MERGED: the live object with the given manifest's fields laid over it, as an apply of the
manifest's fields merges) and runs $KUBECTL_EXTERNAL_DIFF on them, as kubectl does; `get
KINDS --output=json` lists the namespace's objects (applied ones carry kubectl's last-applied
annotation; managedFields only with `--show-managed-fields`, as kubectl shows them);
`delete KIND/NAME` removes one object.
"""

import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path

import fake_api  # its YAML parser loads only when an object is read

# In-process callers (tests) set STATE themselves before calling main(argv).
STATE = Path(os.environ["FAKE_CLUSTER_DIR"]) if "FAKE_CLUSTER_DIR" in os.environ else None


def option(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def documents(folder: Path) -> list[tuple[Path, dict]]:
    import yaml  # here, not at the top: the Lease and apply calls stay fast

    found = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            found += [(path, doc) for doc in yaml.safe_load_all(path.read_text())
                      if isinstance(doc, dict)]
    return found


def key(doc: dict) -> tuple[str, str]:
    return str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))


def merged(live: dict, desired: dict) -> dict:
    """desired laid over live: mappings merge, anything else is replaced."""
    out = dict(live)
    for field, value in desired.items():
        out[field] = merged(live[field], value) \
            if isinstance(value, dict) and isinstance(live.get(field), dict) else value
    return out


def file_name(doc: dict, namespace: str) -> str:
    group_version = str(doc.get("apiVersion", "v1")).replace("/", ".")
    return f"{group_version}.{doc.get('kind')}.{namespace}.{key(doc)[1]}"


def diff(namespace: str, source: Path) -> int:
    import subprocess
    import tempfile

    import yaml

    live = {key(doc): doc for _, doc in documents(STATE / "applied" / namespace)}
    with tempfile.TemporaryDirectory() as work:
        live_dir, merged_dir = Path(work, "LIVE"), Path(work, "MERGED")
        live_dir.mkdir()
        merged_dir.mkdir()
        for _, doc in documents(source):
            name = file_name(doc, namespace)
            current = live.get(key(doc))
            if current is not None:
                (live_dir / name).write_text(yaml.safe_dump(current))
                (merged_dir / name).write_text(yaml.safe_dump(merged(current, doc)))
            else:
                (merged_dir / name).write_text(yaml.safe_dump(doc))
        differ = os.environ.get("KUBECTL_EXTERNAL_DIFF", "diff -u -N").split()
        proc = subprocess.run([*differ, str(live_dir), str(merged_dir)], capture_output=True,
                              text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode


def listing(namespace: str, flags: set[str]) -> dict:
    items = []
    for _, doc in documents(STATE / "applied" / namespace):
        metadata = {**(doc.get("metadata") or {}), "namespace": namespace}
        metadata["annotations"] = {**(metadata.get("annotations") or {}), APPLIED: "{}"}
        items.append({**doc, "metadata": metadata})
    for _, doc in documents(STATE / "created" / namespace):
        items.append({**doc, "metadata": {**(doc.get("metadata") or {}),
                                          "namespace": namespace}})
    if "--show-managed-fields" not in flags:
        for item in items:
            item["metadata"].pop("managedFields", None)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def live_objects(namespace: str) -> list[tuple[Path, dict]]:
    """(file, object) of every object in the namespace: applied, then created otherwise."""
    assert STATE is not None
    return [*fake_api.manifest_objects(STATE / "applied" / namespace),
            *fake_api.manifest_objects(STATE / "created" / namespace)]


def live(state: Path, namespace: str) -> set[str]:
    """The namespace's objects, as kubectl prints their names (for tests)."""
    return {fake_api.printed(doc) for folder in ("applied", "created")
            for _, doc in fake_api.manifest_objects(state / folder / namespace)}


def rewrite(path: Path, docs: list[dict]) -> None:
    import yaml

    if docs:
        path.write_text(yaml.safe_dump_all(docs))
    else:
        path.unlink()


def apply(namespace: str, source: Path, manager: str | None) -> str:
    """Create or update each object of source; nothing is deleted."""
    assert STATE is not None
    folder = STATE / "applied" / namespace
    lines = []
    for path, doc in fake_api.manifest_objects(source):
        name = fake_api.printed(doc)
        home = next((p for p, d in fake_api.manifest_objects(folder)
                     if fake_api.printed(d) == name), None)
        target = home or folder / path.relative_to(source).with_suffix(".yaml")
        docs = fake_api.file_objects(target) if target.exists() else []
        current = next((d for d in docs if fake_api.printed(d) == name), None)
        updated = fake_api.with_manager(current, doc, manager)
        docs = [updated if d is current else d for d in docs] if current else [*docs, updated]
        target.parent.mkdir(parents=True, exist_ok=True)
        rewrite(target, docs)
        lines.append(f"{name} {'configured' if current else 'created'}")
    return "\n".join(lines)


def get_one(namespace: str, resource_type: str, name: str,
            flags: set[str]) -> tuple[int, str, str]:
    for _, doc in live_objects(namespace):
        if fake_api.is_type(doc, resource_type, name):
            return 0, fake_api.shown(doc, flags), ""
    return fake_api.not_found(resource_type, name, flags)


def delete(namespace: str, what: str, name: str | None = None) -> bool:
    """Delete KIND/NAME (what alone) or TYPE NAME; whether an object was deleted."""
    assert STATE is not None
    if name is None:
        kind, name = what.split("/", 1)

        def chosen(d: dict) -> bool:
            return (str(d.get("kind")).lower(), key(d)[1]) == (kind, name)
    else:
        def chosen(d: dict) -> bool:
            return fake_api.is_type(d, what, str(name))
    for folder in ("applied", "created"):
        for path in sorted({p for p, _ in fake_api.manifest_objects(STATE / folder / namespace)}):
            docs = fake_api.file_objects(path)
            kept = [d for d in docs if not chosen(d)]
            if len(kept) != len(docs):
                rewrite(path, kept)
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    """One kubectl call (argv: its arguments; None: this process's)."""
    args = [a for a in (sys.argv[1:] if argv is None else argv)
            if not a.startswith("--kubeconfig=")]
    if args[:1] == ["kustomize"]:  # a local build, no cluster: the real kubectl's
        real = os.environ.get("FAKE_REAL_KUBECTL")
        if not real:
            sys.exit("fake kubectl: kustomize needs a real kubectl on PATH")
        os.execv(real, ["kubectl", *args])
    assert STATE is not None, "set FAKE_CLUSTER_DIR"
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
        if verb == "diff":
            return diff(option(args, "namespace"), Path(option(args, "filename")))
        positional = [a for a in args[1:] if not a.startswith("-")]
        flags = {a for a in args if a.startswith("--") and "=" not in a}
        if verb == "get" and len(positional) == 2:
            code, out, err = get_one(option(args, "namespace"), *positional, flags)
            if out:
                print(out)
            if err:
                print(err, file=sys.stderr)
            return code
        if verb == "get":
            print(json.dumps(listing(option(args, "namespace"), flags)))
            return 0
        if verb == "delete":
            what = "/".join(positional)
            if delete(option(args, "namespace"), *positional[:2]):
                with open(STATE / "deleted.log", "a") as log:
                    log.write(f"{option(args, 'namespace')} {what}\n")
                print(f"{what} deleted")
            elif "--ignore-not-found" not in flags:
                print(f"Error from server (NotFound): {what} not found", file=sys.stderr)
                return 1
            return 0
        if verb == "apply":
            namespace, source = option(args, "namespace"), Path(option(args, "filename"))
            with open(STATE / "applied.log", "a") as log:
                log.write(f"{namespace} {tree_hash(source)}\n")
            managers = [a.split("=", 1)[1] for a in args if a.startswith("--field-manager=")]
            print(apply(namespace, source, managers[0] if managers else None))
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

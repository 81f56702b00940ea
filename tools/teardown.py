"""Tear the stack down: cluster deletion protection off first, then `pulumi destroy`.

    python tools/teardown.py [--yes]      (make destroy [YES=1])

1. checks the Pulumi CLI, gcloud, the auth plugin, the login and the selected stack;
2. when the stack's cluster still has deletion protection: `pulumi config set
   gitops:deletionProtection false` and `pulumi up --target=<cluster URN>`, which changes only
   that flag;
3. `pulumi destroy --exclude-protected`: everything the stack created except protected
   resources (the Cloud Source Repositories, which hold the delivery history and the code);
4. prints what is left and the command that removes each of those on purpose.

Pulumi asks before each change unless --yes. Exit 0 done, 2 a prerequisite is missing
(nothing changed), 1 a Pulumi step failed.

Design decisions:
- Protection is read from the stack's state (`pulumi stack export`), not assumed: a stack whose
  cluster is already unprotected, or already gone, goes straight to destroy.
- Protected resources stay protected: deleting history is a separate, deliberate command
  (`pulumi state unprotect`), printed at the end, never something `make destroy` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from preflight import Findings, preflight, pulumi, report
from shell import run_visible

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "gcp:container/cluster:Cluster"


class StepFailed(Exception):
    """Exit 1: a Pulumi step failed or was declined."""


def state_resources() -> list[dict[str, Any]]:
    exported = pulumi("stack", "export", timeout=120)
    if not exported.ok:
        raise StepFailed(f"pulumi stack export failed: {exported.first_error_line()}")
    deployment = json.loads(exported.stdout or "{}").get("deployment", {})
    return list(deployment.get("resources") or [])


def protected_clusters(resources: list[dict[str, Any]]) -> list[str]:
    """URNs of clusters whose state still says deletionProtection is on."""
    urns = []
    for resource in resources:
        if resource.get("type") != CLUSTER:
            continue
        state = {**(resource.get("inputs") or {}), **(resource.get("outputs") or {})}
        if state.get("deletionProtection", True) is not False:
            urns.append(resource["urn"])
    return urns


def protected(resources: list[dict[str, Any]]) -> list[str]:
    return [resource["urn"] for resource in resources if resource.get("protect")]


def step(argv: list[str], yes: bool) -> None:
    command = ["pulumi", *argv, *(["--yes"] if yes else [])]
    print(f"$ {' '.join(command)}", flush=True)
    code = run_visible(command, cwd=str(ROOT))
    if code != 0:
        raise StepFailed(f"`{' '.join(command)}` exited {code}; nothing after it ran")


def left_behind(config: dict[str, str], kept: list[str]) -> list[str]:
    """What destroy does not remove, each with the command that removes it on purpose."""
    project = config.get("gcp:project", "PROJECT")
    region = config.get("gcp:region", "REGION")
    backend = config.get("gitops:stateBackend", f"gs://{project}-pulumi-state")
    secrets = config.get("gitops:secretsProvider", f"gcpkms://projects/{project}/locations/"
                         f"{region}/keyRings/pulumi/cryptoKeys/state")
    lines = [f"- state of this stack in {backend}: `pulumi stack rm` removes the stack; the "
             f"bucket itself: gcloud storage rm --recursive {backend}"]
    if secrets.startswith("gcpkms://"):
        key = secrets.removeprefix("gcpkms://")
        lines.append(f"- KMS key {key}: keys are never deleted on the spot; destroy its "
                     f"versions (scheduled, 30 days by default): gcloud kms keys versions "
                     f"destroy 1 --key={key.rsplit('/', 1)[1]} --keyring="
                     f"{key.split('/keyRings/')[1].split('/')[0]} --location={region} "
                     f"--project={project}")
    token = config.get("gitops:githubTokenSecret")
    if token:
        lines.append(f"- Secret Manager secret {token} (you created it): gcloud secrets delete "
                     f"{token} --project={project}")
    for urn in kept:
        lines.append(f"- protected, kept with its history: {urn.rsplit('::', 1)[1]}; to delete "
                     f"it on purpose: pulumi state unprotect '{urn}' && pulumi destroy")
    lines.append(f"- enabled APIs stay enabled; build logs stay in Cloud Logging until its "
                 f"retention ends; check for load balancers left by deliveries: gcloud compute "
                 f"forwarding-rules list --project={project}")
    return lines


def teardown(yes: bool) -> int:
    found: Findings = preflight("destroy")  # quiet when all is well: `make destroy` showed it
    if any(not check.ok for check in found.checks):
        return report(found, "destroy")
    listed = pulumi("config", "--json")
    config = {key: str(entry["value"]) for key, entry in json.loads(listed.stdout or "{}")
              .items() if entry.get("value") is not None} if listed.ok else {}
    resources = state_resources()
    for urn in protected_clusters(resources):
        print(f"cluster deletion protection is on: turning it off ({urn.rsplit('::', 1)[1]})")
        step(["config", "set", "gitops:deletionProtection", "false"], yes=False)
        step(["up", f"--target={urn}"], yes)
    kept = protected(resources)
    for urn in kept:
        print(f"kept (protected): {urn}")
    step(["destroy", "--exclude-protected"], yes)
    print(f"Destroyed stack {found.stack}. Left behind, on purpose:")
    for line in left_behind(config, kept):
        print(line)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="teardown.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--yes", action="store_true", help="do not ask before each change")
    args = parser.parse_args(argv)
    try:
        return teardown(args.yes)
    except StepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

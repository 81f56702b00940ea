"""Create (or reuse) the stack's state backend and the stack, in one command.

    python tools/bootstrap.py --project P --region R [--stack dev] [--bucket B]
                              [--key-ring pulumi] [--key state]
    (make bootstrap PROJECT=P REGION=R [STACK=dev])

In order, each step describing before it creates, so running it again changes nothing:
1. enable the APIs the backend needs (storage, cloudkms) when they are not enabled yet;
2. the state bucket (uniform access, public access prevented) and object versioning on it;
3. the KMS key ring and the symmetric key that encrypts the stack's secrets;
4. `pulumi login gs://BUCKET`;
5. select the stack, or create it with the `gcpkms://` secrets provider;
6. set gcp:project and gcp:region (and gitops:stateBackend / gitops:secretsProvider when the
   names differ from the defaults, so the preview build finds the state).

Prints one line per step (`created ...`, `reused ...`, `enabled ...`). Exit 0 done, 2 bad input
(one `error:` line, nothing done), 1 a step failed (steps before it stay done; rerun after the
fix).

Design decisions:
- Standard library and the gcloud and pulumi CLIs only: it runs before `.venv` exists.
- Defaults match the config model's defaults (`gs://PROJECT-pulumi-state`, key ring `pulumi`,
  key `state` in the region), so a default stack needs no backend config at all.
- KMS keys cannot be deleted on the spot (a key version is scheduled for destruction), so a
  second run must find and reuse them rather than create new ones: describe before create.
- An existing stack is reused; when its secrets provider differs the command stops and prints
  the `pulumi stack change-secrets-provider` line instead of re-encrypting on its own.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from preflight import EXAMPLE_VALUES, Findings, check_gcloud, check_pulumi_cli, report
from shell import Result, run

ROOT = Path(__file__).resolve().parent.parent
APIS = ("storage.googleapis.com", "cloudkms.googleapis.com")
PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
REGION = re.compile(r"[a-z]+(-[a-z]+)+[0-9]+")
STACK = re.compile(r"[A-Za-z0-9_.-]{1,100}")
BUCKET = re.compile(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]")
KMS_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


class BadInput(Exception):
    """Exit 2: the caller must fix the arguments; nothing was done."""


class StepFailed(Exception):
    """Exit 1: a cloud step failed; the steps before it are done and a rerun reuses them."""


@dataclass(frozen=True)
class Plan:
    project: str
    region: str
    stack: str
    bucket: str
    key_ring: str
    key: str

    @property
    def backend(self) -> str:
        return f"gs://{self.bucket}"

    @property
    def secrets_provider(self) -> str:
        return (f"gcpkms://projects/{self.project}/locations/{self.region}/keyRings/"
                f"{self.key_ring}/cryptoKeys/{self.key}")


def validated(args: argparse.Namespace) -> Plan:
    def full(pattern: re.Pattern[str], value: str, what: str, example: str) -> str:
        if not value:
            raise BadInput(f"{what} is required: make bootstrap PROJECT=<your project id> "
                           "REGION=europe-west1")
        if not pattern.fullmatch(value):
            raise BadInput(f"{what} {value!r} is not valid (example: {example})")
        return value

    project = full(PROJECT_ID, args.project or "", "--project (PROJECT)", "acme-gitops-prod")
    if project in EXAMPLE_VALUES:
        raise BadInput(f"--project {project!r} is the example from the docs: use your own "
                       "project id (gcloud projects list)")
    return Plan(
        project=project,
        region=full(REGION, args.region or "", "--region (REGION)", "europe-west1"),
        stack=full(STACK, args.stack, "--stack", "dev"),
        bucket=full(BUCKET, args.bucket or f"{project}-pulumi-state", "--bucket",
                    f"{project}-pulumi-state"),
        key_ring=full(KMS_NAME, args.key_ring, "--key-ring", "pulumi"),
        key=full(KMS_NAME, args.key, "--key", "state"),
    )


def gcloud(*args: str) -> Result:
    return run(["gcloud", *args], timeout=300)


def pulumi(*args: str) -> Result:
    return run(["pulumi", *args], cwd=str(ROOT), timeout=300,
               env={"PULUMI_SKIP_UPDATE_CHECK": "true"})


def must(result: Result, step: str) -> Result:
    if not result.ok:
        raise StepFailed(f"{step} failed: {result.first_error_line()}")
    return result


def not_found(result: Result) -> bool:
    text = result.stderr + result.stdout
    return "NOT_FOUND" in text or "not found: 404" in text


def enable_apis(plan: Plan) -> str:
    listed = must(gcloud("services", "list", "--enabled", f"--project={plan.project}",
                         "--format=value(config.name)"), "listing enabled APIs")
    enabled = set(listed.stdout.split())
    missing = [api for api in APIS if api not in enabled]
    if not missing:
        return f"reused APIs {', '.join(APIS)} (already enabled)"
    must(gcloud("services", "enable", *missing, f"--project={plan.project}"),
         f"enabling {', '.join(missing)}")
    return f"enabled {', '.join(missing)}"


def state_bucket(plan: Plan) -> list[str]:
    described = gcloud("storage", "buckets", "describe", plan.backend,
                       f"--project={plan.project}", "--format=json")
    lines = []
    if described.ok:
        versioned = bool(json.loads(described.stdout or "{}").get("versioning_enabled"))
        lines.append(f"reused bucket {plan.backend}")
    elif not_found(described):
        must(gcloud("storage", "buckets", "create", plan.backend, f"--project={plan.project}",
                    f"--location={plan.region}", "--uniform-bucket-level-access",
                    "--public-access-prevention"), f"creating {plan.backend}")
        versioned = False
        lines.append(f"created bucket {plan.backend} in {plan.region}")
    else:
        raise StepFailed(f"cannot use {plan.backend}: {described.first_error_line()} (bucket "
                         "names are global: another project may own it; pass --bucket NAME)")
    if versioned:
        lines.append(f"reused object versioning on {plan.backend}")
    else:
        must(gcloud("storage", "buckets", "update", plan.backend, "--versioning"),
             f"turning on versioning of {plan.backend}")
        lines.append(f"turned on object versioning on {plan.backend}")
    return lines


def kms_key(plan: Plan) -> list[str]:
    where = [f"--location={plan.region}", f"--project={plan.project}"]
    lines = []
    ring = gcloud("kms", "keyrings", "describe", plan.key_ring, *where, "--format=value(name)")
    if ring.ok:
        lines.append(f"reused key ring {plan.key_ring}")
    elif not_found(ring):
        must(gcloud("kms", "keyrings", "create", plan.key_ring, *where),
             f"creating key ring {plan.key_ring}")
        lines.append(f"created key ring {plan.key_ring} in {plan.region}")
    else:
        raise StepFailed(f"cannot read key ring {plan.key_ring}: {ring.first_error_line()}")
    key = gcloud("kms", "keys", "describe", plan.key, f"--keyring={plan.key_ring}", *where,
                 "--format=value(primary.state)")
    if key.ok:
        state = key.stdout.strip()
        if state != "ENABLED":
            raise StepFailed(f"key {plan.key} exists but its primary version is "
                             f"{state or 'missing'}: restore or rotate it (gcloud kms keys "
                             "versions list), or pass --key NAME for a new key")
        lines.append(f"reused key {plan.key}")
    elif not_found(key):
        must(gcloud("kms", "keys", "create", plan.key, f"--keyring={plan.key_ring}", *where,
                    "--purpose=encryption"), f"creating key {plan.key}")
        lines.append(f"created key {plan.key}")
    else:
        raise StepFailed(f"cannot read key {plan.key}: {key.first_error_line()}")
    return lines


def configured_secrets_provider(stack: str) -> str | None:
    """The `secretsprovider:` line of Pulumi.<stack>.yaml, if any."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return None
    match = re.search(r"^secretsprovider:\s*(\S+)", path.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def stack(plan: Plan) -> list[str]:
    must(pulumi("login", plan.backend), f"pulumi login {plan.backend}")
    lines = [f"logged in to {plan.backend}"]
    if pulumi("stack", "select", plan.stack).ok:
        current = configured_secrets_provider(plan.stack)
        if current and current != plan.secrets_provider:
            raise StepFailed(f"stack {plan.stack} exists with secrets provider {current}; to "
                             "move it to this key run: pulumi stack change-secrets-provider "
                             f'"{plan.secrets_provider}"')
        lines.append(f"reused stack {plan.stack}")
    else:
        must(pulumi("stack", "init", plan.stack, f"--secrets-provider={plan.secrets_provider}"),
             f"creating stack {plan.stack}")
        lines.append(f"created stack {plan.stack} (secrets: {plan.secrets_provider})")
    settings = {"gcp:project": plan.project, "gcp:region": plan.region}
    if plan.bucket != f"{plan.project}-pulumi-state":
        settings["gitops:stateBackend"] = plan.backend
    if (plan.key_ring, plan.key) != ("pulumi", "state"):
        settings["gitops:secretsProvider"] = plan.secrets_provider
    for key, value in settings.items():
        must(pulumi("config", "set", key, value), f"pulumi config set {key}")
    lines.append("set " + ", ".join(f"{key}={value}" for key, value in settings.items()))
    return lines


def bootstrap(plan: Plan) -> list[str]:
    lines = [enable_apis(plan)]
    print(lines[-1], flush=True)
    for step in (state_bucket, kms_key, stack):
        for line in step(plan):
            print(line, flush=True)
            lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bootstrap.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", help="Google Cloud project id")
    parser.add_argument("--region", help="region of the bucket and key, e.g. europe-west1")
    parser.add_argument("--stack", default="dev", help="stack name (default: dev)")
    parser.add_argument("--bucket", help="state bucket (default: PROJECT-pulumi-state)")
    parser.add_argument("--key-ring", default="pulumi", help="KMS key ring (default: pulumi)")
    parser.add_argument("--key", default="state", help="KMS key (default: state)")
    args = parser.parse_args(argv)
    try:
        plan = validated(args)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tools = Findings()
    check_pulumi_cli(tools)
    check_gcloud(tools)
    if any(not check.ok for check in tools.checks):
        return report(tools, "bootstrap")
    try:
        bootstrap(plan)
    except StepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("Done. Next: set the GitHub keys if you use GitHub (docs/quickstart.md), then "
          "`make preview` and `make up`.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

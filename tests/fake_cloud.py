"""Stand-ins for `pulumi`, `gcloud`, `git` and `gke-gcloud-auth-plugin`, for the setup tools'
tests. Installed under those names in a bin folder that is the whole PATH.

The world they answer from is $FAKE_CLOUD_DIR/world.json (logins, stacks and their config,
enabled APIs, buckets, KMS keys, secrets, GitHub repositories); commands that create or change
something change it, so a second run sees what the first one made. Every call is appended to
$FAKE_CLOUD_DIR/calls.jsonl as [program, *args]. Error texts are the ones the real tools print.
"""

from __future__ import annotations  # annotations unevaluated: no typing import at startup

import json
import os
import sys

STATE = os.environ.get("FAKE_CLOUD_DIR", ".")
WORLD = os.path.join(STATE, "world.json")
World = dict  # world.json parsed: names -> JSON values (no typing import: startup time)
FAKE_ADC_TOKEN = "ya29.fake-adc-token-must-never-be-printed"


def load() -> World:
    with open(WORLD) as file:
        return json.load(file)


def save(world: World) -> None:
    with open(WORLD, "w") as file:
        json.dump(world, file, indent=1)


def split(args: list[str]) -> tuple[list[str], dict[str, str]]:
    positional, options = [], {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            options[name] = value
        else:
            positional.append(arg)
    return positional, options


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def pulumi(args: list[str], world: World) -> int:
    words, options = split(args)
    stacks: World = world.setdefault("stacks", {})
    selected = world.get("selected_stack")
    if words and words[0] in world.get("refuse", []):
        return fail("error: confirmation declined, not proceeding with the update", 255)
    if words == ["version"]:
        print(world.get("pulumi_version", "v3.272.0"))
        return 0
    if words == ["whoami"]:
        if not world.get("backend"):
            return fail("error: PULUMI_ACCESS_TOKEN must be set for login during "
                        "non-interactive CLI sessions", 255)
        print(f"User: operator\nOrganizations: \nBackend URL: {world['backend']}")
        return 0
    if words[:1] == ["login"]:
        world["backend"] = words[1]
        save(world)
        print(f"Logged in to {words[1]}")
        return 0
    if words == ["stack"] and "show-name" in options:
        if selected not in stacks:
            return fail("error: no stack selected; please use `pulumi stack select` or "
                        "`pulumi stack init`", 255)
        print(selected)
        return 0
    if words[:2] == ["stack", "select"]:
        if words[2] not in stacks:
            return fail(f"error: no stack named '{words[2]}' found", 255)
        world["selected_stack"] = words[2]
        save(world)
        return 0
    if words[:2] == ["stack", "init"]:
        if words[2] in stacks:
            return fail(f"error: stack '{words[2]}' already exists", 255)
        stacks[words[2]] = {"secrets_provider": options.get("secrets-provider", "passphrase"),
                            "config": {}, "resources": []}
        world["selected_stack"] = words[2]
        save(world)
        print(f"Created stack '{words[2]}'")
        return 0
    if selected not in stacks:
        return fail("error: no stack selected; please use `pulumi stack select`", 255)
    stack = stacks[selected]
    if words == ["config"] and "json" in options:
        shown = {key: ({"secret": True} if isinstance(value, dict) else
                       {"value": value, "secret": False})
                 for key, value in stack["config"].items()}
        print(json.dumps(shown, indent=4))
        return 0
    if words[:2] == ["config", "set"]:
        stack["config"][words[2]] = words[3]
        save(world)
        return 0
    if words == ["stack", "export"]:
        print(json.dumps({"version": 3, "deployment": {"resources": stack["resources"]}}))
        return 0
    if words in (["up"], ["preview"]) and "target" not in options:
        print(f"{'Updating' if words == ['up'] else 'Previewing update'} ({selected}): done")
        return 0
    if words == ["up"] and "target" in options:
        for resource in stack["resources"]:
            if resource["urn"] == options["target"]:
                protection = stack["config"].get("gitops:deletionProtection", "true")
                resource["inputs"]["deletionProtection"] = protection == "true"
        save(world)
        print(f"Updating ({selected}): 1 changed")
        return 0
    if words == ["destroy"]:
        blocked = [r["urn"] for r in stack["resources"] if r.get("type") ==
                   "gcp:container/cluster:Cluster" and r["inputs"].get("deletionProtection")]
        if blocked:
            return fail("error: Cannot destroy cluster because deletion_protection is set to "
                        "true. Set it to false to proceed with cluster deletion.", 255)
        keep = "exclude-protected" in options
        stack["resources"] = [r for r in stack["resources"] if keep and r.get("protect")]
        save(world)
        print(f"Destroying ({selected}): done")
        return 0
    return fail(f"fake pulumi: unsupported {args}", 99)


def gcloud(args: list[str], world: World) -> int:
    words, options = split(args)
    if words == ["auth", "list"]:
        print(world.get("account", ""))
        return 0
    if words == ["auth", "application-default", "print-access-token"]:
        if not world.get("adc"):
            return fail("ERROR: (gcloud.auth.application-default.print-access-token) Your "
                        "default credentials were not found.")
        print(FAKE_ADC_TOKEN)
        return 0
    if words == ["services", "list"]:
        print("\n".join(world.setdefault("services", [])))
        return 0
    if words[:2] == ["services", "enable"]:
        world.setdefault("services", []).extend(words[2:])
        save(world)
        return 0
    buckets: World = world.setdefault("buckets", {})
    if words[:3] == ["storage", "buckets", "describe"]:
        name = words[3]
        if name in world.get("foreign_buckets", []):
            return fail(f"ERROR: (gcloud.storage.buckets.describe) HTTPError 403: "
                        f"operator@example.com does not have storage.buckets.get access to "
                        f"the Google Cloud Storage bucket. Permission denied on {name}")
        if name not in buckets:
            return fail(f"ERROR: (gcloud.storage.buckets.describe) {name} not found: 404.")
        print(json.dumps({"name": name.removeprefix("gs://"), **buckets[name]}))
        return 0
    if words[:3] == ["storage", "buckets", "create"]:
        buckets[words[3]] = {"location": options["location"], "versioning_enabled": False}
        save(world)
        return 0
    if words[:3] == ["storage", "buckets", "update"] and "versioning" in options:
        buckets[words[3]]["versioning_enabled"] = True
        save(world)
        return 0
    kms: World = world.setdefault("kms", {})
    if words[:2] in (["kms", "keyrings"], ["kms", "keys"]):
        ring = words[3] if words[1] == "keyrings" else options["keyring"]
        name = f"{options['location']}/{ring}"
        if words[1] == "keys":
            name += f"/{words[3]}"
        if words[2] == "describe":
            if name not in kms:
                return fail(f"ERROR: (gcloud.kms.{words[1]}.describe) NOT_FOUND: {name} not "
                            "found.")
            print(kms[name])
            return 0
        if words[2] == "create":
            kms[name] = "ENABLED" if words[1] == "keys" else name
            save(world)
            return 0
    if words[:3] == ["secrets", "versions", "list"]:
        if words[3] not in world.get("secrets", []):
            return fail(f"ERROR: (gcloud.secrets.versions.list) NOT_FOUND: Secret [projects/"
                        f"{options.get('project')}/secrets/{words[3]}] not found or has no "
                        "versions.")
        for version in range(world.get("secret_versions", {}).get(words[3], 0), 0, -1):
            print(f"projects/{options.get('project')}/secrets/{words[3]}/versions/{version}")
        return 0
    if words[:2] == ["secrets", "describe"]:
        if words[2] not in world.get("secrets", []):
            return fail(f"ERROR: (gcloud.secrets.describe) NOT_FOUND: Secret [projects/"
                        f"{options.get('project')}/secrets/{words[2]}] not found or has no "
                        "versions.")
        print(f"projects/{options.get('project')}/secrets/{words[2]}")
        return 0
    return fail(f"fake gcloud: unsupported {args}", 99)


def git(args: list[str], world: World) -> int:
    words, _ = split(args)
    if words[:1] == ["config"]:
        helper = world.get("git_helper")
        if not helper:
            return 1
        print(helper)
        return 0
    if words[:1] == ["ls-remote"]:
        url = words[1]
        repos: dict[str, list[str]] = world.get("github_repos", {})
        if url not in repos:
            return fail(f"remote: Repository not found.\nfatal: repository '{url}' not found",
                        128)
        for branch in repos[url]:
            print(f"{'1' * 40}\trefs/heads/{branch}")
        return 0
    return fail(f"fake git: unsupported {args}", 99)


def main() -> int:
    program = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
        log.write(json.dumps([program, *args]) + "\n")
    if program == "gke-gcloud-auth-plugin":
        return 0
    world = load()
    return {"pulumi": pulumi, "gcloud": gcloud, "git": git}[program](args, world)


if __name__ == "__main__":
    sys.exit(main())

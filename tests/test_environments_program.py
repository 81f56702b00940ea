"""Delivery environments in the config model and the Pulumi program (under mocks), the access
model per environment, and the policy that production needs approval."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from typing import ClassVar

import pytest
from google.cloud.devtools.cloudbuild_v1 import BuildTrigger, GitFileSource

from access_model import (
    GOOGLE_GRANT,
    KubeOperation,
    Operation,
    allowed,
    grants,
    missing,
    operations,
    permissions_of,
    rbac_allows,
)
from components.config import ConfigError, parse_config
from components.environments import branch_name_problem
from conftest import ROOT
from pulumi_harness import (
    APPROVERS,
    ENVIRONMENT_CONFIGS,
    TRIGGER,
    Graph,
    base_config,
    program_graph,
)

sys.path.insert(0, str(ROOT / "policy"))
import gitops_policies as rules

KIND = "three-environments"
PROJECT = "projects/acme-delivery"
CLUSTERS = {"staging": "gitops", "qa": "gitops-qa", "production": "gitops-prod"}
NAMESPACES = {"staging": ["hello-staging", "shop-staging"], "qa": ["hello", "shop"],
              "production": ["hello", "shop"]}
IDENTITY = {env: f"gitops-delivery-{env}@acme-delivery.iam.gserviceaccount.com"
            for env in CLUSTERS}
RECONCILER = {env: f"gitops-reconcile-{env}@acme-delivery.iam.gserviceaccount.com"
              for env in CLUSTERS}
BOTH = {"delivery": IDENTITY, "reconcile": RECONCILER}
APPROVER_ROLE = "roles/cloudbuild.builds.approver"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return program_graph(KIND)


def config():  # type: ignore[no-untyped-def]
    return parse_config(ENVIRONMENT_CONFIGS[KIND])


def cluster_path(name: str) -> str:
    return f"{PROJECT}/locations/europe-west1/clusters/{name}"


class TestConfigModel:
    """Without gitops:environments the stack keeps today's names; configured environments
    derive theirs by one rule, and every bad value is reported in one message."""

    def test_default_is_one_environment_with_todays_names(self) -> None:
        [env] = parse_config(base_config()).environments
        assert (env.candidate_branch, env.production_branch) == ("candidate", "production")
        assert (env.name, env.trigger_name("hello"), env.identity, env.account_id,
                env.namespace("hello"), env.approval_required) == (
            "production", "deliver-hello", "delivery", "gitops-delivery", "hello", False)

    def test_configured_environments_derive_their_names(self) -> None:
        staging, qa, production = config().environments
        assert (staging.candidate_branch, staging.production_branch) == (
            "staging-candidate", "staging-production")
        assert staging.trigger_name("shop") == "deliver-shop-staging"
        assert (staging.namespace("hello"), staging.cluster_name) == ("hello-staging", "gitops")
        assert (qa.cluster_name, production.cluster_name) == ("gitops-qa", "gitops-prod")
        assert production.approvers == tuple(APPROVERS) and production.approval_required
        assert (staging.rollout_timeout, qa.rollout_timeout, production.rollout_timeout) == (
            "120s", "300s", "600s")

    def test_every_problem_in_one_message(self) -> None:
        bad = [{"name": "Staging"},
               {"name": "qa", "candidateBranch": "qa..attempts", "approval": True},
               {"name": "prod", "approvers": ["lead@acme.example"], "colour": "blue"},
               {"name": "x1"}, {"name": "x2", "productionBranch": "x1-candidate/next"}]
        with pytest.raises(ConfigError) as error:
            parse_config(base_config(**{"gitops:environments": bad}))
        message = str(error.value)
        for fragment in ["[0].name 'Staging' is not an environment name",
                         "[1].candidateBranch 'qa..attempts' is not a valid git branch name",
                         "[1]: approval is required but nobody may approve",
                         "[2].approvers must be a list of IAM members",
                         "[2].colour is not an environment setting",
                         "'x1-candidate' (x1) cannot exist beside 'x1-candidate/next' (x2)",
                         "both deploy hello to namespace hello of cluster gitops",
                         "--path 'gitops:environments[4].namespaceSuffix' -x2"]:
            assert fragment in message, message
        assert message.startswith("7 stack config problems")

    @pytest.mark.parametrize("override,fragment", [
        ([{"name": "a"}, {"name": "a", "namespaceSuffix": "-b"}], "names environment 'a' twice"),
        ([{"name": "a", "candidateBranch": "b-candidate"}, {"name": "b", "cluster": "c2"}],
         "branch 'b-candidate' is used twice"),
        ([{"name": "a", "approvers": ["user:x@acme.example"]}], "approval is off"),
        ([{"name": "a", "rolloutTimeout": "30000s"}], "at most 21450s"),
        ([{"name": "a", "productionBranch": "gitops-environments"}], "is reserved"),
        ([{"name": "averyveryverylongname"}], "at most 13 characters"),
        # 14 characters: gitops-reconcile-NAME would be 31, one more than an account id holds
        ([{"name": "fourteen-chars"}], "gitops-reconcile-NAME are service account ids"),
        ([], "must be a non-empty list"),
    ])
    def test_bad_environments(self, override: list, fragment: str) -> None:
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("*", r"\*")):
            parse_config(base_config(**{"gitops:environments": override}))

    def test_events_topic_is_not_a_tick_topic(self) -> None:
        for environments, topic in (([{"name": "a", "cluster": "c2"}, {"name": "events"}],
                                     "gitops-reconcile-events"), (None, "gitops-reconcile")):
            with pytest.raises(ConfigError, match=f"'{topic}' is the name of a reconcile tick"):
                parse_config(base_config(**{"gitops:environments": environments,
                                            "gitops:eventsTopic": topic}))

    def test_branch_rule_agrees_with_git(self) -> None:
        names = ["staging-candidate", "candidate", "rel/1.2-candidate", "a..b", "-x", "x.lock",
                 "x/.hidden", "x/", "x//y", "x y", "x~1", "x^", "x:y", "x?", "x*", "x[1]",
                 "x\\y", "x@{1}", "@", "x.", "/x", "a/b.lock/c", "ü-candidate", "HEAD", "x\x7f"]
        stricter = {"@"}  # git takes it as a branch; it also means HEAD in revisions: refused
        for name in names:
            git = subprocess.run(["git", "check-ref-format", "--branch", name],
                                 capture_output=True, cwd=ROOT).returncode == 0
            ours = branch_name_problem(name) is None
            assert ours == (git and name not in stricter), name


class TestThreeEnvironments:
    """A three-environment stack: per environment and app a delivery trigger, an identity, a
    cluster or namespaces, and approval where configured; releases chain in order."""

    def test_delivery_triggers_per_environment(self, graph: Graph) -> None:
        triggers = {t.name: t for t in graph.of_type(TRIGGER)}
        order = list(CLUSTERS)
        for app in ("hello", "shop"):
            ci = triggers[f"ci-{app}"].inputs["substitutions"]
            assert ci["_CANDIDATE_BRANCH"] == "staging-candidate"
            # The app pipeline renders each environment's overlay: it is told them, in order.
            assert ci["_ENVIRONMENTS"] == "staging qa production"
            for index, env in enumerate(order):
                trigger = triggers[f"deliver-{app}-{env}"]
                subs = trigger.inputs["substitutions"]
                source = trigger.inputs["repositoryEventConfig"]["push"]["branch"]
                assert source == f"^{env}-candidate$"
                assert trigger.inputs["serviceAccount"] == \
                    f"projects/acme-delivery/serviceAccounts/{IDENTITY[env]}"
                following = order[index + 1] if index + 1 < len(order) else ""
                assert (subs["_ENVIRONMENT"], subs["_CANDIDATE_BRANCH"],
                        subs["_PRODUCTION_BRANCH"], subs["_NEXT_ENVIRONMENT"],
                        subs["_NEXT_CANDIDATE"], subs["_CLUSTER"]) == (
                    env, f"{env}-candidate", f"{env}-production", following,
                    f"{following}-candidate" if following else "", CLUSTERS[env])
                assert subs["_NAMESPACE"] == (f"{app}-staging" if env == "staging" else app)
                gated = env == "production"
                assert trigger.inputs.get("approvalConfig") == (
                    {"approvalRequired": True} if gated else None)
                assert subs["_APPROVAL"] == ("true" if gated else "false")
        assert not [t for t in triggers if t in ("deliver-hello", "deliver-shop")]

    def test_rollout_timeout_per_environment(self, graph: Graph) -> None:
        for env, rollout in (("staging", "120s"), ("qa", "300s"), ("production", "600s")):
            assert graph.named(f"deliver-hello-{env}").inputs["substitutions"][
                "_ROLLOUT_TIMEOUT"] == rollout

    def test_clusters_with_their_own_ranges_and_nodes(self, graph: Graph) -> None:
        clusters = {c.inputs["name"]: c for c in graph.of_type("gcp:container/cluster:Cluster")}
        assert sorted(clusters) == sorted(CLUSTERS.values())
        subnet = graph.one("gcp:compute/subnetwork:Subnetwork")
        ranges = {r["rangeName"]: r["ipCidrRange"] for r in subnet.inputs["secondaryIpRanges"]}
        assert len(set(ranges.values())) == len(ranges) == 6
        for name, cluster in clusters.items():
            policy = cluster.inputs["ipAllocationPolicy"]
            pods, services = (policy["clusterSecondaryRangeName"],
                              policy["servicesSecondaryRangeName"])
            assert {pods, services} <= set(ranges)
            node_account = cluster.inputs["clusterAutoscaling"]["autoProvisioningDefaults"][
                "serviceAccount"]
            assert node_account.startswith(f"{name}-nodes@")
        assert len({c.inputs["ipAllocationPolicy"]["clusterSecondaryRangeName"]
                    for c in clusters.values()}) == 3

    def test_namespaces_bound_to_their_environments_identities(self, graph: Graph) -> None:
        from access_model import cluster_of

        found: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for binding in graph.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"):
            [subject] = binding.inputs["subjects"]
            [owner] = [(builds, env) for builds, emails in BOTH.items()
                       for env, email in emails.items() if email == subject["name"]]
            found.setdefault(owner, set()).add((cluster_of(graph, binding),
                                                binding.inputs["metadata"]["namespace"]))
        assert found == {(builds, env): {(CLUSTERS[env], ns) for ns in NAMESPACES[env]}
                         for builds in BOTH for env in CLUSTERS}

    def test_a_reconcile_trigger_and_schedule_per_environment(self, graph: Graph) -> None:
        """Each environment's reconcile build runs at its production branch, on its cluster,
        as its own identity, when a tick reaches its own topic; its job publishes those ticks
        and no identity of ours may start a build."""
        triggers = {t.name: t for t in graph.of_type(TRIGGER)}
        jobs = {j.inputs["name"]: j for j in graph.of_type("gcp:cloudscheduler/job:Job")}
        topics = {t.inputs["name"]: t for t in graph.of_type("gcp:pubsub/topic:Topic")}
        assert sorted(jobs) == sorted(f"reconcile-{env}" for env in CLUSTERS)
        for env, cluster in CLUSTERS.items():
            trigger = triggers[f"reconcile-{env}"]
            subs = trigger.inputs["substitutions"]
            topic = f"{PROJECT}/topics/gitops-reconcile-{env}"
            assert topics[f"gitops-reconcile-{env}"].inputs["project"] == "acme-delivery"
            assert trigger.inputs["pubsubConfig"] == {"topic": topic}
            assert trigger.inputs["serviceAccount"] == \
                f"projects/acme-delivery/serviceAccounts/{RECONCILER[env]}"
            assert trigger.inputs["sourceToBuild"]["ref"] == f"refs/heads/{env}-production"
            assert (subs["_ENVIRONMENT"], subs["_CLUSTER"], subs["_HEAL_APPS"]) == (
                env, cluster, "shop")
            # Nothing a publisher writes reaches the build.
            assert not [v for v in subs.values() if "$(body" in str(v)]
            assert "filter" not in trigger.inputs
            # The trigger as Cloud Build's API message (its inline build is checked with the
            # pipelines): unknown fields or enum values fail to parse.
            api = BuildTrigger.from_json(json.dumps({key: trigger.inputs[key] for key in (
                "name", "serviceAccount", "pubsubConfig", "sourceToBuild", "substitutions")}))
            assert (api.pubsub_config.topic, api.source_to_build.repo_type) == (
                topic, GitFileSource.RepoType.GITHUB)
            job = jobs[f"reconcile-{env}"]
            assert "httpTarget" not in job.inputs
            assert job.inputs["pubsubTarget"]["topicName"] == topic
            assert json.loads(base64.b64decode(job.inputs["pubsubTarget"]["data"]))[
                "environment"] == env
        assert graph.outputs["reconcile_topics"] == {
            env: f"{PROJECT}/topics/gitops-reconcile-{env}" for env in CLUSTERS}
        assert graph.outputs["reconcile_trigger_ids"] == {
            env: triggers[f"reconcile-{env}"].outputs["triggerId"] for env in CLUSTERS}
        assert graph.outputs["reconcile_trigger_id"] == \
            graph.outputs["reconcile_trigger_ids"]["production"]
        assert [(e["reconcile_trigger"], e["reconcile_service_account"], e["reconcile_topic"])
                for e in graph.outputs["environments"]] == [
            (f"reconcile-{env}", RECONCILER[env], f"gitops-reconcile-{env}") for env in CLUSTERS]
        starters = {g.member for g in grants(graph) if not g.name.startswith(GOOGLE_GRANT)
                    and "cloudbuild.builds.create" in permissions_of(g.role)}
        assert starters == set()
        assert not graph.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
        assert not [a for a in graph.outputs["service_accounts"].values()
                    if a.startswith("gitops-scheduler@")]
        assert "gitops-reconcile@acme-delivery.iam.gserviceaccount.com" not in \
            graph.outputs["service_accounts"].values()
        # The last environment's reconcile RBAC had no prefix before every environment had
        # drift: aliased, so an existing stack updates it instead of creating a second one.
        rbac = {r.name: r.aliases for r in graph.resources if "reconciler-" in r.name}
        assert rbac == {f"{env}-reconciler-{app}": (
            [f"reconciler-{app}"] if env == "production" else [])
            for env in CLUSTERS for app in ("hello", "shop")}

    def test_approvers_get_the_approver_role_and_nothing_more(self, graph: Graph) -> None:
        granted = grants(graph)
        for member in APPROVERS:
            assert [(g.role, g.resource) for g in granted if g.member == member] == [
                (APPROVER_ROLE, PROJECT)]
        assert {g.member for g in granted if g.role == APPROVER_ROLE} == set(APPROVERS)
        readers = {g.member for g in granted if g.role == "roles/cloudbuild.builds.viewer"}
        assert f"serviceAccount:{IDENTITY['production']}" in readers
        assert not {f"serviceAccount:{IDENTITY[e]}" for e in ("staging", "qa")} & readers

    def test_real_cloud_rules_hold_for_every_environment(self, graph: Graph) -> None:
        from test_program import API_OF, SERVICE

        services = {s.inputs["service"].split(".")[0]: s.urn for s in graph.of_type(SERVICE)}
        for resource in graph.resources:
            api = API_OF.get(resource.typ)
            assert api is None or services[api] in graph.depends_on(resource), resource.name
        act_as = graph.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        sleep = graph.named("grants-propagated")
        # The steps image's grant has its own wait.
        every_grant = [r for r in graph.resources if "member" in r.inputs and "role" in r.inputs
                       and r.name != "builder-reads-sources"]
        assert {g.urn for g in every_grant} <= graph.depends_on(sleep)
        for trigger in graph.of_type(TRIGGER):
            assert trigger.inputs["build" if "build" in trigger.inputs else "filename"]
            if "build" in trigger.inputs:
                assert trigger.inputs["build"]["options"]["logging"] == "CLOUD_LOGGING_ONLY"
            email = trigger.inputs["serviceAccount"].rsplit("/", 1)[-1]
            assert "user:platform-admin@acme.example" in [
                g.inputs["member"] for g in act_as if g.inputs["serviceAccountId"].endswith(email)]
            assert sleep.urn in graph.depends_on(trigger), trigger.name

    def test_env_repo_records_the_environments(self, graph: Graph) -> None:
        command = graph.one("command:local:Command", "init-env-branches")
        create = command.inputs["create"]
        recorded = json.loads(create.split("--environments ", 1)[1].split(" --repo")[0]
                              .strip("'"))
        assert [(e["name"], e["candidate"], e["production"], e["approval"]) for e in recorded] \
            == [(e, f"{e}-candidate", f"{e}-production", e == "production") for e in CLUSTERS]
        assert graph.outputs["environments"][2]["approvers"] == APPROVERS
        assert graph.outputs["cluster_name"] == "gitops-prod"


class TestEnvironmentIsolation:
    """Each environment's identity has what its deliveries need, and cannot reach another
    environment's cluster or namespaces (derived from the graph, expanded with role data)."""

    def test_every_operation_is_granted(self, graph: Graph) -> None:
        derived = operations(graph, config())
        assert missing(derived.operations, grants(graph)) == []
        assert derived.kube and all(rbac_allows(graph, k) for k in derived.kube)
        clusters_reached = {op.resource for op in derived.operations
                            if op.permission == "container.clusters.get"
                            and "trigger deliver-" in op.why}
        assert clusters_reached == {cluster_path(c) for c in CLUSTERS.values()}
        for env, cluster in CLUSTERS.items():  # each reconcile build, its own cluster only
            why = f"trigger reconcile-{env}"
            assert {op.resource for op in derived.operations
                    if op.permission == "container.clusters.get" and why in op.why} == \
                {cluster_path(cluster)}
            assert {(k.cluster, k.namespace) for k in derived.kube if why in k.why} == \
                {(cluster, ns) for ns in NAMESPACES[env]}
        assert Operation(f"serviceAccount:{IDENTITY['production']}", "cloudbuild.builds.get",
                         PROJECT, "trigger deliver-hello-production: deploy.py calls get_build") \
            in derived.operations

    @pytest.mark.parametrize("builds", list(BOTH))
    def test_no_identity_reaches_another_environments_cluster(self, graph: Graph,
                                                              builds: str) -> None:
        granted = grants(graph)
        for env, email in BOTH[builds].items():
            for other, cluster in CLUSTERS.items():
                op = Operation(f"serviceAccount:{email}", "container.clusters.get",
                               cluster_path(cluster), "reach an environment's cluster")
                assert allowed(op, granted) == (cluster == CLUSTERS[env]), (env, other)

    @pytest.mark.parametrize("builds", list(BOTH))
    def test_no_identity_touches_another_environments_namespaces(self, graph: Graph,
                                                                 builds: str) -> None:
        for env, email in BOTH[builds].items():
            for other in CLUSTERS:
                if other == env:
                    continue
                for namespace in NAMESPACES[other]:
                    for verb in ("create", "patch", "delete", "get", "list"):
                        op = KubeOperation(email, namespace, "apps", "deployments", verb,
                                           "touch another environment", CLUSTERS[other])
                        assert not rbac_allows(graph, op), (env, other, namespace, verb)

    @pytest.mark.parametrize("builds", list(BOTH))
    def test_the_cluster_condition_is_what_keeps_staging_out(self, graph: Graph,
                                                             builds: str) -> None:
        """Without its IAM condition, staging's cluster grant would cover production's
        cluster: the check above can fail."""
        changed = copy.deepcopy(graph)
        changed.named(f"{builds}-staging-container-clusterViewer").inputs.pop("condition")
        op = Operation(f"serviceAccount:{BOTH[builds]['staging']}", "container.clusters.get",
                       cluster_path("gitops-prod"), "reach production")
        assert allowed(op, grants(changed))

    def test_heal_rights_only_for_heal_apps_in_its_own_environment(self, graph: Graph) -> None:
        """shop may self-heal, hello may not: each reconcile identity may delete and take the
        Lease in its own environment's shop namespace only."""
        for env, email in RECONCILER.items():
            for other in CLUSTERS:
                for app, namespace in zip(("hello", "shop"), NAMESPACES[other], strict=True):
                    heals = other == env and app == "shop"
                    for group, resource, verb in (("apps", "deployments", "delete"),
                                                  ("coordination.k8s.io", "leases", "create")):
                        op = KubeOperation(email, namespace, group, resource, verb, "heal",
                                           CLUSTERS[other])
                        assert rbac_allows(graph, op) == heals, (env, other, app, verb)

    def test_staging_reconcile_without_its_role_fails(self, graph: Graph) -> None:
        """Removing the staging reconcile identity's binding denies exactly its comparison
        in staging's namespaces; no other identity's operations depend on it."""
        changed = copy.deepcopy(graph)
        changed.resources = [r for r in changed.resources
                             if r.name != "staging-reconciler-hello"
                             or not r.typ.endswith("RoleBinding")]
        denied = {(k.user, k.namespace, k.verb) for k in operations(changed, config()).kube
                  if not rbac_allows(changed, k)}
        assert denied == {(RECONCILER["staging"], "hello-staging", verb)
                          for verb in ("get", "list", "patch", "create")}

    def test_every_grant_is_needed(self, graph: Graph) -> None:
        from test_access_model import KEPT_WITHOUT_AN_OPERATION

        ops = operations(graph, config()).operations
        granted = grants(graph)
        unneeded = {g.name for g in granted
                    if not missing(ops, [other for other in granted if other != g])}
        approvers = {g.name for g in granted if g.role == APPROVER_ROLE}  # people, not builds
        assert unneeded - approvers <= KEPT_WITHOUT_AN_OPERATION


class TestProductionNeedsApproval:
    """The policy pack refuses an environment named production without an approval gate."""

    TRIGGER_PROPS: ClassVar[dict] = {
        "serviceAccount": "projects/acme/serviceAccounts/d@acme.iam.gserviceaccount.com",
        "build": {"steps": [], "options": {"logging": "CLOUD_LOGGING_ONLY"}}}

    def check(self, tags: list[str], approval: dict | None) -> list[str]:
        props = {**self.TRIGGER_PROPS, "tags": tags,
                 **({"approvalConfig": approval} if approval is not None else {})}
        return [m for name, m in rules.violations(TRIGGER, "deliver-hello-production", props,
                                                  "dev") if name == "production-needs-approval"]

    def test_rule(self) -> None:
        assert len(self.check(["environment-production"], None)) == 1
        assert len(self.check(["environment-production"], {"approvalRequired": False})) == 1
        assert self.check(["environment-production"], {"approvalRequired": True}) == []
        assert self.check(["environment-staging"], None) == []
        assert self.check([], None) == []  # the implicit environment of a stack without any

    def test_the_program_tags_configured_environments_only(self, graph: Graph) -> None:
        tags = {t.name: t.inputs.get("tags") for t in graph.of_type(TRIGGER)}
        assert tags["deliver-hello-production"] == ["environment-production"]
        assert tags["deliver-shop-staging"] == ["environment-staging"]
        assert tags["ci-hello"] is None and tags["preview"] is None
        # A stack without environments tags nothing: test_policy runs the default configs as
        # a production stack through every rule, this one included.

    def test_three_environment_stack_passes_every_rule(self, graph: Graph) -> None:
        found = [(r.name, m) for r in graph.resources
                 for _, m in rules.violations(r.typ, r.name, r.inputs, "production")]
        assert found == []

"""Promotion between environments with real git repositories and the scripted cluster: a
success in staging publishes the release to production's candidate, and every guarantee of one
environment holds in each (no lost update, stale builds skipped, revert, freeze, approval)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud.devtools import cloudbuild_v1
from google.cloud.devtools.cloudbuild_v1 import Build
from google.cloud.devtools.cloudbuild_v1 import BuildApproval as Approval

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    SCRIPTS,
    EnvRepoOnDisk,
    ScriptedCluster,
    app_tree_hash,
    assert_bad_input,
    cli,
    git,
    image_ref,
    write_manifests,
)
from gitops.approval import CloudBuildApprovals
from gitops.branches import init_branches
from gitops.build_status import CloudBuildStatus
from gitops.deploy import DeliveryRequest, DeployResult, Outcome, deliver
from gitops.environments import ENVIRONMENTS_BRANCH, Environment
from gitops.errors import OperationFailed
from gitops.freeze import set_freeze
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests
from gitops.status import BuildsAt, render_environments, status_by_environment

STAGING = Environment("staging", "staging-candidate", "staging-production", "gitops",
                      "-staging")
PRODUCTION = Environment("production", "production-candidate", "production-production",
                         "gitops-prod", "", approval=True)
CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}
APPROVER = "cto@acme.example"


@pytest.fixture
def chain(env_repo: EnvRepoOnDisk) -> EnvRepoOnDisk:
    init_branches(env_repo.url, environments=[STAGING, PRODUCTION])
    return env_repo


def publish(env: EnvRepoOnDisk, tmp_path: Path, app: str, digest: str, build: str = "ci-1",
            release_for: tuple[tuple[str, Path], ...] = ()) -> str:
    image = image_ref(app, digest)
    folder = write_manifests(tmp_path / f"m-{app}-{digest[7:15]}-{build}", app, image)
    return publish_manifests(PublishRequest(
        repo=env.url, app=app, manifests=folder, branch=STAGING.candidate, images=(image,),
        source_repo=f"https://github.com/acme/{app}", source_commit="1" * 40, build_id=build,
        release_for=release_for)).commit


PDB = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: hello}
spec: {minAvailable: 2}
"""


class TestEveryEnvironmentsRendering:
    """`publish.py --environments` commits one release for every environment at once: the
    first environment's rendering in apps/APP/, each later one's that differs in
    releases/ENV/APP/, and nothing of an older release's renderings; bad folders change
    nothing."""

    def rendered(self, tmp_path: Path, name: str, production_extra: dict[str, str]) -> Path:
        """A folder as `render.py --environments "staging production"` writes it."""
        image = image_ref("hello", DIGEST_A)
        write_manifests(tmp_path / name / "staging", "hello", image)
        write_manifests(tmp_path / name / "production", "hello", image, production_extra)
        return tmp_path / name

    def publish(self, env_repo: EnvRepoOnDisk, folder: Path, *extra: str) -> str:
        """To `candidate`, the first environment's candidate branch here."""
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(folder), "--image",
                     image_ref("hello", DIGEST_A), *extra)
        assert result.code == 0, result.stderr
        return result.last_line

    def test_one_commit_per_release_without_stale_renderings(self, env_repo: EnvRepoOnDisk,
                                                              tmp_path: Path) -> None:
        first = self.publish(env_repo, self.rendered(tmp_path, "r1", {"pdb.yaml": PDB}),
                             "--environments", "staging production")
        assert env_repo.files(first, "apps/hello") == {
            "apps/hello/deployment.yaml":
                (tmp_path / "r1/staging/deployment.yaml").read_text().rstrip("\n")}
        assert set(env_repo.files(first, "releases")) == {
            "releases/production/hello/deployment.yaml", "releases/production/hello/pdb.yaml"}
        # The next release renders the same for both: only apps/hello/, the old rendering gone.
        second = self.publish(env_repo, self.rendered(tmp_path, "r2", {}),
                              "--environments", "staging production")
        assert git("rev-list", "--count", f"{first}..{second}", cwd=env_repo.path) == "1"
        assert env_repo.files(second, "releases") == {}

    def test_bad_folders_change_nothing(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        image = image_ref("hello", DIGEST_A)
        before = env_repo.snapshot()
        for index, (layout, environments, extra, fragment) in enumerate([
            (("staging",), "staging production", (), "no rendering for environment "
                                                     "'production'"),
            (("staging", "production", "qa"), "staging production", (), "qa' is not the "
                                                                        "rendering"),
            (("staging", "production"), "staging Production", (), "'Production' is not a DNS "
                                                                  "label"),
            (("staging", "production"), "staging staging", (), "names an environment twice"),
            (("staging", "production"), "staging production",
             ("--release-for", f"production={tmp_path}"), "not both"),
        ]):
            for name in layout:
                write_manifests(tmp_path / f"out{index}" / name, "hello", image)
            assert_bad_input(cli("publish", "--repo", env_repo.url, "--app", "hello",
                                 "--manifests", str(tmp_path / f"out{index}"), "--image", image,
                                 "--environments", environments, *extra), fragment)
        assert env_repo.snapshot() == before


class FakeApprovals:
    def __init__(self, account: str = APPROVER) -> None:
        self.account, self.asked = account, []

    def approver(self, project: str, region: str, build_id: str) -> str:
        self.asked.append((project, region, build_id))
        return self.account


def deliver_in(env: EnvRepoOnDisk, environment: Environment, commit: str,
               cluster: ScriptedCluster | None = None, build: str = "cd-1",
               following: Environment | None = None, app: str = "hello",
               approvals: FakeApprovals | None = None) -> tuple[DeployResult, ScriptedCluster]:
    used = cluster or ScriptedCluster("kc")
    request = DeliveryRequest(
        repo=env.url, app=app, commit=commit, build_id=build, source=environment.candidate,
        target=environment.production, namespace=environment.namespace(app),
        environment=environment.name,
        next_environment=following.name if following else None,
        next_candidate=following.candidate if following else None,
        region="europe-west1", record_approval=environment.approval, **CLUSTER)
    result = deliver(request, cluster_factory=lambda kubeconfig: used, clock=used.clock,
                     approvals=approvals or FakeApprovals())
    return result, used


def staging(env: EnvRepoOnDisk, commit: str, **kwargs: object) -> DeployResult:
    return deliver_in(env, STAGING, commit, following=PRODUCTION, **kwargs)[0]  # type: ignore


class TestChain:
    """A staging success publishes the same release to production's candidate, with trailers
    naming where it came from; production records who approved it."""

    def test_release_travels_and_says_where_from(self, chain: EnvRepoOnDisk,
                                                 tmp_path: Path) -> None:
        """CI publishes every environment's rendering of one digest in one commit (production's
        with a PodDisruptionBudget); staging applies its own, production's candidate gets
        production's, and says where it came from."""
        staging(chain, publish(chain, tmp_path, "shop", DIGEST_C), app="shop")
        prod_folder = write_manifests(tmp_path / "prod", "hello", image_ref("hello", DIGEST_A),
                                      {"pdb.yaml": PDB})
        commit = publish(chain, tmp_path, "hello", DIGEST_A,
                         release_for=(("production", prod_folder),))
        assert "releases/production/hello/pdb.yaml" in chain.files(commit)
        result, cluster = deliver_in(chain, STAGING, commit, following=PRODUCTION)
        assert result.outcome is Outcome.PROMOTED
        assert [c[2] for c in cluster.calls if c[1] == "apply"] == ["--namespace=hello-staging"]
        assert set(cluster.applied[0]) == {"deployment.yaml"}  # staging's rendering
        staged = chain.tip(STAGING.production)
        assert result.commit == staged and result.next_commit == chain.tip(PRODUCTION.candidate)
        message = chain.message(result.next_commit or "")
        assert chain.subject(result.next_commit or "") == \
            f"Deploy hello: hello@{DIGEST_A[:19]} from staging"
        for trailer in ("App: hello", f"Image: {image_ref('hello', DIGEST_A)}",
                        "Source-Commit: " + "1" * 40, "Build-Id: cd-1",
                        "Promoted-From-Environment: staging",
                        f"Promoted-From-Commit: {staged}"):
            assert trailer in message.splitlines()
        # Production's rendering of the release, and only it: shop (published before) stays.
        assert chain.files(PRODUCTION.candidate, "apps") == {
            **{f"apps/hello/{name}": text for name, text in
               chain.files(commit, "releases/production/hello").items()
               for name in [name.rsplit("/", 1)[1]]},
            **chain.files(STAGING.production, "apps/shop")}
        assert not chain.files(PRODUCTION.candidate, "releases")
        rerun = staging(chain, commit, build="cd-again")  # already there: no commit anywhere
        assert (rerun.commit, rerun.next_commit) == (staged, result.next_commit)

        approvals = FakeApprovals()
        promoted, cluster = deliver_in(chain, PRODUCTION, result.next_commit or "",
                                       build="cd-2", approvals=approvals)
        assert approvals.asked == [("acme-delivery", "europe-west1", "cd-2")]
        assert [c[2] for c in cluster.calls if c[1] == "apply"] == ["--namespace=hello"]
        assert promoted.next_commit is None  # the last environment
        assert f"Approved-By: {APPROVER}" in chain.message(promoted.commit).splitlines()
        for branch in (STAGING.candidate, STAGING.production, PRODUCTION.candidate,
                       PRODUCTION.production):
            chain.assert_history_clean(branch)


class TestApprovalFromTheBuild:
    """The approver comes from the build's own Build resource, at the regional endpoint."""

    def test_reads_the_approver_account(self) -> None:
        asked: list[tuple[str, str]] = []

        class Client:
            def get_build(self, request: cloudbuild_v1.GetBuildRequest) -> cloudbuild_v1.Build:
                asked.append((request.name, request.id))
                return cloudbuild_v1.Build(id=request.id, approval=cloudbuild_v1.BuildApproval(
                    state=cloudbuild_v1.BuildApproval.State.APPROVED,
                    result=cloudbuild_v1.ApprovalResult(
                        approver_account=APPROVER,
                        decision=cloudbuild_v1.ApprovalResult.Decision.APPROVED)))

        regions: list[str] = []
        reader = CloudBuildApprovals(lambda region: regions.append(region) or Client())
        assert reader.approver("acme-delivery", "europe-west1", "b-42") == APPROVER
        assert regions == ["europe-west1"]
        assert asked == [("projects/acme-delivery/locations/europe-west1/builds/b-42", "b-42")]

    def test_api_errors_are_one_line(self) -> None:
        class Broken:
            def get_build(self, request: object) -> None:
                raise RuntimeError("403 Permission\ndenied")

        with pytest.raises(OperationFailed, match=r"cannot read build .*403 Permission denied"):
            CloudBuildApprovals(lambda region: Broken()).approver("p-123456", "r", "b")


class TestGuaranteesPerEnvironment:
    """Stale builds, rollbacks, reverts and freezes stay in their environment."""

    def test_stale_builds_and_rollbacks_publish_nothing(self, chain: EnvRepoOnDisk,
                                                        tmp_path: Path) -> None:
        first = publish(chain, tmp_path, "hello", DIGEST_A)
        staging(chain, first)
        stale = publish(chain, tmp_path, "hello", DIGEST_B)  # overtaken before delivery
        staging(chain, publish(chain, tmp_path, "hello", DIGEST_C))
        before = chain.tip(PRODUCTION.candidate)
        skipped = staging(chain, stale)
        assert skipped.outcome is Outcome.STALE and skipped.next_commit is None
        rolled_back = staging(chain, first)  # staging held it before: a rollback, in staging
        assert chain.subject(rolled_back.commit).startswith("Rollback hello:")
        assert rolled_back.next_commit is None and chain.tip(PRODUCTION.candidate) == before

    def test_unapproved_or_failed_production_changes_production_only(self, chain: EnvRepoOnDisk,
                                                               tmp_path: Path) -> None:
        good = staging(chain, publish(chain, tmp_path, "hello", DIGEST_A)).next_commit or ""
        deliver_in(chain, PRODUCTION, good)
        kept = chain.tip(PRODUCTION.production)
        bad = staging(chain, publish(chain, tmp_path, "hello", DIGEST_B)).next_commit or ""
        staged = chain.tip(STAGING.production)
        before = chain.snapshot()

        class Pending:  # the build has not been approved yet
            def get_build(self, request: cloudbuild_v1.GetBuildRequest) -> cloudbuild_v1.Build:
                state = cloudbuild_v1.BuildApproval.State.PENDING
                return cloudbuild_v1.Build(id=request.id,
                                           approval=cloudbuild_v1.BuildApproval(state=state))

        cluster = ScriptedCluster("kc")
        with pytest.raises(OperationFailed, match=r"carries no approval \(state PENDING\)"):
            deliver_in(chain, PRODUCTION, bad, cluster,
                       approvals=CloudBuildApprovals(lambda region: Pending()))  # type: ignore
        assert chain.snapshot() == before and cluster.calls == []  # nothing applied or pushed

        cluster = ScriptedCluster("kc", failing=frozenset({DIGEST_B}))
        with pytest.raises(OperationFailed, match="rollout of deployment/hello failed"):
            deliver_in(chain, PRODUCTION, bad, cluster)
        assert chain.tip(PRODUCTION.production) == kept
        assert chain.tip(STAGING.production) == staged
        assert DIGEST_A in cluster.applied[-1]["deployment.yaml"]  # production re-applied
        assert [c[2] for c in cluster.calls if c[1] == "apply"] == ["--namespace=hello"] * 2

    def test_freeze_holds_one_environment(self, chain: EnvRepoOnDisk, tmp_path: Path) -> None:
        staging(chain, publish(chain, tmp_path, "hello", DIGEST_A))
        set_freeze(chain.url, "hello", True, "incident 7", PRODUCTION.candidate)
        second = staging(chain, publish(chain, tmp_path, "hello", DIGEST_B))
        assert second.outcome is Outcome.PROMOTED  # staging is not frozen
        assert second.next_commit == chain.tip(PRODUCTION.candidate)  # recorded there
        result, cluster = deliver_in(chain, PRODUCTION, second.next_commit or "")
        assert result.outcome is Outcome.FROZEN and cluster.applied == []
        frozen = chain.files(PRODUCTION.candidate, ".gitops/frozen")
        assert frozen == {".gitops/frozen/hello": "incident 7"}


class TestConcurrentStagingDeliveries:
    """Overlapping staging deliveries (real processes, one shared fake cluster) reach
    production's candidate in the order staging promoted them, none lost, none stale."""

    def test_out_of_order(self, chain: EnvRepoOnDisk, tmp_path: Path,
                          fake_cluster: dict[str, str]) -> None:
        commits = [publish(chain, tmp_path, "hello", f"sha256:{n:064x}", build=f"ci-{n}")
                   for n in range(3)]
        order = [commits[2], commits[0], commits[1]]  # the newest starts first
        procs = [subprocess.Popen(
            [sys.executable, str(SCRIPTS / "deploy.py"), "--repo", chain.url, "--app", "hello",
             "--commit", commit, "--build-id", f"cd-{n}", "--from", STAGING.candidate,
             "--to", STAGING.production, "--namespace", "hello-staging",
             "--environment", "staging", "--next-environment", "production",
             "--next-candidate", PRODUCTION.candidate],
            env={**os.environ, **fake_cluster}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) for n, commit in enumerate(order)]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        promotes = [c for c in chain.log(STAGING.production)
                    if chain.subject(c).startswith("Promote")]
        published = [c for c in chain.log(PRODUCTION.candidate, "apps/hello")]
        assert len(published) == len(promotes) >= 1
        # Newest first on both: each production candidate is the staging promotion beside it.
        for candidate, promoted in zip(published, promotes, strict=True):
            assert f"Promoted-From-Commit: {promoted}" in chain.message(candidate)
            assert app_tree_hash(chain, candidate) == app_tree_hash(chain, promoted)
        for branch in (STAGING.production, PRODUCTION.candidate):
            chain.assert_history_clean(branch)


class TestOperatorCommands:
    """status, history, rollback and freeze take --environment (default: the last)."""

    def test_status_history_rollback_and_freeze(self, chain: EnvRepoOnDisk,
                                                tmp_path: Path) -> None:
        staging(chain, publish(chain, tmp_path, "hello", DIGEST_B))
        staging(chain, publish(chain, tmp_path, "hello", DIGEST_A))
        result = cli("status", "--repo", chain.url)
        assert result.code == 0, result.stderr
        header, row = result.stdout.strip().splitlines()[-2:]
        assert "STAGING (gitops/APP-staging)" in header
        assert "PRODUCTION (gitops-prod/APP, approval)" in header
        assert header.index("STAGING") < header.index("PRODUCTION")
        assert row.startswith("hello") and "awaiting approval" in row
        assert row.count(f"hello@{DIGEST_A[:19]}") == 2  # runs in staging, waits in production
        as_json = json.loads(cli("status", "--repo", chain.url, "--environment", "staging",
                                 "--json").stdout)
        assert [(e["name"], e["apps"][0]["state"]) for e in as_json] == [("staging", "in sync")]
        self.cloud_build_says_where_an_attempt_is(chain)

        history = cli("history", "--repo", chain.url, "--app", "hello", "--environment",
                      "staging")
        assert "hello: attempts on staging-candidate" in history.stdout
        assert "hello: staging-production (newest first)" in history.stdout
        default = cli("history", "--repo", chain.url, "--app", "hello")
        assert "hello: attempts on production-candidate" in default.stdout
        plan = cli("rollback", "--repo", chain.url, "--app", "hello", "--target", "-1",
                   "--project", "acme-delivery", "--region", "europe-west1", "--environment",
                   "staging", "--dry-run")
        assert plan.code == 0, plan.stderr
        assert "run trigger deliver-hello-staging" in plan.stdout
        before = chain.tip(STAGING.candidate)
        frozen = cli("freeze", "--repo", chain.url, "--app", "hello", "--environment",
                     "production", "--reason", "incident")
        assert frozen.code == 0, frozen.stderr
        assert chain.tip(STAGING.candidate) == before
        assert ".gitops/frozen/hello" in chain.files(PRODUCTION.candidate)
        assert_bad_input(cli("status", "--repo", chain.url, "--environment", "qa"),
                         "unknown environment 'qa'", "staging, production")

    def cloud_build_says_where_an_attempt_is(self, chain: EnvRepoOnDisk) -> None:
        """With --project/--region, the delivery build of the newest attempt says whether it
        awaits approval or failed (a fake Cloud Build client answers)."""
        waiting = chain.tip(PRODUCTION.candidate) or ""
        builds = {  # trigger -> newest first
            "deliver-hello-production": [
                Build(id="b-9", substitutions={"COMMIT_SHA": waiting},
                      status=Build.Status.PENDING,
                      approval=Approval(state=Approval.State.PENDING)),
                Build(id="b-8", substitutions={"COMMIT_SHA": "0" * 40},
                      status=Build.Status.FAILURE)]}
        asked: list[str] = []

        class Client:
            def get_build_trigger(self, request: cloudbuild_v1.GetBuildTriggerRequest
                                  ) -> cloudbuild_v1.BuildTrigger:
                asked.append(request.name)
                return cloudbuild_v1.BuildTrigger(id=f"id-{request.trigger_id}",
                                                  name=request.trigger_id)

            def list_builds(self, request: cloudbuild_v1.ListBuildsRequest) -> list[Build]:
                assert request.parent == "projects/acme-delivery/locations/europe-west1"
                return builds[request.filter.split('"')[1].removeprefix("id-")]

        lookup = BuildsAt(CloudBuildStatus(lambda region: Client()), "acme-delivery",
                          "europe-west1")
        results = status_by_environment(chain.url, builds=lookup)
        assert asked == ["projects/acme-delivery/locations/europe-west1/triggers/"
                         "deliver-hello-production"]  # staging is in sync: not asked
        assert "awaiting approval" in render_environments(results).splitlines()[-1]
        builds["deliver-hello-production"][0] = Build(
            id="b-9", substitutions={"COMMIT_SHA": waiting}, status=Build.Status.FAILURE,
            approval=Approval(state=Approval.State.APPROVED))
        row = render_environments(status_by_environment(chain.url, builds=lookup))
        assert row.splitlines()[-1].endswith(f"hello@{DIGEST_A[:19]} failed")

    def test_repository_without_environments_is_as_before(self, env_repo: EnvRepoOnDisk,
                                                          tmp_path: Path) -> None:
        init_branches(env_repo.url)
        result = cli("status", "--repo", env_repo.url)
        assert (result.code, result.stdout.strip()) == (0, "no apps yet")
        assert_bad_input(cli("history", "--repo", env_repo.url, "--app", "hello",
                             "--environment", "staging"), "unknown environment 'staging'")

    def test_environments_recorded_once(self, chain: EnvRepoOnDisk) -> None:
        tip = chain.tip(ENVIRONMENTS_BRANCH)
        again = init_branches(chain.url, environments=[STAGING, PRODUCTION])
        assert chain.tip(ENVIRONMENTS_BRANCH) == tip
        assert all(r.created is None for r in again)
        qa = Environment("qa", "qa-candidate", "qa-production", "gitops-qa")
        init_branches(chain.url, environments=[STAGING, qa, PRODUCTION])
        recorded = json.loads(git("show", f"{ENVIRONMENTS_BRANCH}:environments.json",
                                  cwd=chain.path))
        assert [e["name"] for e in recorded] == ["staging", "qa", "production"]
        assert len(chain.log(ENVIRONMENTS_BRANCH)) == 2  # the first record, and the change
        assert chain.tip("qa-candidate")

    def test_hostile_record_is_refused(self, env_repo: EnvRepoOnDisk) -> None:
        before = env_repo.snapshot()
        result = cli("init_branches", "--repo", env_repo.url, "--environments",
                     json.dumps([{"name": "x", "candidate": "--upload-pack=evil",
                                  "production": "x-production"}]))
        assert_bad_input(result, "is not a valid branch name")
        assert env_repo.snapshot() == before

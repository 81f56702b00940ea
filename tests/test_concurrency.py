"""Real processes racing on one env repo: nothing lost, nothing forced, nothing empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import (
    DIGEST_A,
    SCRIPTS,
    EnvRepoOnDisk,
    image_ref,
    publish,
    write_manifests,
)

WRITERS = 16


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(SCRIPTS / f"{script}.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    tips = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        tips.append(out.strip().splitlines()[-1])
    return tips


class TestNoLostUpdate:
    """N writers publishing at once all land on candidate, each as its own commit."""

    def test_sixteen_concurrent_publishes(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        base = publish(env_repo, tmp_path, "base", DIGEST_A)
        procs = []
        for n in range(WRITERS):
            app = f"app{n % 4}"  # several apps, and the same app several times
            digest = f"sha256:{n:064x}"
            folder = write_manifests(tmp_path / f"w{n}", app, image_ref(app, digest))
            procs.append(start("publish", "--repo", env_repo.url, "--app", app,
                               "--manifests", str(folder), "--image", image_ref(app, digest),
                               "--build-id", f"build-{n}"))
        tips = finish(procs)

        history = env_repo.log("candidate")
        assert len(history) == WRITERS + 2  # the writers', base and the root commit
        assert len(set(tips)) == WRITERS  # each writer made its own commit
        assert set(tips) | {base, env_repo.root} == set(history)
        builds = sorted(env_repo.message(c).splitlines()[-1] for c in tips)
        assert builds == sorted(f"Build-Id: build-{n}" for n in range(WRITERS))
        final = env_repo.tip("candidate")
        for tip in tips:  # every earlier tip stays an ancestor of the new tip
            subprocess.run(["git", "merge-base", "--is-ancestor", tip, final],
                           cwd=env_repo.path, check=True)
        env_repo.assert_history_clean("candidate")


class TestConcurrentPromotes:
    """Overlapping promotes of different apps all land; no force, no empty commit."""

    def test_overlapping_promotes(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        apps = [f"svc{n}" for n in range(8)]
        commits = {app: publish(env_repo, tmp_path, app, DIGEST_A) for app in apps}
        procs = [start("promote", "--repo", env_repo.url, "--app", app, "--commit",
                       commits[app], "--build-id", f"cd-{app}") for app in apps]
        tips = finish(procs)

        production = env_repo.log("production")
        assert len(production) == len(apps) + 1
        assert set(tips) | {env_repo.root} == set(production)
        final = env_repo.files(env_repo.tip("production"))
        for app in apps:
            assert final[f".gitops/promoted/{app}"] == commits[app]
            assert image_ref(app, DIGEST_A) in final[f"apps/{app}/deployment.yaml"]
        env_repo.assert_history_clean("production")
        env_repo.assert_history_clean("candidate")

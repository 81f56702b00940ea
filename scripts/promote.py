"""Promote one app from a `candidate` commit to `production` (or any --from / --to pair).

`apps/APP/` on --to becomes exactly what it is at --commit; other apps stay untouched. The commit
is a Rollback when --commit is older on --from than the candidate commit production last took
for this app (recorded in `.gitops/promoted/APP`), otherwise a Promote. Already identical: no
commit, exit 0.
"""

from __future__ import annotations

import sys

from envrepo import (
    APPS_DIR,
    FILE_MODE,
    PROMOTED_DIR,
    TREE_MODE,
    ArgumentParser,
    BadInput,
    EnvRepo,
    check_app,
    check_branch,
    check_sha,
    check_trailer_value,
    commit_message,
    parse_trailers,
    retry_push,
    run_main,
    scratch_repo,
    short_ref,
)

PROVENANCE_KEYS = ("Image", "Source-Repo", "Source-Commit")


def parse_args() -> ArgumentParser:
    parser = ArgumentParser(prog="promote.py", description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--commit", required=True, help="the --from commit to promote")
    parser.add_argument("--from", dest="source", default="candidate")
    parser.add_argument("--to", dest="target", default="production")
    parser.add_argument("--build-id", help="id of the build that promotes")
    return parser


def provenance(env: EnvRepo, commit: str, app: str) -> dict[str, str]:
    """Trailers of the candidate commit that produced the app's tree at commit."""
    trailers = parse_trailers(env.message_of(commit))
    if trailers.get("App") != app:
        last = env.g.log("-1", "--format=%H", commit, "--", f"{APPS_DIR}/{app}/")
        trailers = parse_trailers(env.message_of(last)) if last else {}
        if trailers.get("App") != app:
            return {}
    return {key: trailers[key] for key in PROVENANCE_KEYS if key in trailers}


def is_rollback(env: EnvRepo, source: str, commit: str, previous: str | None) -> bool:
    """True when commit is strictly older on the source branch than what production took."""
    if not previous or previous == commit:
        return False
    if not env.reach(source, [previous]):
        return False  # production's last source is not on this branch: not comparable
    return env.is_ancestor(commit, previous)


def main(argv: list[str]) -> str:
    args = parse_args().parse_args(argv)
    app = check_app(args.app)
    commit = check_sha(args.commit)
    source, target = check_branch(args.source), check_branch(args.target)
    if source == target:
        raise BadInput("--from and --to must be different branches")
    if args.build_id is not None:
        check_trailer_value("--build-id", args.build_id)
    prefix = f"{APPS_DIR}/{app}"
    state_path = f"{PROMOTED_DIR}/{app}"

    with scratch_repo(args.repo) as env:
        if env.fetch_branch(source) is None:
            raise BadInput(f"branch {source!r} does not exist in {args.repo}")
        if not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        app_tree = env.tree_of(commit, prefix)
        if app_tree is None:
            raise BadInput(f"app {app!r} has no manifests ({prefix}/) at commit {commit}")
        app_entry = (bytes.fromhex(app_tree), TREE_MODE)
        state_entry = (env.store(b"blob", f"{commit}\n".encode()), FILE_MODE)
        trailers = provenance(env, commit, app)

        def attempt_once() -> str | None:
            tip = env.fetch_branch(target)
            if env.tree_of(tip, prefix) == app_tree:
                return tip  # production already holds this tree: nothing to do
            previous = env.promoted_from(tip, app)
            rollback = is_rollback(env, source, commit, previous)
            verb = "Rollback" if rollback else "Promote"
            image = trailers.get("Image")
            what = short_ref(image) if image else commit[:12]
            message = commit_message(
                f"{verb} {app}: {what} from {source} {commit[:12]}",
                [
                    ("App", app),
                    *((key, trailers.get(key)) for key in PROVENANCE_KEYS),
                    ("Build-Id", args.build_id),
                    ("Promoted-From", commit),
                    ("Rollback", "true" if rollback else None),
                ],
            )
            tree = env.edit_tree(env.root_tree(tip), prefix, app_entry)
            tree = env.edit_tree(tree, state_path, state_entry)
            new = env.commit(tree, tip, message)
            return new if env.push(new, target) else None

        return retry_push(attempt_once)


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))

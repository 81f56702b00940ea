"""Publish one app's rendered manifests to a branch of the env repo (default `candidate`).

    python scripts/publish.py --repo URL --app APP --manifests DIR [--branch candidate]
        [--source-repo R] [--source-commit SHA] [--image REF ...] [--build-id ID]
        [--release-for ENV=DIR ... | --environments "ENV ..."]
        [--provenance projects/P/locations/L/builds/ID]

`apps/APP/` on the branch becomes exactly DIR, in one commit with provenance trailers (one
`Image:` trailer per --image: an app may build several images); identical content makes no
commit. Signs the commit with $GITOPS_SIGNING_KEY when set. Prints the branch tip. Each
--release-for ENV=DIR adds a later environment's rendering of the same release
(releases/ENV/APP/, same commit), which a success in the previous environment publishes to
ENV's candidate branch. --environments "ENV ..." (the CI trigger's `_ENVIRONMENTS`) reads DIR
as render.py --environments writes it: DIR/FIRST is `apps/APP/`, each later DIR/ENV is
--release-for ENV=DIR/ENV. A later rendering identical to `apps/APP/` is not stored (the chain
publishes `apps/APP/` then), and renderings of an older release never stay behind.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gitops.checks import check_environments
from gitops.cli import command_parser, run
from gitops.errors import BadInput
from gitops.publish import PublishRequest, per_environment, publish


def main(argv: Sequence[str]) -> str:
    parser = command_parser("publish.py", __doc__, "repo", "app", "branch", "build-id")
    parser.add_argument("--manifests", required=True, type=Path, help="folder of manifests")
    parser.add_argument("--source-repo", help="app repository the manifests came from")
    parser.add_argument("--source-commit", help="app commit the manifests came from")
    parser.add_argument("--image", action="append", default=[], metavar="REF",
                        help="image reference with @sha256: digest (repeatable: one per image)")
    parser.add_argument("--provenance", help="the Cloud Build build whose verified provenance "
                        "describes the image: projects/P/locations/L/builds/ID")
    parser.add_argument("--release-for", action="append", default=[], metavar="ENV=DIR",
                        help="a later environment's manifests for this release (repeatable)")
    parser.add_argument("--environments", metavar='"ENV ..."',
                        help="--manifests holds one folder per environment (names in delivery "
                             "order, separated by spaces), as render.py --environments writes")
    args = parser.parse_args(argv)
    manifests: Path = args.manifests
    release_for: list[tuple[str, Path]] = []
    for item in args.release_for:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise BadInput(f"--release-for {item!r} must be ENV=DIR")
        release_for.append((name, Path(folder)))
    if args.environments is not None:
        if release_for:
            raise BadInput("give --environments or --release-for, not both")
        manifests, later = per_environment(manifests, check_environments(args.environments))
        release_for = list(later)
    return publish(PublishRequest(
        repo=args.repo, app=args.app, manifests=manifests, branch=args.branch,
        source_repo=args.source_repo, source_commit=args.source_commit,
        images=tuple(args.image), build_id=args.build_id, release_for=tuple(release_for),
        provenance=args.provenance)).commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))

"""Render an app's manifests with its images pinned to a digest.

    python scripts/render.py --templates DIR --image NAME=REF [--image ...] --app APP --out DIR
        [--overlay PATH] [--crds PATH ...] [--kube-version 1.33.0]
        [--environments "ENV ..." [--environment-overlays DIR [--default-overlay PATH]]]

Plain manifests: copies every `.yaml`, `.yml` and `.json` file of --templates to --out,
replacing only the image values that name NAME (without tag or digest) by REF: in containers
and init containers of every kind, and in any `image` field of custom resources.
Kustomize: when --templates holds a kustomization (or --overlay names one inside it),
`kubectl kustomize` builds it with the images set to REF by kustomize's image override, and
--out receives one plain manifest per object.

With --environments (the CI trigger's `_ENVIRONMENTS`: the stack's environments in delivery
order, separated by spaces) the same images are rendered once per environment, into OUT/ENV/:
with --environment-overlays DIR, environment ENV from the kustomization DIR/ENV inside
--templates, or, when there is none, from --default-overlay (without it: an error); otherwise
every environment gets the same rendering. publish.py --environments commits them.

Every built-in object must pass Kubernetes schema validation; custom resources are validated
against the CRDs given with --crds, otherwise passed with a notice. Objects delivery cannot
apply in namespace APP (cluster-scoped kinds, other namespaces) are refused. On any failure
nothing is written. Prints notices, then the output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gitops.checks import check_environments
from gitops.cli import command_parser, log, run
from gitops.errors import BadInput
from gitops.render import (
    DEFAULT_KUBE_VERSION,
    PerEnvironment,
    RenderRequest,
    parse_image_flag,
    render_environments_to,
    render_to,
)


def main(argv: Sequence[str]) -> str:
    parser = command_parser("render.py", __doc__, "app")
    parser.add_argument("--templates", required=True, type=Path)
    parser.add_argument("--image", required=True, action="append", metavar="NAME=REF",
                        help="image name to pin and its digest reference (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--overlay", metavar="PATH",
                        help="kustomization folder inside --templates to build "
                             "(default: --templates itself when it holds one)")
    parser.add_argument("--crds", action="append", type=Path, default=[], metavar="PATH",
                        help="CRD file or folder: schemas for custom resources (repeatable)")
    parser.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION,
                        help=f"Kubernetes schema version (default {DEFAULT_KUBE_VERSION})")
    parser.add_argument("--environments", metavar='"ENV ..."',
                        help="render once per environment (names in delivery order, separated "
                             "by spaces) into OUT/ENV/")
    parser.add_argument("--environment-overlays", metavar="DIR",
                        help="folder inside --templates holding one kustomization per "
                             "environment, named after it (with --environments)")
    parser.add_argument("--default-overlay", metavar="PATH",
                        help="kustomization inside --templates for environments without their "
                             "own overlay (default: such an environment is an error)")
    args = parser.parse_args(argv)
    images = dict(parse_image_flag(value) for value in args.image)
    request = RenderRequest(args.templates, images, args.out, args.app, args.overlay,
                            tuple(args.crds), args.kube_version)
    if args.environments is None:
        if args.environment_overlays is not None or args.default_overlay is not None:
            raise BadInput("--environment-overlays and --default-overlay need --environments")
        result = render_to(request)
    else:
        plan = PerEnvironment(check_environments(args.environments), args.environment_overlays,
                              args.default_overlay)
        result, chosen = render_environments_to(request, plan)
        for environment, overlay in chosen.items():
            log(f"{environment}: rendered from {overlay or args.templates}")
    for notice in result.notices:
        log(notice)
    return str(result.out)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))

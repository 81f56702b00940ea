"""Render an app's manifests with its images pinned to a digest.

    python scripts/render.py --templates DIR --image NAME=REF [--image ...] --app APP --out DIR
        [--overlay PATH] [--crds PATH ...] [--kube-version 1.33.0]

Plain manifests: copies every `.yaml`, `.yml` and `.json` file of --templates to --out,
replacing only the image values that name NAME (without tag or digest) by REF: in containers
and init containers of every kind, and in any `image` field of custom resources.
Kustomize: when --templates holds a kustomization (or --overlay names one inside it),
`kubectl kustomize` builds it with the images set to REF by kustomize's image override, and
--out receives one plain manifest per object.

Every built-in object must pass Kubernetes schema validation; custom resources are validated
against the CRDs given with --crds, otherwise passed with a notice. Objects delivery cannot
apply in namespace APP (cluster-scoped kinds, other namespaces) are refused. On any failure
nothing is written. Prints notices, then the output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gitops.cli import command_parser, log, run
from gitops.render import DEFAULT_KUBE_VERSION, RenderRequest, parse_image_flag, render_to


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
    args = parser.parse_args(argv)
    images = dict(parse_image_flag(value) for value in args.image)
    result = render_to(RenderRequest(args.templates, images, args.out, args.app, args.overlay,
                                     tuple(args.crds), args.kube_version))
    for notice in result.notices:
        log(notice)
    return str(result.out)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))

"""Render an app's manifests with its images pinned to a digest.

    python scripts/render.py --templates DIR --image NAME=REF [--image ...] --out DIR
        [--kube-version 1.33.0]

Copies every `.yaml`/`.yml` file of --templates to --out, replacing the `image:` of every
container and init container whose image name (without tag or digest) is NAME by REF, and
nothing else. Every output document must pass Kubernetes schema validation; on any failure
nothing is written. Prints the output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gitops.cli import command_parser, run
from gitops.render import DEFAULT_KUBE_VERSION, parse_image_flag, render_to


def main(argv: Sequence[str]) -> str:
    parser = command_parser("render.py", __doc__)
    parser.add_argument("--templates", required=True, type=Path)
    parser.add_argument("--image", required=True, action="append", metavar="NAME=REF",
                        help="image name to pin and its digest reference (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION,
                        help=f"Kubernetes schema version (default {DEFAULT_KUBE_VERSION})")
    args = parser.parse_args(argv)
    images = dict(parse_image_flag(value) for value in args.image)
    return str(render_to(args.templates, images, args.out, args.kube_version))


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))

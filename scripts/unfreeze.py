"""Lift an app's freeze (see freeze.py). Candidate commits recorded during the freeze are not
deployed by this: re-run the app's delivery trigger for the newest one, or push again.

    python scripts/unfreeze.py --repo URL --app APP
"""

from __future__ import annotations

import sys

import freeze
from envrepo import run_main

if __name__ == "__main__":
    sys.exit(run_main(lambda: freeze.main(sys.argv[1:], frozen=False)))

"""One run of the program per stack config for the whole session, for tests that only read.

Each run under mocks costs most of a second; the pipeline, trigger and local-command tests read
the same graphs, so they share these.
"""

from __future__ import annotations

from functools import cache

from pulumi_harness import CONFIGS, Graph, run_program


@cache
def graph_of(kind: str) -> Graph:
    """The graph of CONFIGS[kind]; callers must not change it."""
    return run_program(CONFIGS[kind])

"""Waiting out IAM propagation: a timed wait after grants, before anything uses them.

Google documents IAM allow-policy changes as eventually consistent: "typically 2 minutes,
potentially 7 minutes or longer". Nothing can be asked whether a grant has arrived everywhere,
so the program waits a configured time (`gitops:iamPropagationSeconds`) with pulumiverse-time's
`Sleep` between the grants and the first resource that needs them (the GitHub connection, the
steps-image build, the env branches, the triggers).

The wait is part of the graph: it runs when one of its grants is created or replaced (its
`triggers` hold the grants' ids) and costs nothing on later runs that change no grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumiverse_time as time

# Grants whose id can trigger the wait again. Every IAM member resource has an `id` output.
Grant = pulumi.CustomResource


def wait_for_grants(name: str, grants: Sequence[Grant], seconds: int,
                    parent: pulumi.Resource) -> time.Sleep:
    """A Sleep that starts once every grant exists; resources that use them depend on it."""
    return time.Sleep(
        name,
        create_duration=f"{seconds}s",
        triggers={f"grant-{index}": grant.id for index, grant in enumerate(grants)},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(grants)),
    )


@dataclass
class IamPropagationArgs:
    grants: list[Grant]
    seconds: int


class IamPropagation(pulumi.ComponentResource):
    """One wait after all of the stack's grants; `ready` is what their users depend on."""

    def __init__(self, name: str, args: IamPropagationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:IamPropagation", name, None, opts)
        self.ready = wait_for_grants("grants-propagated", args.grants, args.seconds, parent=self)
        self.register_outputs({"grants": len(args.grants)})

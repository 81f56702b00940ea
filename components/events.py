"""Delivery events: the Pub/Sub topic every delivery outcome and drift finding is published to.

Design decisions:
- The topic carries the Avro schema of `scripts/gitops/delivery_event.avsc`, the one file the
  step code and the tests read too, registered as a Pub/Sub schema with JSON encoding: Pub/Sub
  refuses a message that does not match it, so every subscriber can rely on the shape.
- Only the identities that publish (delivery, reconcile) get `roles/pubsub.publisher`, on this
  topic only; subscribers (a push subscription to a chat hook, a mail notifier) are added by
  whoever wants the events, with their own identities (docs/events.md).
- The builds learn the topic from the trigger (`_EVENTS_TOPIC`, the full topic name), so the
  step code never guesses a project or a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "scripts" / "gitops" / \
    "delivery_event.avsc"
PUBLISHER = "roles/pubsub.publisher"


@dataclass
class DeliveryEventsArgs:
    project: pulumi.Input[str]
    topic_name: str
    publishers: dict[str, pulumi.Input[str]]  # label -> IAM member that publishes
    api_dependencies: list[pulumi.Resource]


class DeliveryEvents(pulumi.ComponentResource):
    """The schema, the topic that enforces it, and who may publish."""

    def __init__(self, name: str, args: DeliveryEventsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:DeliveryEvents", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
        self.schema = gcp.pubsub.Schema(
            "delivery-event",
            project=args.project,
            name=f"{args.topic_name}-delivery-event",
            type="AVRO",
            definition=SCHEMA_FILE.read_text(),
            opts=child,
        )
        self.topic = gcp.pubsub.Topic(
            "events",
            project=args.project,
            name=args.topic_name,
            schema_settings=gcp.pubsub.TopicSchemaSettingsArgs(schema=self.schema.id,
                                                               encoding="JSON"),
            opts=child,
        )
        self.grants: list[pulumi.CustomResource] = [
            gcp.pubsub.TopicIAMMember(
                f"{label}-publishes-events",
                project=args.project,
                topic=self.topic.name,
                role=PUBLISHER,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for label, member in args.publishers.items()
        ]
        # The full name the step code publishes to: projects/P/topics/T.
        self.topic_path: pulumi.Output[str] = pulumi.Output.concat(
            "projects/", args.project, "/topics/", self.topic.name)
        self.register_outputs({"topic": self.topic_path})

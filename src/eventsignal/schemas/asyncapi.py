"""An AsyncAPI 3.0 document for the events of aggregate configs, sent as CloudEvents.

Each event is one message, ``<aggregate name>.<event name>`` (the CloudEvents ``type``), in the
envelope :mod:`eventsignal.publishing` sends: the event's data as ``data``, the aggregate id as
``subject`` and ``partitionkey``, its version as ``aggregateversion`` and its global position as
``sequence``; each aggregate type is one channel, which an ``eventsignal`` publisher sends to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsignal.domain.config import AggregateConfig
from eventsignal.domain.evolution import split_stored_name
from eventsignal.schemas.export import schema_components

CONTENT_TYPE = "application/cloudevents+json"


def asyncapi_document(
    configs: Sequence[AggregateConfig[Any, Any]],
    *,
    title: str = "eventsignal events",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document describing the events of ``configs`` as CloudEvents."""
    classes = [cls for config in configs for cls in config.event_types.values()]
    refs, schemas = schema_components(classes, "#/components/schemas/{name}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for config in configs:
        channel_messages: dict[str, Any] = {}
        for stored, cls in config.event_types.items():
            name, revision = split_stored_name(stored)
            message_id = f"{config.name}.{name}"
            messages[message_id] = _message(config.name, message_id, revision, refs[cls])
            channel_messages[name] = {"$ref": f"#/components/messages/{message_id}"}
        channels[config.name] = {
            "address": config.name,
            "title": f"Events of {config.name} aggregates",
            "messages": channel_messages,
        }
        operations[f"send-{config.name}-events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{config.name}"},
            "messages": [
                {"$ref": f"#/channels/{config.name}/messages/{name}"} for name in channel_messages
            ],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _message(aggregate: str, event_type: str, revision: int, data: Any) -> dict[str, Any]:
    return {
        "name": event_type,
        "title": event_type,
        "contentType": CONTENT_TYPE,
        "x-eventsignal-revision": revision,
        "payload": {
            "type": "object",
            "required": ["specversion", "id", "source", "type", "subject", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "description": "The event's id (a UUID)."},
                "source": {"type": "string", "format": "uri-reference"},
                "type": {"const": event_type},
                "subject": {"type": "string", "description": f"The {aggregate} aggregate's id."},
                "time": {"type": "string", "format": "date-time"},
                "sequence": {
                    "type": "string",
                    "description": "The event's global position in the store, zero-padded so "
                    "that text order is position order.",
                },
                "aggregateversion": {
                    "type": "integer",
                    "description": "The aggregate's version after this event.",
                },
                "partitionkey": {
                    "type": "string",
                    "description": "The aggregate id: events of one aggregate keep their order.",
                },
                "traceparent": {
                    "type": "string",
                    "description": "The W3C trace context of the command, when it was traced.",
                },
                "datacontenttype": {"const": "application/json"},
                "data": data,
            },
        },
    }

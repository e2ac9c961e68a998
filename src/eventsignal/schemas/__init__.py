"""Event and command schemas: JSON Schema and AsyncAPI documents, and a check for breaking changes.

:func:`export_schema` describes every event and command class of some aggregate configs as JSON
Schema (one document, shared definitions under ``$defs``); :func:`asyncapi_document` describes the
events as the CloudEvents messages a publisher sends, in AsyncAPI 3.0; :func:`check_schema`
compares a document exported earlier with the configs as they are now and lists each change,
saying which would break readers of events already stored. The command line runs them as
``eventsignal schema export`` and ``eventsignal schema check``.
"""

from eventsignal.schemas.asyncapi import asyncapi_document
from eventsignal.schemas.compare import Change, check_schema
from eventsignal.schemas.discovery import command_types, find_configs
from eventsignal.schemas.export import export_schema

__all__ = [
    "Change",
    "asyncapi_document",
    "check_schema",
    "command_types",
    "export_schema",
    "find_configs",
]

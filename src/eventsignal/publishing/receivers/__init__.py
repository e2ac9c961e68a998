"""Inbox receivers: one small module per broker, each feeding received messages to an
:class:`~eventsignal.publishing.inbox.Inbox` one at a time, in the broker's order, and
acknowledging a message only once the inbox handled (or parked) it."""

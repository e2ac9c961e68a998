"""Tools for testing code built on eventsignal, and stores written for it."""

from eventsignal.testing.compliance import EventStoreCompliance, make_events

__all__ = ["EventStoreCompliance", "make_events"]

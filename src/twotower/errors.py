"""Domain exceptions. The library raises these; the CLI and the HTTP layer turn them into
one-line messages / HTTP statuses in exactly one place each."""

from __future__ import annotations


class TwotowerError(Exception):
    """Base class: the message is meant for the user, one line, saying what to do."""


class InvalidInput(TwotowerError):
    """The caller gave something malformed (bad file, column, id, argument)."""


class NotFound(TwotowerError):
    """A named thing (user, video, model version, checkpoint, file) does not exist."""


class StoreUnavailable(TwotowerError):
    """The database cannot be reached or is missing what we need (extension, schema)."""


class ModelFitError(TwotowerError):
    """Training diverged or had nothing to learn from."""


class ArtifactError(TwotowerError):
    """An exported model folder is incomplete or was altered (manifest mismatch)."""


class LockHeld(TwotowerError):
    """Another run holds the lock (e.g. a concurrent batch-update)."""

"""Errors raised by body-model adapters."""

from __future__ import annotations


class BodyModelError(RuntimeError):
    """A body model cannot be found, loaded or used; the message says what to do about it."""

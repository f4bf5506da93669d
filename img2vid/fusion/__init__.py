"""Temporal fusion modules that mix features of neighbouring frames."""

from .tsm import temporal_shift

__all__ = ["temporal_shift"]

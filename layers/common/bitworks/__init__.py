"""Bitworks Message shared layer: settings, models, database access, auth, services."""

__version__ = "0.1.0"

"""The distribution's version: setup.cfg reads it from here; the application (`initlab`) from the installed metadata."""

__version__ = "0.5.0"

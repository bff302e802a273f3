"""Modality plugins: `text`, `audio`, `vector`, and any registered through entry points."""

from .base import Encoded, Modality, available, get, register

__all__ = ["Encoded", "Modality", "available", "get", "register"]

"""The `vector` modality: fixed-size float vectors from .npy or .csv, standardized, with an MLP denoiser."""

from ..base import register
from .modality import VectorConfig, VectorModality, ResidualMLP

register("vector", VectorModality)

__all__ = ["VectorConfig", "VectorModality", "ResidualMLP"]

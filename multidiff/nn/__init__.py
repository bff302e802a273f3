"""Backbones any modality may use: noise-level embeddings, U-Nets, transformer denoisers."""

from .embeddings import FourierEmbedding, SinusoidalEmbedding
from .unet import UNet2D

"""multidiff: diffusion models for text and audio on one Gaussian diffusion core.

The core (`multidiff.core`) works in one coordinate system, x = x0 + sigma * eps, against a
denoiser D(x, sigma) -> x0_hat. Modalities (`multidiff.modalities`) map data to and from that space.
"""

__version__ = "0.1.0"

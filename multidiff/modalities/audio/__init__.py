"""The `audio` modality: log-mel spectrogram diffusion with vocoder decoding.

Parts: `io` (soundfile I/O, resampling, level normalisation), `mel` (frozen mel presets with
fingerprints), `vocoders` (Griffin-Lim, HiFi-GAN), `synthetic` (a small labelled set), `metrics`
(judge classifier, Frechet distance, spectral distances, spectrogram grids), `modality` (the plugin).
"""

from ..base import register
from .mel import PRESETS, MelPreset, get_preset, register_preset
from .modality import AudioConfig, AudioModality
from .vocoders import (HIFIGAN_CONFIGS, GriffinLimVocoder, HiFiGANConfig, HiFiGANVocoder, Vocoder,
                       get_vocoder)

register("audio", AudioModality)

__all__ = ["AudioConfig", "AudioModality", "GriffinLimVocoder", "HIFIGAN_CONFIGS", "HiFiGANConfig",
           "HiFiGANVocoder", "MelPreset", "PRESETS", "Vocoder", "get_preset", "get_vocoder", "register_preset"]

"""The text modality: tokenizers, corpora, the embedding-space denoiser, objectives and metrics.

Registers `TextModality` under the name "text".
"""

from ..base import register
from .corpus import Example, ReadStats, read_corpus, read_lines, split_by_mr, synthetic_corpus
from .modality import Clamp, TextConfig, TextDenoiser, TextModality
from .network import TextDenoiserNet
from .tokenizer import TextTokenizer

register("text", TextModality)

__all__ = ["Clamp", "Example", "ReadStats", "TextConfig", "TextDenoiser", "TextDenoiserNet", "TextModality",
           "TextTokenizer", "read_corpus", "read_lines", "split_by_mr", "synthetic_corpus"]

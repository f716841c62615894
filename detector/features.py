"""The detector's features and score, written once for training and once in
Rust (`filters/core/src/scan/detector.rs`); `pipeline.py` exports vectors
that the Rust tests check against, so the two cannot drift apart quietly.

Features: scikit-learn's `HashingVectorizer` (MurmurHash3 32-bit, seed 0,
signed buckets, each block L2-normalised), character n-grams inside word
boundaries (`char_wb`, 3 to 5) and word n-grams (1 and 2), lowercased.
Score: the logistic of `bias + scale * (q_char . x_char + q_word . x_word)`
with `q` the int8 weights. A text longer than `WINDOW` characters is scored
window by window (step `WINDOW // 2`) and takes the highest score, so an
injection in a 64 KiB tool result is not diluted by the text around it.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

CHAR_BITS = 18
WORD_BITS = 17
CHAR_NGRAMS = (3, 5)
WORD_NGRAMS = (1, 2)
WINDOW = 500
MAGIC = b"PCLD"
VERSION = 1


def vectorizers():
    char = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=CHAR_NGRAMS,
        n_features=1 << CHAR_BITS,
        alternate_sign=True,
        norm="l2",
        lowercase=True,
    )
    word = HashingVectorizer(
        analyzer="word",
        ngram_range=WORD_NGRAMS,
        n_features=1 << WORD_BITS,
        alternate_sign=True,
        norm="l2",
        lowercase=True,
    )
    return char, word


def transform(texts):
    char, word = vectorizers()
    return sp.hstack([char.transform(texts), word.transform(texts)]).tocsr()


def windows(text: str):
    """The windows a text is scored in (character offsets)."""
    if len(text) <= WINDOW:
        return [text]
    out = []
    step = WINDOW // 2
    start = 0
    while True:
        out.append(text[start : start + WINDOW])
        if start + WINDOW >= len(text):
            break
        start += step
    return out


class Quantised:
    """int8 weights with one scale, as the Rust side holds them."""

    def __init__(self, coef: np.ndarray, bias: float):
        self.scale = float(np.max(np.abs(coef)) / 127.0) or 1.0
        self.q = np.clip(np.round(coef / self.scale), -127, 127).astype(np.int8)
        self.bias = float(bias)

    def logits(self, X) -> np.ndarray:
        w = self.q.astype(np.float64) * self.scale
        return X @ w + self.bias

    def score_texts(self, texts) -> np.ndarray:
        flat, owner = [], []
        for i, t in enumerate(texts):
            for w in windows(t):
                flat.append(w)
                owner.append(i)
        logits = self.logits(transform(flat))
        best = np.full(len(texts), -np.inf)
        np.maximum.at(best, np.array(owner), logits)
        return 1.0 / (1.0 + np.exp(-best))

    def to_bytes(self) -> bytes:
        header = MAGIC + bytes(
            [VERSION, CHAR_BITS, WORD_BITS, CHAR_NGRAMS[0], CHAR_NGRAMS[1], WORD_NGRAMS[1], 0, 0]
        )
        body = header + struct.pack("<ff", self.scale, self.bias) + self.q.tobytes()
        return body + struct.pack("<I", fnv1a32(body))


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))

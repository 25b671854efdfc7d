"""Quick-thought's word vocabulary: tokeniser, the most frequent training tokens, padded id
matrices; cached by corpus checksum so that runs of one corpus share them."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from hardneg.atomic import atomic_write

PAD, UNK = 0, 1
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)

__all__ = ["PAD", "UNK", "tokenize", "encode_ids", "Vocabulary", "build_vocabulary"]


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the QT and random-bow tokeniser)."""
    return _TOKEN_RE.findall(text.lower())


def encode_ids(toks: list[list[str]], vocab: dict[str, int], max_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Padded id matrix (n, max_len), lengths, and how many sentences were truncated.

    Unknown words map to ``UNK``; an empty sentence becomes one ``UNK``.
    """
    n = len(toks)
    ids = np.zeros((n, max_len), dtype=np.int32)
    lens = np.zeros(n, dtype=np.int64)
    trunc = 0
    for i, ts in enumerate(toks):
        if len(ts) > max_len:
            trunc += 1
            ts = ts[:max_len]
        row = [vocab.get(w, UNK) for w in ts] or [UNK]
        ids[i, :len(row)] = row
        lens[i] = len(row)
    return ids, lens, trunc


class Vocabulary:
    """Words (by descending frequency) with ids from 2 (0 = <pad>, 1 = <unk>), and the training
    sentences as a padded id matrix."""

    def __init__(self, words: list[str], ids: np.ndarray, lens: np.ndarray, truncated: int) -> None:
        self.words = words
        self.index = {w: i + 2 for i, w in enumerate(words)}
        self.ids, self.lens, self.truncated = ids, lens, truncated

    def __len__(self) -> int:
        """Rows of the embedding table: the words plus <pad> and <unk>."""
        return len(self.words) + 2


def build_vocabulary(texts: list[str], *, vocab_size: int, max_len: int, cache: Path, key: str) -> Vocabulary:
    """The ``vocab_size`` most frequent tokens of ``texts`` (ties by the token) and their ids.

    Cached in ``cache/vocab/<key>-n<sentences>-v<vocab_size>-L<max_len>.npz``, written
    atomically; ``key`` should name the corpus contents (its checksum).
    """
    path = Path(cache) / "vocab" / f"{key}-n{len(texts)}-v{vocab_size}-L{max_len}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Vocabulary(list(z["words"]), z["ids"], z["lens"], int(z["truncated"]))
    toks = [tokenize(t) for t in texts]
    freq = Counter(w for ts in toks for w in ts)
    words = [w for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_size]]
    vocab = Vocabulary(words, np.zeros((0, max_len), np.int32), np.zeros(0, np.int64), 0)
    vocab.ids, vocab.lens, vocab.truncated = encode_ids(toks, vocab.index, max_len)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=True) as fh:
        np.savez(fh, words=np.asarray(words, dtype=str), ids=vocab.ids, lens=vocab.lens,
                 truncated=np.asarray(vocab.truncated))
    return vocab

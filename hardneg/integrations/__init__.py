"""Bridges from hardneg's loss core to other libraries' training APIs.

- :mod:`hardneg.integrations.sentence_transformers`: :class:`HardNegativeRankingLoss`, a
  drop-in for sentence-transformers' ``MultipleNegativesRankingLoss`` with hard and
  debiased negatives (imports sentence-transformers only when used).
"""

__all__ = ["HardNegativeRankingLoss"]


def __getattr__(name: str):
    if name == "HardNegativeRankingLoss":
        from .sentence_transformers import HardNegativeRankingLoss
        return HardNegativeRankingLoss
    raise AttributeError(name)

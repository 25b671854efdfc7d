"""Hard and debiased negatives for sentence-transformers' own training API.

:class:`HardNegativeRankingLoss` has the signature of sentence-transformers losses
(``forward(sentence_features, labels)``), so it plugs into ``SentenceTransformerTrainer``
(or ``model.fit``) with a dataset of ``(anchor, positive[, negative_1, ...])`` columns,
exactly like ``MultipleNegativesRankingLoss`` (MNRL)::

    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from hardneg.integrations.sentence_transformers import HardNegativeRankingLoss

    model = SentenceTransformer(path)
    loss = HardNegativeRankingLoss(model, beta=1.0, tau_plus=0.1, temperature=0.05)
    SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss).train()

Per anchor a_i of a batch of B rows, the candidates are every positive p_1..p_B and every
extra column's sentences; ``s = cos(a_i, c)``; the positive is p_i, the negatives all other
candidates (in-batch negatives, as MNRL). The loss is :func:`hardneg.losses.contrastive_loss`
on these scores (Robinson et al., ICLR 2021; Chuang et al., NeurIPS 2020)::

    w_ij = exp(beta * s_ij / t),  R_i = N * sum_j w_ij exp(s_ij / t) / sum_j w_ij
    Ng_i = max((R_i - tau+ N exp(s_i+ / t)) / (1 - tau+), N exp(-1 / t))
    loss = mean_i -log(exp(s_i+ / t) / (exp(s_i+ / t) + Ng_i))

With beta = 0 and tau+ = 0 this is MNRL with ``scale = 1 / temperature`` (MNRL's default
scale 20 is temperature 0.05). ``symmetric=True`` adds the positive -> anchor direction
(averaged), as ``MultipleNegativesSymmetricRankingLoss``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from ..errors import HardnegError, check_range
from ..losses import contrastive_loss

__all__ = ["HardNegativeRankingLoss"]


class HardNegativeRankingLoss(nn.Module):
    """In-batch ranking loss with hard (beta) and debiased (tau_plus) negatives.

    Args:
        model: the SentenceTransformer being trained.
        beta: hardness concentration (>= 0); 0 = uniform negatives.
        tau_plus: class prior of false negatives, in [0, 1); 0 = no debiasing.
        temperature: t > 0 of the cosine logits (MNRL's scale = 1 / t).
        hardness: 'logit' (w = exp(beta s / t), the authors' code) or 'cosine' (w = exp(beta s)).
        floor: clamp the debiased negative term at N exp(-1 / t).
        symmetric: also score each positive against all anchors and average both directions.
    """

    def __init__(self, model: nn.Module, beta: float = 1.0, tau_plus: float = 0.1, temperature: float = 0.05,
                 *, hardness: str = "logit", floor: bool = True, symmetric: bool = False) -> None:
        super().__init__()
        self.model = model
        self.beta = check_range("beta", beta, low=0.0)
        self.tau_plus = check_range("tau_plus", tau_plus, low=0.0, high=1.0, high_inclusive=False)
        self.temperature = check_range("temperature", temperature, low=0.0, low_inclusive=False)
        if hardness not in ("logit", "cosine"):
            raise HardnegError(f"hardness={hardness!r} is not known; allowed: logit, cosine")
        self.hardness = hardness
        self.floor = bool(floor)
        self.symmetric = bool(symmetric)

    def _loss(self, anchors: Tensor, candidates: Tensor) -> Tensor:
        a = nn.functional.normalize(anchors, dim=-1)
        c = nn.functional.normalize(candidates, dim=-1)
        scores = a @ c.T
        b = a.shape[0]
        pos = torch.zeros_like(scores, dtype=torch.bool)
        idx = torch.arange(b, device=scores.device)
        pos[idx, idx] = True
        return contrastive_loss(scores, pos, ~pos, beta=self.beta, tau_plus=self.tau_plus,
                                temperature=self.temperature, floor=self.floor, min_score=-1.0,
                                hardness=self.hardness, multi_positive="softmax")

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """Loss from per-column embeddings [anchors, positives, extra negatives...]."""
        if len(embeddings) < 2:
            raise HardnegError(f"HardNegativeRankingLoss needs at least 2 columns (anchor, positive); "
                               f"got {len(embeddings)}")
        if embeddings[0].shape[0] < 2:
            raise HardnegError("HardNegativeRankingLoss needs a batch of at least 2 pairs: in-batch "
                               "negatives come from the other rows")
        anchors, candidates = embeddings[0], torch.cat(embeddings[1:], dim=0)
        loss = self._loss(anchors, candidates)
        if self.symmetric:
            loss = 0.5 * (loss + self._loss(embeddings[1], anchors))
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """sentence-transformers' loss signature; ``labels`` is unused (pairs carry none)."""
        embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """Shown in the model card that sentence-transformers writes."""
        return {"beta": self.beta, "tau_plus": self.tau_plus, "temperature": self.temperature,
                "hardness": self.hardness, "floor": self.floor, "symmetric": self.symmetric}

    @property
    def citation(self) -> str:
        return ("@inproceedings{robinson2021contrastive,\n"
                "  title={Contrastive Learning with Hard Negative Samples},\n"
                "  author={Robinson, Joshua and Chuang, Ching-Yao and Sra, Suvrit and Jegelka, Stefanie},\n"
                "  booktitle={ICLR}, year={2021}}")

"""hardneg: a benchmark suite for contrastive learning with hard negatives.

The loss core (log-space, exact, one implementation for every modality)::

    from hardneg import hard_negative_loss
    loss = hard_negative_loss(z1, z2, beta=1.0, tau_plus=0.1, temperature=0.5)

See :mod:`hardneg.losses` for the estimator, :mod:`hardneg.adapters` for adding a
modality, and the ``hardneg`` command for running suites and reports.
"""

from .errors import ConfigError, DataError, HardnegError
from .losses import HardNegativeLoss, LossOutput, contrastive_loss, hard_negative_loss, jsd_loss

__version__ = "0.1.0"
__all__ = ["hard_negative_loss", "contrastive_loss", "jsd_loss", "HardNegativeLoss", "LossOutput",
           "HardnegError", "ConfigError", "DataError", "__version__"]

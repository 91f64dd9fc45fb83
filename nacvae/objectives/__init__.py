"""Objectives as pure functions: tensors in, scalar loss out."""

from nacvae.objectives.contrastive import KeyQueue, info_nce, nt_xent
from nacvae.objectives.nac import (
    channel_beta,
    code_log_likelihood,
    log_cosh,
    nac_loss,
    nac_momentum_loss,
    prediction_head_loss,
    sample_channel_signs,
)

__all__ = [
    "KeyQueue", "channel_beta", "code_log_likelihood", "info_nce", "log_cosh", "nac_loss",
    "nac_momentum_loss", "nt_xent", "prediction_head_loss", "sample_channel_signs",
]

"""Objectives as pure functions: tensors in, scalar loss out."""

from nacvae.objectives.contrastive import KeyQueue, info_nce, nt_xent
from nacvae.objectives.deepbit import deepbit_loss, rotate_images
from nacvae.objectives.distillhash import distill_thresholds, distilled_pairs, distillhash_loss
from nacvae.objectives.insdis import (
    insdis_nce_loss, insdis_softmax_loss, memory_update, nce_normaliser, sample_noise_indices,
)
from nacvae.objectives.ssdh import (
    cosine_distances, fit_half_gaussians, pair_distances, pseudo_similarity, ssdh_loss,
)
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
    # the paper's other baselines
    "cosine_distances", "deepbit_loss", "distill_thresholds", "distilled_pairs", "distillhash_loss",
    "fit_half_gaussians", "insdis_nce_loss", "insdis_softmax_loss", "memory_update", "nce_normaliser",
    "pair_distances", "pseudo_similarity", "rotate_images", "sample_noise_indices", "ssdh_loss",
]

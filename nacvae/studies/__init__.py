"""The studies behind ``nacvae reproduce``: the encoder study (``encoders``: pretrain and
evaluate every encoder, a VAE from each; its tables in ``report``) and the VAE study
(``vae``: convergence and inference gaps of VAEs from each encoder, fine-tuned and frozen;
its tables in ``vae_report``), with their scales and method names in ``presets`` and the
study-folder bookkeeping they share in ``folders``. Importing the package does not import
torch: the training code is imported when a study runs.
"""

from __future__ import annotations

from nacvae.studies.encoders import run_study
from nacvae.studies.presets import PRESETS, VAE_PRESETS, Preset, VAEStudyPreset
from nacvae.studies.vae import run_vae_study

__all__ = ["PRESETS", "VAE_PRESETS", "Preset", "VAEStudyPreset", "run_study", "run_vae_study"]

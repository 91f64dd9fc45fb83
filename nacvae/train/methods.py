"""Pretraining methods: an encoder plus the state an objective needs (key encoder, queue).

Each method maps a pair of augmented batches to a scalar loss; the training loop knows
nothing else about it. Objectives themselves live in ``nacvae.objectives``.
"""

from __future__ import annotations

import torch
from torch import nn

from nacvae import distributed
from nacvae.errors import ConfigError
from nacvae.models.heads import PretrainEncoder, ema_copy, ema_update
from nacvae.objectives import (
    KeyQueue, info_nce, nac_loss, nac_momentum_loss, nt_xent, prediction_head_loss, sample_channel_signs,
)
from nacvae.objectives.nac import Gather, channel_beta

OBJECTIVES = ("nac", "simclr", "moco")
# The paper's other baselines: InsDis (classification), DeepBit, SSDH, DistillHash (hashing).
BASELINE_OBJECTIVES = ("insdis", "deepbit", "ssdh", "distillhash")
TEACHER_OBJECTIVES = ("ssdh", "distillhash")  # need --teacher
# May take --teacher: DeepBit then trains its hash layer on the teacher's frozen backbone.
OPTIONAL_TEACHER_OBJECTIVES = ("deepbit",)
OBJECTIVES = OBJECTIVES + BASELINE_OBJECTIVES


class Method(nn.Module):
    """Base: ``loss(x1, x2, generator)`` and ``after_step()`` (for EMA updates).

    Encoders run under bf16 autocast when ``amp_dtype`` is set and take channels-last input
    when ``channels_last`` is set; their outputs are cast to float32 so that every objective
    computes in float32.
    """

    encoder: PretrainEncoder
    gather: Gather | None = None  # set for multi-process training (nacvae.distributed)
    gather_no_grad: Gather | None = None
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def loss(self, x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, the view-1 code pre-activations a for code statistics)."""
        raise NotImplementedError

    def after_step(self) -> None:
        pass

    def attach_dataset(self, images: torch.Tensor, mean, std) -> None:
        """Called once with the training images (uint8, on the device) before any resume, for
        methods whose state depends on them (a memory bank, teacher features)."""

    def begin_step(self, indices: torch.Tensor) -> None:
        """Called before ``loss`` with the dataset rows of this process's batch."""

    def num_negatives(self, global_batch: int) -> int | None:
        """For NAC: how many codes the negative term sums over, so that the loss of the
        trivial solution z = 0 is log of it. None for objectives without that property."""
        return None

    def wrap_encoder(self, wrapper: nn.Module | None) -> None:
        """Run the trainable encoder through ``wrapper`` (DistributedDataParallel around
        ``self.encoder``). It is kept out of the module tree, so state dicts keep their keys."""
        self.__dict__["_encoder_wrapper"] = wrapper

    @property
    def query_encoder(self) -> nn.Module:
        wrapper = self.__dict__.get("_encoder_wrapper")
        return self.encoder if wrapper is None else wrapper

    def _encode_pair(self, x1: torch.Tensor, x2: torch.Tensor, encoder: nn.Module):
        b = x1.shape[0]
        x = torch.cat([x1, x2], dim=0)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
            h, a, l = encoder(x)
        # Half-precision outputs of autocast become float32; float64 stays float64.
        as_float = lambda t: t.float() if t is not None and t.element_size() < 4 else t  # noqa: E731
        split = lambda t: (None, None) if t is None else (t[:b], t[b:])  # noqa: E731
        return split(as_float(h)), split(as_float(a)), split(as_float(l))

    def _all_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return keys if self.gather_no_grad is None else self.gather_no_grad(keys)[0]


class NAC(Method):
    def __init__(self, encoder: PretrainEncoder, flip_prob: float) -> None:
        super().__init__()
        channel_beta(flip_prob)  # validates p
        self.encoder = encoder
        self.flip_prob = flip_prob

    def loss(self, x1, x2, generator):
        _, (a1, a2), (l1, l2) = self._encode_pair(x1, x2, self.query_encoder)
        return nac_loss(a1, a2, l1, l2, self.flip_prob, generator=generator, gather=self.gather), a1

    def num_negatives(self, global_batch: int) -> int:
        return 2 * global_batch


class NACMomentum(Method):
    """NAC with an EMA key encoder and a queue of key codes (method.md §4)."""

    def __init__(self, encoder: PretrainEncoder, flip_prob: float, queue_size: int,
                 momentum: float = 0.99, l2_weight: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        channel_beta(flip_prob)
        self.encoder = encoder
        self.key_encoder = ema_copy(encoder)
        self.flip_prob, self.momentum, self.l2_weight = flip_prob, momentum, l2_weight
        g = torch.Generator().manual_seed(seed)
        self.queue = KeyQueue(queue_size, encoder.code_dim, 1e-3 * torch.randn(queue_size, encoder.code_dim, generator=g))

    def loss(self, x1, x2, generator):
        (h1, h2), (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        with torch.no_grad():
            self.key_encoder.train(self.encoder.training)
            _, (ka1, ka2), (kl1, kl2) = self._encode_pair(x1, x2, self.key_encoder)
            self.queue.enqueue(self._all_keys(torch.tanh(torch.cat([ka1, ka2], dim=0))))
        a = torch.cat([a1, a2], dim=0)
        z = torch.tanh(a)
        c_hat = sample_channel_signs(tuple(z.shape), self.flip_prob, generator, z.device, z.dtype) * z
        key_partner_logits = torch.cat([kl2, kl1], dim=0)
        encoder_term = nac_momentum_loss(a, c_hat, key_partner_logits, self.queue.keys, self.flip_prob, self.l2_weight)
        # The query prediction head learns to decode each view's (fixed) noisy code from the
        # (fixed) features of its partner; it does not shape the backbone.
        h_partner = torch.cat([h2, h1], dim=0).detach()
        head_term = prediction_head_loss(c_hat.detach(), self.encoder.predictor(h_partner))
        return encoder_term + head_term, a1

    def num_negatives(self, global_batch: int) -> int:
        return len(self.queue.keys)

    def after_step(self) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)


class SimCLR(Method):
    def __init__(self, encoder: PretrainEncoder, temperature: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature

    def loss(self, x1, x2, generator):
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        return nt_xent(a1, a2, self.temperature, gather=self.gather), a1


class MoCo(Method):
    """MoCo-v2: EMA key encoder, queue of normalised keys, symmetric InfoNCE."""

    def __init__(self, encoder: PretrainEncoder, queue_size: int, momentum: float = 0.99,
                 temperature: float = 0.2, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.key_encoder = ema_copy(encoder)
        self.momentum, self.temperature = momentum, temperature
        g = torch.Generator().manual_seed(seed)
        init = nn.functional.normalize(torch.randn(queue_size, encoder.code_dim, generator=g), dim=1)
        self.queue = KeyQueue(queue_size, encoder.code_dim, init)

    def loss(self, x1, x2, generator):
        _, (q1, q2), _ = self._encode_pair(x1, x2, self.query_encoder)
        with torch.no_grad():
            self.key_encoder.train(self.encoder.training)
            _, (k1, k2), _ = self._encode_pair(x1, x2, self.key_encoder)
        negatives = self.queue.keys.clone()
        loss = 0.5 * (info_nce(q1, k2, negatives, self.temperature) + info_nce(q2, k1, negatives, self.temperature))
        keys = nn.functional.normalize(torch.cat([k1, k2], dim=0), dim=1)
        self.queue.enqueue(self._all_keys(keys))
        return loss, q1

    def after_step(self) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)


def build_method(objective: str, encoder: PretrainEncoder, *, flip_prob: float, momentum_variant: bool,
                 queue_size: int, ema: float, temperature: float | None, l2_weight: float, seed: int,
                 teacher: nn.Module | None = None, negatives: int | None = None, bank_momentum: float = 0.5) -> Method:
    if objective == "nac":
        if momentum_variant:
            return NACMomentum(encoder, flip_prob, queue_size, ema, l2_weight, seed)
        return NAC(encoder, flip_prob)
    if objective == "simclr":
        return SimCLR(encoder, temperature or 0.5)
    if objective == "moco":
        return MoCo(encoder, queue_size, ema, temperature or 0.2, seed)
    if objective in BASELINE_OBJECTIVES:
        return build_baseline(objective, encoder, temperature=temperature, seed=seed, teacher=teacher,
                              negatives=negatives, bank_momentum=bank_momentum)
    raise ConfigError(f"Unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.")


# ------------------------------------------------------------ the paper's other baselines


class InsDis(Method):
    """Instance discrimination: a memory bank of one unit embedding per training image.

    Both views of an image are draws of its instance. The bank (and the NCE normaliser Z,
    estimated on the first step) are buffers, so they are part of the checkpoint; under
    torchrun every process applies every process's updates, so the banks stay identical.
    The update of a step is applied in ``after_step``, once the loss has been differentiated.
    """

    # With ``negatives=None`` a bank of at most this many images (CIFAR-10's 50,000, where the
    # paper computed the softmax exactly) gets the exact softmax, a larger one NCE with 4096.
    exact_up_to, default_negatives = 50_000, 4096

    def __init__(self, encoder: PretrainEncoder, temperature: float = 0.07, negatives: int | None = None,
                 bank_momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature, self.negatives, self.bank_momentum, self.seed = temperature, negatives, bank_momentum, seed
        self.register_buffer("normaliser", torch.zeros((), dtype=torch.float64))  # Z; 0 = not yet estimated
        self._indices: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def exact(self) -> bool:
        return self.noise_draws == 0

    def attach_dataset(self, images, mean, std) -> None:
        if self.negatives is None:
            self.noise_draws = 0 if len(images) <= self.exact_up_to else self.default_negatives
        else:
            self.noise_draws = self.negatives
        g = torch.Generator().manual_seed(self.seed)
        bank = nn.functional.normalize(torch.randn(len(images), self.encoder.code_dim, generator=g), dim=1)
        self.register_buffer("memory", bank.to(images.device))

    def begin_step(self, indices: torch.Tensor) -> None:
        self._indices = indices

    def loss(self, x1, x2, generator):
        from nacvae.objectives import insdis_nce_loss, insdis_softmax_loss, nce_normaliser, sample_noise_indices

        if self._indices is None:
            raise RuntimeError("InsDis needs begin_step(indices) before each loss")
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        f1, f2 = nn.functional.normalize(a1, dim=1), nn.functional.normalize(a2, dim=1)
        f = torch.cat([f1, f2], dim=0)
        index = torch.cat([self._indices, self._indices]).to(self.memory.device)
        n = self.memory.shape[0]
        if self.exact:
            loss = insdis_softmax_loss(f, self.memory, index, self.temperature)
        else:
            noise = self.memory[sample_noise_indices(n, self.noise_draws, generator, self.memory.device)]
            if float(self.normaliser) == 0.0:
                z = nce_normaliser(f, noise, self.temperature, n).double()
                self.normaliser.copy_(distributed.all_reduce_sum(z) / distributed.world_size())
            loss = insdis_nce_loss(f, self.memory[index], noise, self.temperature, n, self.normaliser.to(f.dtype))
        # Every process's rows and embeddings, for an identical bank update everywhere.
        rows = self._all_keys(self._indices.to(self.memory.device))
        new = self._all_keys(0.5 * (f1 + f2).detach())
        self._pending = (rows, new)
        return loss, a1

    def after_step(self) -> None:
        from nacvae.objectives import memory_update

        if self._pending is not None:
            memory_update(self.memory, *self._pending, self.bank_momentum)
            self._pending = None


class DeepBit(Method):
    """DeepBit: bit probabilities sigmoid(a) of view 1 and of its rotations by ``angles``.

    With ``frozen_backbone`` only the head (the hash layer) learns, as in the authors'
    release, which trains a hash layer on a fixed ImageNet network; the backbone also stays
    in eval mode, so its batch-norm statistics remain those it was given.
    """

    def __init__(self, encoder: PretrainEncoder, angles: tuple[float, ...] = (-10.0, 10.0),
                 rotation_weights: tuple[float, ...] = (1.0, 1.0), weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 frozen_backbone: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.angles, self.rotation_weights, self.weights = angles, rotation_weights, weights
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            encoder.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "DeepBit":
        super().train(mode)
        if self.frozen_backbone:
            self.encoder.backbone.eval()
        return self

    def loss(self, x1, x2, generator):
        from nacvae.objectives import deepbit_loss, rotate_images

        rotated = torch.cat([rotate_images(x1, angle) for angle in self.angles], dim=0)
        _, (a, a_rot), _ = self._encode_pair(x1, rotated, self.query_encoder)
        p = torch.sigmoid(a)
        p_rot = torch.sigmoid(a_rot).chunk(len(self.angles), dim=0)
        alpha, beta, gamma = self.weights
        return deepbit_loss(p, p_rot, self.rotation_weights, alpha, beta, gamma), a


class _TeacherPairs(Method):
    """Shared by SSDH and DistillHash: pair labels from a fixed teacher's features.

    The teacher's features of every training image and the two distance thresholds are
    computed once (``attach_dataset``; on rank 0 and broadcast under torchrun) and kept out of
    the checkpoint: a resumed run recomputes them from the same teacher. Both views of each
    image are coded; the two views of an image are a pair at distance 0.
    """

    max_threshold_images = 4000  # pairs of at most this many images estimate the thresholds

    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, seed: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.__dict__["teacher"] = teacher  # not a submodule: not trained, not checkpointed
        self.seed = seed
        self.thresholds: tuple[float, float] | None = None
        self._indices: torch.Tensor | None = None

    def attach_dataset(self, images, mean, std) -> None:
        from nacvae.objectives import pair_distances
        from nacvae.train.teacher import teacher_features

        features = nn.functional.normalize(teacher_features(self.teacher, images, mean, std), dim=1)
        g = torch.Generator().manual_seed(self.seed)
        d = pair_distances(features, self.max_threshold_images, g)
        limits = torch.tensor(self.fit_thresholds(d), dtype=torch.float64, device=features.device)
        if distributed.is_distributed():
            torch.distributed.broadcast(features, 0)
            torch.distributed.broadcast(limits, 0)
        self.register_buffer("teacher_features", features, persistent=False)
        self.thresholds = (float(limits[0]), float(limits[1]))

    def fit_thresholds(self, distances: torch.Tensor) -> tuple[float, float]:
        raise NotImplementedError

    def begin_step(self, indices: torch.Tensor) -> None:
        self._indices = indices

    def _pairs(self, x1, x2):
        from nacvae.objectives import cosine_distances

        if self._indices is None or self.thresholds is None:
            raise RuntimeError(f"{type(self).__name__} needs attach_dataset() and begin_step(indices)")
        _, (a1, a2), _ = self._encode_pair(x1, x2, self.query_encoder)
        h = torch.tanh(torch.cat([a1, a2], dim=0))
        feats = self.teacher_features[self._indices.to(self.teacher_features.device)]
        d = cosine_distances(feats)
        d = torch.cat([torch.cat([d, d], dim=1)] * 2, dim=0).to(h.dtype)  # the same image in either view
        return h, d, a1


class SSDH(_TeacherPairs):
    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, alpha: float = 2.0, beta: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__(encoder, teacher, seed)
        self.alpha, self.beta = alpha, beta

    def fit_thresholds(self, distances):
        from nacvae.objectives import fit_half_gaussians

        return fit_half_gaussians(distances).thresholds(self.alpha, self.beta)

    def loss(self, x1, x2, generator):
        from nacvae.objectives import pseudo_similarity, ssdh_loss

        h, d, a1 = self._pairs(x1, x2)
        return ssdh_loss(h, pseudo_similarity(d, *self.thresholds)), a1


class DistillHash(_TeacherPairs):
    def __init__(self, encoder: PretrainEncoder, teacher: nn.Module, similar_fraction: float = 0.05,
                 dissimilar_fraction: float = 0.5, seed: int = 0) -> None:
        super().__init__(encoder, teacher, seed)
        self.similar_fraction, self.dissimilar_fraction = similar_fraction, dissimilar_fraction

    def fit_thresholds(self, distances):
        from nacvae.objectives import distill_thresholds

        return distill_thresholds(distances, self.similar_fraction, self.dissimilar_fraction)

    def loss(self, x1, x2, generator):
        from nacvae.objectives import distilled_pairs, distillhash_loss

        h, d, a1 = self._pairs(x1, x2)
        return distillhash_loss(h, *distilled_pairs(d, *self.thresholds)), a1


def adopt_backbone(backbone: nn.Module, teacher: nn.Module) -> None:
    """Copy the teacher's weights into ``backbone``; they must be a backbone of its kind."""
    mine, theirs = backbone.state_dict(), teacher.state_dict()
    if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
        raise ConfigError("--objective deepbit trains its hash layer on the --teacher's frozen backbone, so the "
                          "teacher must be a backbone of the run's --arch, and this one is not.")
    backbone.load_state_dict(theirs)


def build_baseline(objective: str, encoder: PretrainEncoder, *, temperature: float | None, seed: int,
                   teacher: nn.Module | None, negatives: int | None, bank_momentum: float) -> Method:
    if objective == "insdis":
        return InsDis(encoder, temperature or 0.07, negatives, bank_momentum, seed)
    if objective == "deepbit":
        if teacher is not None:
            adopt_backbone(encoder.backbone, teacher)
        return DeepBit(encoder, frozen_backbone=teacher is not None)
    if teacher is None:
        raise ConfigError(f"--objective {objective} needs --teacher, a pretraining run or backbone state dict.")
    if objective == "ssdh":
        return SSDH(encoder, teacher, seed=seed)
    return DistillHash(encoder, teacher, seed=seed)


def prepare_method(method: Method, device: torch.device, *, amp: bool, compile: bool = False,
                   sync_bn: bool = False) -> Method:
    """Speed-ups for the device and, under torchrun, the multi-process wiring.

    Call once the weights are final (after resuming). No step replaces a parameter object,
    so an optimiser built earlier keeps working.
    """
    method.amp_dtype = torch.bfloat16 if amp else None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes
    if device.type in ("cuda", "cpu"):
        # cuDNN's and oneDNN's convolutions run without layout reorders in NHWC: on a
        # 2-core CPU a small conv net's step is ~25% faster, a ResNet-18's about the same.
        method.channels_last = True
        method.to(memory_format=torch.channels_last)
    multi = distributed.is_distributed()
    if multi and sync_bn:
        # The trained encoder only: a key encoder runs without gradients and its weights
        # follow the encoder by EMA, so per-process statistics serve it, and every
        # SyncBatchNorm layer costs collectives and a host-device wait per forward pass.
        method.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(method.encoder)
    if compile:
        for encoder in (method.encoder, getattr(method, "key_encoder", None)):
            if encoder is not None:
                encoder.backbone.compile()  # in place: state-dict keys are unchanged
    if multi:
        from torch.nn.parallel import DistributedDataParallel

        # Only the trainable encoder is synchronised: key encoders follow its (identical)
        # weights by EMA and queues receive every process's keys, so they stay identical.
        ddp = DistributedDataParallel(method.encoder, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)
        method.wrap_encoder(ddp)
        method.gather = distributed.gather_with_grad
        method.gather_no_grad = distributed.gather_no_grad
    return method

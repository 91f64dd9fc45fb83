"""The method of a run: built from the registry for a configuration, then placed on its
device (bf16, channels-last, torch.compile, and under torchrun the multi-process wiring)."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
from types import ModuleType
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nacvae import distributed, registry
from nacvae.methods.base import Method
from nacvae.methods.teacher import adopt_backbone, load_teacher
from nacvae.models.backbones import build_backbone, stem_for
from nacvae.models.heads import PretrainEncoder
from nacvae.train.config import PretrainConfig


def build_encoder(cfg: PretrainConfig, image_shape: tuple[int, int, int]) -> PretrainEncoder:
    """The method's encoder: its own projection head, or NAC's (the shared recipe)."""
    backbone, feature_dim = build_backbone(cfg.arch, image_shape[0], image_shape[1], stem=stem_for(cfg.data))
    spec = cfg.spec
    head, std = (spec.head, spec.head_std) if cfg.recipe == "own" else ("mlp", None)
    return PretrainEncoder(backbone, feature_dim, cfg.code_dim, predictor=spec.predictor, head=head, head_std=std)


def build_method(cfg: PretrainConfig, image_shape: tuple[int, int, int]) -> Method:
    """The method ``cfg.objective`` with its options, its encoder seeded by ``cfg.seed``.

    Under its own recipe a method that starts from its teacher gets the teacher's backbone
    weights (SSDH, DistillHash: then fine-tuned); the package's methods are told the recipe
    (``recipe=``), a user's method module need not take it."""
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(cfg, image_shape)
    teacher = None
    if cfg.options.get("teacher") is not None:
        teacher, _ = load_teacher(cfg.options["teacher"], image_shape)
    own = cfg.recipe == "own"
    if own and cfg.spec.start == "teacher":
        adopt_backbone(encoder.backbone, teacher,
                       f"{cfg.objective} starts from its --teacher and fine-tunes it (its recipe; --recipe shared "
                       f"starts from random weights)")
    module = method_module(cfg.objective)
    kwargs = {"recipe": cfg.recipe} if "recipe" in inspect.signature(module.build).parameters else {}
    return module.build(encoder, cfg.options, seed=cfg.seed, teacher=teacher, **kwargs)


def method_module(name: str) -> ModuleType:
    """The module of method ``name``: in the package, or a user's file ($NACVAE_METHODS)."""
    module = registry.module_name(name)
    if module is not None:
        return importlib.import_module(module)
    path = registry.source(name)
    module = f"nacvae_user_methods.{path.stem}"
    if module not in sys.modules:
        spec = importlib.util.spec_from_file_location(module, path)
        sys.modules[module] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module])
    return sys.modules[module]


def encoder_step_probe(encoder: nn.Module, image_shape: tuple[int, int, int], images: int,
                       device: torch.device) -> Callable[[bool], None]:
    """``step(amp)``: one forward and backward pass of a copy of ``encoder`` on ``images``
    random inputs (channels-last, as the training runs it), under bf16 autocast when
    ``amp``. The copy keeps the run's weights, batch-norm statistics and random streams as
    they are."""
    twin = copy.deepcopy(encoder).to(device)
    if device.type in ("cuda", "cpu"):
        twin.to(memory_format=torch.channels_last)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(images, *image_shape, generator=gen).to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in twin.parameters() if p.requires_grad]

    def step(amp: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = twin(x)
        loss = sum(t.float().square().mean() for t in outputs if isinstance(t, torch.Tensor) and t.requires_grad)
        if params and isinstance(loss, torch.Tensor):
            torch.autograd.grad(loss, params, allow_unused=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


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
        # Only the trainable encoder is synchronised: key encoders follow its (identical)
        # weights by EMA and queues receive every process's keys, so they stay identical.
        ddp = DistributedDataParallel(method.encoder, device_ids=[device.index] if device.type == "cuda" else None,
                                      gradient_as_bucket_view=True)
        method.wrap_encoder(ddp)
        method.gather = distributed.gather_with_grad
        method.gather_no_grad = distributed.gather_no_grad
    return method

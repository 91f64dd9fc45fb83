"""docs/guide.md's loading recipe loads every backbone's export into the model it names
and computes nacvae's features; the export carries the input normalisation."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nacvae.checkpoint import BACKBONE_PREFIX, save_checkpoint
from nacvae.data.augment import normalize
from nacvae.models.backbones import ARCHITECTURES, build_backbone
from nacvae.transfer import export_backbone

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def guide_recipe() -> dict:
    text = GUIDE.read_text()
    match = re.search(r"<!-- export-recipe -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/guide.md lost its marked export recipe"
    namespace: dict = {}
    exec(compile(match.group(1), str(GUIDE), "exec"), namespace)
    return namespace


def fake_checkpoint(path: Path, arch: str, channels: int, size: int, mean, std) -> torch.nn.Module:
    torch.manual_seed(len(arch))
    backbone, _ = build_backbone(arch, channels, size)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is exercised
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model = {BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    meta = {"arch": arch, "objective": "nac", "dataset": "cifar10" if channels == 3 else "digits",
            "code_dim": 8, "image_shape": [channels, size, size], "feature_dim": 0, "mean": mean, "std": std}
    save_checkpoint(path, "pretrain", meta, {}, model, step=1, complete=True)
    return backbone.eval()


SLOW = pytest.mark.slow  # building a VGG-16-BN or ResNet-50 takes tens of seconds on a busy CPU
CASES = [("smallconv", 1), ("smallconv", 3), ("resnet18", 1), pytest.param("resnet18", 3, marks=SLOW),
         pytest.param("resnet50", 3, marks=SLOW), pytest.param("vgg16_bn", 1, marks=SLOW),
         pytest.param("vgg16_bn", 3, marks=SLOW)]


def test_every_architecture_is_covered():
    assert {tuple(getattr(case, "values", case)) for case in CASES} >= {(a, 3) for a in ARCHITECTURES}


@pytest.mark.parametrize("arch, channels", CASES)
def test_recipe_loads_every_backbone(arch, channels, tmp_path):
    size = 32
    mean, std = [0.3, 0.4, 0.5][:channels], [0.2, 0.25, 0.3][:channels]
    backbone = fake_checkpoint(tmp_path / "ckpt.pt", arch, channels, size, mean, std)
    export_backbone(tmp_path / "ckpt.pt", tmp_path / "backbone.pt")
    net, transform = guide_recipe()["load_nacvae_backbone"](tmp_path / "backbone.pt")

    info = torch.load(tmp_path / "backbone.pt", weights_only=True)._metadata["nacvae"]
    assert info == {"arch": arch, "dataset": "cifar10" if channels == 3 else "digits", "channels": channels,
                    "image_size": size, "mean": mean, "std": std}

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, size, size, channels), dtype=np.uint8)
    uint8 = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    expected_input = normalize(uint8, mean, std)
    mode = "L" if channels == 1 else "RGB"
    given = torch.stack([transform(Image.fromarray(p.squeeze(-1) if channels == 1 else p, mode)) for p in pixels])
    torch.testing.assert_close(given, expected_input)
    with torch.no_grad():
        torch.testing.assert_close(net(given), backbone(expected_input), rtol=1e-4, atol=1e-4)


def test_export_command_prints_the_normalisation(tmp_path):
    from tests.clitools import nacvae

    fake_checkpoint(tmp_path / "ckpt.pt", "smallconv", 1, 8, [0.3054], [0.378])
    result = nacvae("export", "--checkpoint", tmp_path / "ckpt.pt", "--out", tmp_path / "backbone.pt")
    assert result.exit_code == 0, result.output
    assert "smallconv backbone (1 input channels)" in result.output
    assert "Input: 1x8x8 images scaled to [0, 1], then (x - mean) / std per channel with mean (0.3054) and " \
           "std (0.3780)." in result.output

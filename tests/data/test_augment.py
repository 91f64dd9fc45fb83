import colorsys
import importlib

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from nacvae.data import AugmentConfig, augment, default_augment, normalize, two_views
from nacvae.errors import ConfigError

# The package re-exports the function `augment`, which hides the module of that name.
aug = importlib.import_module("nacvae.data.augment")

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
MEAN1, STD1 = (0.3,), (0.35,)


def images(c, n=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def stats(c):
    return (MEAN3, STD3) if c == 3 else (MEAN1, STD1)


def identity_cfg(c, size, **kw):
    mean, std = stats(c)
    base = dict(crop_scale=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    base.update(kw)
    return AugmentConfig(size=size, mean=mean, std=std, **base)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("size", [16, 24, 8])
def test_shape_and_dtype(c, size):
    x = images(c)
    cfg = AugmentConfig(size=size, mean=stats(c)[0], std=stats(c)[1])
    y = augment(x, cfg, gen())
    assert y.shape == (8, c, size, size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert x.dtype == torch.uint8  # input untouched


@pytest.mark.parametrize("c", [1, 3])
def test_same_seed_same_views_other_seed_other_views(c):
    x = images(c)
    cfg = AugmentConfig(size=16, mean=stats(c)[0], std=stats(c)[1])
    a = augment(x, cfg, gen(1))
    b = augment(x, cfg, gen(1))
    other = augment(x, cfg, gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, other)


def test_two_views_are_different_views_of_the_same_images():
    x = images(3)
    cfg = AugmentConfig(size=16, mean=MEAN3, std=STD3)
    v1, v2 = two_views(x, cfg, gen())
    assert v1.shape == v2.shape == (8, 3, 16, 16)
    assert not torch.allclose(v1, v2)
    w1, w2 = two_views(x, cfg, gen())
    assert torch.equal(v1, w1) and torch.equal(v2, w2)


@pytest.mark.parametrize("c", [1, 3])
def test_no_op_settings_equal_normalize(c):
    x = images(c)
    y = augment(x, identity_cfg(c, 16), gen())
    expected = normalize(x, *stats(c))
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_flip_always_equals_mirrored_input(c):
    x = images(c)
    y = augment(x, identity_cfg(c, 16, flip_p=1.0), gen())
    torch.testing.assert_close(y, normalize(x.flip(-1), *stats(c)), atol=1e-5, rtol=0)


def test_normalize_resizes_and_leaves_input_alone():
    x = images(3).float() / 255
    before = x.clone()
    y = normalize(x, MEAN3, STD3, size=8)
    assert y.shape == (8, 3, 8, 8)
    assert torch.equal(x, before)
    z = normalize(x, MEAN3, STD3)
    assert torch.equal(x, before)
    m = torch.tensor(MEAN3).view(1, 3, 1, 1)
    s = torch.tensor(STD3).view(1, 3, 1, 1)
    torch.testing.assert_close(z, (x - m) / s)


def test_channel_count_must_match_statistics():
    with pytest.raises(ConfigError):
        augment(images(1), AugmentConfig(size=16, mean=MEAN3, std=STD3), gen())
    with pytest.raises(ConfigError):
        normalize(images(3), MEAN1, STD1)


@pytest.mark.parametrize(
    "kw",
    [
        dict(size=0),
        dict(crop_scale=(0.0, 1.0)),
        dict(crop_scale=(0.9, 0.5)),
        dict(crop_ratio=(2.0, 1.0)),
        dict(flip_p=1.5),
        dict(gray_p=-0.1),
        dict(jitter=(0.4, 0.4, 0.4, 0.6)),
        dict(jitter=(-0.1, 0.4, 0.4, 0.1)),
        dict(std=(0.0, 1.0, 1.0)),
    ],
)
def test_config_validation(kw):
    args = dict(size=16, mean=MEAN3, std=STD3)
    args.update(kw)
    with pytest.raises(ConfigError):
        AugmentConfig(**args)


def test_default_augment_settings():
    cifar = default_augment("cifar10", (3, 32, 32), MEAN3, STD3)
    assert (cifar.size, cifar.crop_scale, cifar.flip_p) == (32, (0.08, 1.0), 0.5)
    assert cifar.jitter == (0.4, 0.4, 0.4, 0.1) and cifar.jitter_p == 0.8 and cifar.gray_p == 0.2
    folder = default_augment("folder:/x", (3, 48, 48), MEAN3, STD3)
    assert folder.size == 48 and folder.crop_scale == (0.08, 1.0)
    digits = default_augment("digits", (1, 8, 8), MEAN1, STD1)
    assert digits.size == 8 and digits.flip_p == 0.0 and digits.crop_scale[0] > 0.08
    fashion = default_augment("fashion-mnist", (1, 28, 28), MEAN1, STD1)
    assert fashion.size == 28 and fashion.crop_scale[0] > 0.08 and fashion.flip_p == 0.5


# ----------------------------------------------------------------------- colour ops


def float_images(n=6, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    x[0, :, :4] = 0.5  # grey pixels
    x[1, :, :2] = 1.0  # white
    x[1, :, 2:4] = 0.0  # black
    return x


def test_identity_factors_leave_images_unchanged():
    x = float_images()
    torch.testing.assert_close(aug.adjust_hue(x, 0.0), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(aug.adjust_hue(x, 1e-9), x, atol=1e-5, rtol=0)
    assert torch.equal(aug.adjust_brightness(x, 1.0), x)
    torch.testing.assert_close(aug.adjust_contrast(x, 1.0), x)
    torch.testing.assert_close(aug.adjust_saturation(x, 1.0), x)


def test_hsv_round_trip_is_identity():
    x = float_images(n=16, size=16)
    torch.testing.assert_close(aug.hsv_to_rgb(aug.rgb_to_hsv(x)), x, atol=1e-6, rtol=0)
    hsv = aug.rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1


def test_hsv_agrees_with_colorsys():
    x = float_images(n=2, size=6)
    hsv = aug.rgb_to_hsv(x)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                r, g, bl = x[b, :, i, j].tolist()
                h, s, v = colorsys.rgb_to_hsv(r, g, bl)
                got = hsv[b, :, i, j].tolist()
                # Hue is circular: 0 and 1 are the same angle.
                assert min(abs(got[0] - h), 1 - abs(got[0] - h)) < 1e-5
                assert got[1:] == pytest.approx([s, v], abs=1e-5)


def test_hue_shift_of_a_full_turn_third_permutes_primaries():
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    blue = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(aug.adjust_hue(red, 1 / 3), green)
    torch.testing.assert_close(aug.adjust_hue(red, -1 / 3), blue)


def test_grayscale_weights_independently():
    primaries = torch.eye(3).view(3, 3, 1, 1)
    luma = aug.rgb_to_grayscale(primaries).flatten().tolist()
    assert luma == pytest.approx([0.299, 0.587, 0.114], abs=2e-4)
    # PIL's integer ITU-R 601-2 conversion, to within rounding.
    rgb = images(3, n=1, size=16, seed=3)[0]
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy(), mode="RGB").convert("L")
    ours = aug.rgb_to_grayscale(rgb[None].float())[0, 0]
    assert (ours - torch.from_numpy(np.array(pil)).float()).abs().max() <= 1.0


def test_random_grayscale_replicates_luma():
    x = images(3)
    y = augment(x, identity_cfg(3, 16, gray_p=1.0), gen())
    luma = aug.rgb_to_grayscale(x.float() / 255)
    expected = normalize(luma.expand(-1, 3, -1, -1).contiguous(), MEAN3, STD3)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "ours, theirs, factor",
    [
        (aug.adjust_brightness, TF.adjust_brightness, 1.3),
        (aug.adjust_brightness, TF.adjust_brightness, 0.6),
        (aug.adjust_contrast, TF.adjust_contrast, 1.4),
        (aug.adjust_contrast, TF.adjust_contrast, 0.6),
        (aug.adjust_saturation, TF.adjust_saturation, 1.4),
        (aug.adjust_saturation, TF.adjust_saturation, 0.6),
        (aug.adjust_hue, TF.adjust_hue, 0.1),
        (aug.adjust_hue, TF.adjust_hue, -0.1),
        (aug.adjust_hue, TF.adjust_hue, 0.5),
    ],
)
def test_colour_ops_match_torchvision(ours, theirs, factor):
    x = float_images()
    expected = torch.stack([theirs(img, factor) for img in x])
    torch.testing.assert_close(ours(x, factor), expected, atol=1e-5, rtol=0)


def test_per_image_factors_match_torchvision():
    x = float_images()
    factors = torch.tensor([0.6, 0.8, 1.0, 1.1, 1.25, 1.4])
    hues = torch.tensor([-0.1, -0.05, 0.0, 0.02, 0.07, 0.1])
    for ours, theirs, f in [
        (aug.adjust_brightness, TF.adjust_brightness, factors),
        (aug.adjust_contrast, TF.adjust_contrast, factors),
        (aug.adjust_saturation, TF.adjust_saturation, factors),
        (aug.adjust_hue, TF.adjust_hue, hues),
    ]:
        expected = torch.stack([theirs(img, float(v)) for img, v in zip(x, f)])
        torch.testing.assert_close(ours(x, f), expected, atol=1e-5, rtol=0)


def test_single_channel_colour_ops():
    x = float_images()[:, :1]
    assert torch.equal(aug.adjust_saturation(x, 0.3), x)
    assert torch.equal(aug.adjust_hue(x, 0.2), x)
    assert torch.equal(aug.rgb_to_grayscale(x), x)
    expected = torch.stack([TF.adjust_contrast(img, 0.7) for img in x])
    torch.testing.assert_close(aug.adjust_contrast(x, 0.7), expected, atol=1e-6, rtol=0)
    # Grayscale is a no-op for one channel, whatever gray_p says.
    g = images(1)
    y = augment(g, identity_cfg(1, 16, gray_p=1.0), gen())
    torch.testing.assert_close(y, normalize(g, MEAN1, STD1), atol=1e-5, rtol=0)


def test_jitter_applies_the_ops_in_a_random_order_per_image():
    x = float_images(n=32, size=8, seed=5)
    cfg = AugmentConfig(size=8, mean=MEAN3, std=STD3, jitter_p=0.7)
    out = aug._colour_jitter(x, cfg, gen(11))

    # Replay the same draws and apply torchvision's ops image by image.
    g = gen(11)
    b = len(x)
    apply = torch.rand(b, generator=g) < cfg.jitter_p
    lows, highs = [0.6, 0.6, 0.6, -0.1], [1.4, 1.4, 1.4, 0.1]
    factors = [torch.rand(b, generator=g) * (hi - lo) + lo for lo, hi in zip(lows, highs)]
    order = torch.rand((b, 4), generator=g).argsort(dim=1)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    assert 0 < int(apply.sum()) < b
    assert len({tuple(o.tolist()) for o in order[apply]}) > 1
    for i in range(b):
        img = x[i]
        if apply[i]:
            for k in order[i].tolist():
                img = ops[k](img, float(factors[k][i]))
        torch.testing.assert_close(out[i], img, atol=1e-5, rtol=0)


@pytest.mark.parametrize("op", [aug.adjust_contrast, aug.adjust_hue])
def test_subset_and_masked_selection_agree(op):
    # Accelerators compute each op for the whole batch and select; CPU indexes a subset.
    x = float_images(n=10)
    sel = torch.tensor([True, False, True, True, False, False, True, False, True, False])
    f = torch.linspace(-0.1, 0.1, 10) if op is aug.adjust_hue else torch.linspace(0.6, 1.4, 10)
    a = aug._apply_to(x, sel, op, f, subset=True)
    b = aug._apply_to(x, sel, op, f, subset=False)
    assert torch.equal(a[~sel], x[~sel])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


# ------------------------------------------------------------------- crop and resize


def test_crop_resize_and_flip_match_torchvision():
    x = float_images(n=3, size=16)
    boxes = torch.tensor([[2.0, 3.0, 9.0, 7.0], [0.0, 0.0, 16.0, 16.0], [5.0, 1.0, 11.0, 15.0]])
    flip = torch.tensor([False, True, True])
    out = aug.crop_flip_resize(x, boxes, flip, 24)
    for i in range(3):
        t, l, h, w = (int(v) for v in boxes[i])
        ref = TF.resized_crop(x[i], t, l, h, w, [24, 24], antialias=False)
        if flip[i]:
            ref = ref.flip(-1)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_crop_statistics_follow_scale_and_ratio():
    n, side = 20000, 32
    boxes = aug.sample_crops(n, side, side, (0.08, 1.0), (3 / 4, 4 / 3), gen(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= side).all() and (left + w <= side).all()
    assert (h >= 1).all() and (w >= 1).all()
    frac = (h * w) / side**2
    assert 0.08 <= frac.mean() <= 1.0
    assert 0.45 < frac.mean() < 0.6  # uniform in [0.08, 1] less the rejected large crops
    ratio = w / h
    # Rounding to whole pixels can move the ratio slightly outside the range.
    assert ratio.min() > 0.6 and ratio.max() < 1.7
    # Crops are spread over the image rather than stuck to a corner.
    assert top.float().std() > 2 and left.float().std() > 2

    narrow = aug.sample_crops(500, side, side, (0.3, 0.5), (1.0, 1.0), gen(1))
    frac = narrow[:, 2] * narrow[:, 3] / side**2
    assert frac.min() >= 0.28 and frac.max() <= 0.52


def test_crop_falls_back_to_the_central_crop():
    # A 32x16 (H x W) image has aspect 0.5, outside (3/4, 4/3): no full-area crop is valid.
    boxes = aug.sample_crops(50, 32, 16, (1.0, 1.0), (3 / 4, 4 / 3), gen(0))
    expected = torch.tensor([5.0, 0.0, 21.0, 16.0]).expand(50, 4)
    assert torch.equal(boxes, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_images_device():
    x = images(3, n=64).cuda()
    cfg = AugmentConfig(size=16, mean=MEAN3, std=STD3)
    g1 = torch.Generator(device="cuda").manual_seed(0)
    g2 = torch.Generator(device="cuda").manual_seed(0)
    a, b = augment(x, cfg, g1), augment(x, cfg, g2)
    assert a.device.type == "cuda" and torch.equal(a, b)
    with pytest.raises(ValueError):
        augment(x, cfg, gen())


def test_cpu_jitter_works_on_one_copy_and_leaves_the_input_alone():
    x = float_images(n=32, size=8, seed=5)
    before = x.clone()
    cfg = AugmentConfig(size=8, mean=MEAN3, std=STD3, jitter_p=0.9)
    out = aug._colour_jitter(x, cfg, gen(11))
    assert torch.equal(x, before) and not torch.equal(out, x)
    owned = aug._colour_jitter(x.clone(), cfg, gen(11), owned=True)
    assert torch.equal(owned, out)  # writing into the caller's scratch gives the same values
    # The accelerators' path (every op on the whole batch, then selected) agrees.
    masked = x.clone()
    g = gen(11)
    b = len(x)
    apply = torch.rand(b, generator=g) < cfg.jitter_p
    factors = [torch.rand(b, generator=g) * (hi - lo) + lo for lo, hi in zip([0.6, 0.6, 0.6, -0.1], [1.4, 1.4, 1.4, 0.1])]
    order = torch.rand((b, 4), generator=g).argsort(dim=1)
    ops = [aug.adjust_brightness, aug.adjust_contrast, aug.adjust_saturation, aug.adjust_hue]
    for stage in range(4):
        for k, op in enumerate(ops):
            masked = aug._apply_to(masked, apply & (order[:, stage] == k), op, factors[k], subset=False)
    torch.testing.assert_close(out, masked, atol=1e-6, rtol=0)

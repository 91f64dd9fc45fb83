"""Streamed sources: the ImageNet layout, crop geometry, folder streaming, decoding in workers."""

import numpy as np
import pytest
import torch

from nacvae.data.catalog import open_dataset
from nacvae.data.imagenet import load_imagenet
from nacvae.data.crops import centre_box, random_resized_box, resize_centre_crop
from nacvae.data.stream import StreamedImages, eval_batches, train_batches
from nacvae.errors import DataError
from tests.imagefiles import make_imagenet


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"))


def test_imagenet_layout_is_listed_with_sorted_classes(imagenet):
    train = open_dataset("imagenet", "train", imagenet)
    test = open_dataset("imagenet", "test", imagenet)
    assert isinstance(train, StreamedImages) and train.image_shape == (3, 224, 224)
    assert train.classes == ["n01440764", "n01443537"] and len(train) == 6 and len(test) == 4
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and test.labels.tolist() == [0, 0, 1, 1]
    assert all("/val/" in f for f in test.files)


def test_missing_imagenet_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="ImageFolder") as err:
        load_imagenet(tmp_path, "train")
    message = str(err.value)
    assert message.count(". ") == 0 and message.endswith(".") and "train/" in message


def test_val_classes_must_be_train_classes(tmp_path):
    make_imagenet(tmp_path)
    (tmp_path / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999"):
        load_imagenet(tmp_path, "test")


def test_random_resized_box_follows_torchvision_rule():
    rng = np.random.default_rng(0)
    for height, width in ((30, 40), (224, 224), (500, 60)):
        areas = []
        for _ in range(300):
            top, left, h, w = random_resized_box(height, width, rng)
            assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0
            areas.append(h * w / (height * width))
        # area fractions spread over [0.08, 1] (rounding aside) unless the fallback caps them
        assert min(areas) < 0.2 and max(areas) <= 1.0
    # a strip far wider than 4:3 can only fall back sometimes: the fallback is the centred 4:3 box
    top, left, h, w = random_resized_box(10, 1000, np.random.default_rng(1), scale=(1.0, 1.0))
    assert (top, h, w) == (0, 10, 13) and left == (1000 - 13) // 2


def test_eval_crop_is_resize_256_then_centre_224():
    from PIL import Image

    image = Image.fromarray(np.arange(300 * 400 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8))
    out = resize_centre_crop(image, 224)
    assert out.size == (224, 224)
    # the kept region of the original: a centred square of side 300 * 224 / 256 = 262.5
    top, left, h, w = centre_box(300, 400, 224)
    assert (h, w) == (262, 262) and top == 19 and left == 69


def test_train_views_are_independent_crops_and_do_not_depend_on_workers(imagenet):
    data = open_dataset("imagenet", "train", imagenet, image_size=32)
    keys = [[(0, 0), (0, 3)], [(0, 5), (1, 0)]]
    serial = list(train_batches(data, keys, 2, seed=7, workers=0, device=torch.device("cpu")))
    parallel = list(train_batches(data, keys, 2, seed=7, workers=2, device=torch.device("cpu")))
    assert serial[0].shape == (2, 2, 3, 32, 32) and serial[0].dtype == torch.uint8
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)
    assert not torch.equal(serial[0][0, 0], serial[0][0, 1])  # two different crops of one image
    assert not torch.equal(serial[0][0], serial[1][1])  # image 0 again in epoch 1: new crops


def test_eval_batches_follow_the_order_asked_for(imagenet):
    data = open_dataset("imagenet", "test", imagenet, image_size=32)
    every = torch.cat(list(eval_batches(data, 3, 0, torch.device("cpu"))))
    some = torch.cat(list(eval_batches(data, 3, 1, torch.device("cpu"), indices=[3, 1])))
    assert every.shape == (4, 3, 32, 32) and torch.equal(some, every[[3, 1]])


def test_large_folders_stream_with_the_in_memory_pixels(tmp_path, monkeypatch):
    import nacvae.data.catalog as catalog
    from nacvae.data.catalog import streams

    make_imagenet(tmp_path / "imgs", train_per_class=5, val_per_class=0, classes=("a", "b"))
    name = f"folder:{tmp_path / 'imgs' / 'train'}"
    in_memory = open_dataset(name, "train", image_size=16)
    assert not streams(name, 16)
    # The rule: a split whose uint8 images at the training size exceed FOLDER_STREAM_BYTES streams.
    decoded = len(in_memory) * 3 * 16 * 16
    monkeypatch.setattr(catalog, "FOLDER_STREAM_BYTES", decoded)
    assert not streams(name, 16) and not isinstance(open_dataset(name, "train", image_size=16), StreamedImages)
    monkeypatch.setattr(catalog, "FOLDER_STREAM_BYTES", decoded - 1)
    assert streams(name, 16)
    streamed = open_dataset(name, "train", image_size=16)
    assert isinstance(streamed, StreamedImages) and streamed.crop == "resize"
    assert torch.equal(streamed.labels, in_memory.labels) and streamed.classes == in_memory.classes
    decoded_images = torch.cat(list(eval_batches(streamed, 4, 0, torch.device("cpu"))))
    assert torch.equal(decoded_images, in_memory.images)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision 0.29's notice
def test_the_gpu_decoding_path_crops_like_the_pil_path(imagenet):
    """The path CUDA runs take (workers hand over bytes and boxes, the main process decodes and
    crops), run here with torchvision's CPU decoder: the same geometry as PIL's resize + crop."""
    from nacvae.data.stream import _Files, _finish_on_device

    data = open_dataset("imagenet", "test", imagenet, image_size=24)
    encoded = _Files(data, 1, 0, train=False, encoded=True)
    plain = _Files(data, 1, 0, train=False, encoded=False)
    items = [encoded[i][0] for i in range(len(data))]
    assert all(isinstance(x, tuple) and x[0] == "jpeg" for x in items)
    on_device = _finish_on_device(items, 24, 3, False, torch.device("cpu"), encoded, None)
    reference = torch.stack([plain[i][0] for i in range(len(data))])
    assert on_device.shape == reference.shape == (4, 3, 24, 24) and on_device.dtype == torch.uint8
    # Two resampling orders of noise images: each image's channel means agree to a level or two,
    # and pixels differ by far less than unrelated noise would (about 85 levels on average).
    a, b = on_device.float(), reference.float()
    assert (a.mean((2, 3)) - b.mean((2, 3))).abs().max() < 2 and (a - b).abs().mean() < 20
    train = _Files(data, 2, 5, train=True, encoded=True)
    views = _finish_on_device([train[(0, 1)][0], train[(0, 2)][0]], 24, 3, True, torch.device("cpu"), train, None)
    assert views.shape == (2, 2, 3, 24, 24)

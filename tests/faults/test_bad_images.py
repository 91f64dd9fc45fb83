"""Bad images in streamed data: by default one sentence naming the file; with
--skip-bad-images a deterministic replacement, counted and named in the run's record."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nacvae.data.catalog import open_dataset
from nacvae.data.flickr import load_flickr_labelled
from nacvae.data.bad_images import BadImages
from nacvae.data.stream import train_batches
from nacvae.errors import DataError
from tests.clitools import assert_clean_failure, nacvae
from tests.imagefiles import make_imagenet, make_mirflickr, write_jpeg

# One worker: the bad image is met in a DataLoader worker process, as in real runs.
TINY = ["--arch", "smallconv", "--image-size", "16", "--batch-size", "4", "--code-dim", "8", "--workers", "1",
        "--quiet"]
CPU = torch.device("cpu")


def _damage(path, kind):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_text("not an image\n")


@pytest.fixture
def imagenet(tmp_path):
    """An ImageNet folder of 8 train images whose third is empty, and a bad val image."""
    root = make_imagenet(tmp_path / "imagenet", train_per_class=4, val_per_class=2)
    bad = root / "train" / "n01440764" / "n01440764_2.JPEG"
    _damage(bad, "empty")
    _damage(root / "val" / "n01443537" / "n01443537_1.JPEG", "text")
    return root, bad


@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_a_worker_hands_the_bad_file_back_as_its_own_sentence(tmp_path, kind):
    root = make_imagenet(tmp_path, train_per_class=3)
    bad = root / "train" / "n01443537" / "n01443537_0.JPEG"
    _damage(bad, kind)
    data = open_dataset("imagenet", "train", root, image_size=16)
    with pytest.raises(DataError) as err:
        list(train_batches(data, [[(0, 0), (0, 3)]], 2, seed=0, workers=1, device=CPU))
    message = str(err.value)
    assert message.startswith(f"{bad} could not be read as an image") and "--skip-bad-images" in message
    assert "Caught" not in message and "\n" not in message


def test_a_skipped_image_is_the_next_readable_one_with_its_own_crops(tmp_path):
    root = make_imagenet(tmp_path, train_per_class=3)
    data = open_dataset("imagenet", "train", root, image_size=16)
    keys = [[(0, 1), (0, 2), (0, 4)]]
    clean = torch.cat(list(train_batches(data, [[(0, 3)], [(0, 4)]], 2, seed=5, workers=0, device=CPU)))
    _damage(root / "train" / "n01440764" / "n01440764_2.JPEG", "truncated")
    _damage(root / "train" / "n01443537" / "n01443537_0.JPEG", "empty")  # index 3: the next is 4
    runs = []
    for workers in (0, 1, 0):
        record = BadImages()
        runs.append(torch.cat(list(train_batches(data, keys, 2, seed=5, workers=workers, device=CPU,
                                                 bad_images=record))))
        assert record.to_dict() == {"count": 2, "first": [data.files[2], data.files[3]]}
    assert runs[0].shape == (3, 2, 3, 16, 16)
    assert all(torch.equal(runs[0], r) for r in runs[1:])  # deterministic, whatever the workers
    # key (0, 2) is file 4 (3 is bad too) cut with key 2's draws; key (0, 4) is file 4 with its own
    assert not torch.equal(runs[0][1], runs[0][2]) and torch.equal(runs[0][2], clean[1])


def test_a_truncated_jpeg_stops_or_is_replaced_on_the_device_path_too(tmp_path, monkeypatch):
    """CUDA runs decode in the main process (run here on the CPU, the device's decoder refusing
    every file as nvjpeg refuses a damaged one): a file whose header reads but whose data PIL
    cannot decode either stops there, or is replaced as in a worker."""
    import torchvision.io

    from nacvae.data.stream import _Files, _finish_on_device

    def refuse(*args, **kwargs):
        raise RuntimeError("decode_jpeg failed")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", refuse)
    root = make_imagenet(tmp_path, train_per_class=3)
    data = open_dataset("imagenet", "train", root, image_size=16)
    bad = data.files[1]
    raw = Path(bad).read_bytes()
    Path(bad).write_bytes(raw[: len(raw) * 2 // 3])  # the header reads, the image data ends early
    encoded, plain = _Files(data, 2, 3, True, True, skip=True), _Files(data, 2, 3, True, False, skip=True)
    items = [encoded[(0, i)][0] for i in (0, 1)]
    assert all(isinstance(x, tuple) for x in items)
    with pytest.raises(DataError, match=f"^{bad} could not be decoded"):
        _finish_on_device(list(items), 16, 3, True, CPU, encoded, None)
    record = BadImages()
    out = _finish_on_device(list(items), 16, 3, True, CPU, encoded, record)
    assert out.shape == (2, 2, 3, 16, 16) and record.to_dict() == {"count": 1, "first": [bad]}
    assert torch.equal(out[1], plain[(0, 1)][0])  # the CPU path's replacement: file 2 with key 1's crops


def test_pretrain_stops_at_a_bad_image_with_one_sentence(imagenet, tmp_path):
    root, bad = imagenet
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", "imagenet", "--data-dir", root, "--out", out, "--steps", "2", *TINY)
    assert_clean_failure(result, f"{bad} could not be read as an image (UnidentifiedImageError); remove or replace "
                                 "that file, or pass --skip-bad-images")
    assert not out.exists()


def test_pretrain_skips_bad_images_and_records_them(imagenet, tmp_path):
    root, bad = imagenet
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", "imagenet", "--data-dir", root, "--out", out, "--steps", "2", *TINY,
                    "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert f"{bad} could not be read as an image (UnidentifiedImageError); skipped" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["status"] == "complete" and config["pretrain"]["skip_bad_images"] is True
    assert config["bad_images"] == {"count": 1, "first": [str(bad)]}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["bad_images"] for r in records if r["event"] == "train"][-1] == 1


def test_linear_probe_stops_at_a_bad_val_image(imagenet):
    root, _ = imagenet
    bad = root / "val" / "n01443537" / "n01443537_1.JPEG"
    result = nacvae("eval", "linear", "--init", "random", "--arch", "smallconv", "--data", "imagenet", "--data-dir",
                    root, "--image-size", "16", "--workers", "1", "--epochs", "1", "--quiet")
    assert_clean_failure(result, f"{bad} could not be read as an image")


@pytest.mark.parametrize("verb", [["linear", "--epochs", "1"], ["knn", "--k", "3"], ["codes"], ["retrieval"]])
def test_evaluators_skip_bad_images_and_say_how_many(imagenet, verb):
    """The evaluators' --skip-bad-images: the bad train and val images are replaced and counted."""
    import json

    root, _ = imagenet
    result = nacvae("eval", *verb, "--init", "random", "--arch", "smallconv", "--data", "imagenet", "--data-dir",
                    root, "--image-size", "16", "--workers", "1", "--quiet", "--json", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["bad_images"]["count"] >= 1
    assert all(name.endswith(".JPEG") for name in record["bad_images"]["first"])
    assert "unreadable image(s) were replaced" in result.stderr


def _shards(path, good=6, without_image=("000003",)):
    """One tar shard of ``good`` JPEG samples and samples that have only a class number."""
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for k in range(good + len(without_image)):
            key = f"{k:06d}"
            if key not in without_image:
                jpeg = path.parent / "tmp.jpg"
                write_jpeg(jpeg, 24, 20, seed=k)
                add(f"{key}.jpg", jpeg.read_bytes())
            add(f"{key}.cls", b"0")
    return path


def test_a_shard_sample_without_its_image_stops_or_is_skipped(tmp_path):
    pytest.importorskip("webdataset")
    shard = _shards(tmp_path / "train-000000.tar")
    args = ["pretrain", "--data", f"webdataset:{shard}", "--steps", "2", *TINY]  # 2 steps read every sample
    result = nacvae(*args, "--out", tmp_path / "stop")
    assert_clean_failure(result, f"The sample 000003 of {shard} has no image (jpg, jpeg, png, webp); write the "
                                 "shard again, or pass --skip-bad-images")
    # It stopped at step 2, after step 1's checkpoint: the run goes on with --skip-bad-images.
    assert json.loads((tmp_path / "stop" / "config.json").read_text())["status"] == "failed"
    result = nacvae("pretrain", "--resume", "--out", tmp_path / "stop", "--skip-bad-images", "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "stop" / "config.json").read_text())
    assert config["status"] == "complete" and config["pretrain"]["skip_bad_images"] is True
    result = nacvae(*args, "--out", tmp_path / "skip", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "skip" / "config.json").read_text())
    assert config["bad_images"] == {"count": 1, "first": [f"{shard}:000003"]}


def test_flickr_annotations_that_are_no_numbers_name_file_and_line(tmp_path):
    labels = np.zeros((4, 24), dtype=np.uint8)
    labels[:, 0] = 1
    root = make_mirflickr(tmp_path, labels)
    concept = root / "mirflickr25k_annotations_v080" / "baby.txt"
    concept.write_text("1\n\u00b2\n")  # '²' passes str.isdigit()
    with pytest.raises(DataError, match=rf"^Line 2 of {concept} is not a positive image number"):
        load_flickr_labelled(root)
    concept.write_bytes(b"1\n2\n\xff\xfe3\n")
    with pytest.raises(DataError, match=rf"^Line 3 of {concept} is not UTF-8 text"):
        load_flickr_labelled(root)

import gzip
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nacvae.data.sources.fashion_mnist as fashion_mnist
from nacvae.data import DATASET_NAMES, ImageData, channel_stats, default_data_dir, load_dataset
from nacvae.data.sources.imagedata import compute_stats
from nacvae.errors import ConfigError, DataError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def no_system_fashion_mnist(tmp_path, monkeypatch):
    # Tests must not depend on (or pick up) a system-wide copy unless they ask for it.
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-system-copy")


# ---------------------------------------------------------------------- general API


def test_image_data_properties():
    d = ImageData(
        images=torch.zeros(5, 3, 4, 6, dtype=torch.uint8),
        labels=torch.tensor([0, 1, 2, 1, 0]),
        classes=["a", "b", "c"],
        name="x",
    )
    assert len(d) == 5 and d.image_shape == (3, 4, 6) and d.num_classes == 3
    unlabelled = ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), None, None, "y")
    assert unlabelled.num_classes is None


def test_unknown_name_and_split_are_config_errors():
    with pytest.raises(ConfigError, match="digits, fashion-mnist, cifar10"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="train"):
        load_dataset("digits", split="val")
    with pytest.raises(ConfigError):
        load_dataset("folder:")
    with pytest.raises(ConfigError):
        load_dataset("digits", image_size=0)
    with pytest.raises(ConfigError):
        channel_stats("imagenet")
    assert DATASET_NAMES == ("digits", "fashion-mnist", "cifar10")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NACVAE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("NACVAE_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "nacvae" / "data"


# --------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_and_stratified():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1438, 359)
    assert train.images.dtype == torch.uint8 and train.image_shape == (1, 8, 8)
    assert train.labels.dtype == torch.int64 and train.classes == [str(i) for i in range(10)]
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # Same split every time, and no image in both splits.
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    from sklearn.datasets import load_digits

    n_class = np.bincount(load_digits().target)
    n_test = torch.bincount(test.labels, minlength=10).numpy()
    assert np.all(np.abs(n_test - 0.2 * n_class) <= 0.5)
    assert np.array_equal(n_test + torch.bincount(train.labels, minlength=10).numpy(), n_class)
    flat = lambda d: {bytes(row) for row in d.images.flatten(1).numpy()}  # noqa: E731
    # A few digits are exact duplicates of one another, so compare counts loosely.
    assert len(flat(train) & flat(test)) < 10


def test_digits_values_and_resize():
    from sklearn.datasets import load_digits

    raw = load_digits().images
    d = load_dataset("digits", "train")
    values = set(np.unique(d.images.numpy()).tolist())
    assert values <= {int(round(v * 255 / 16)) for v in range(17)}
    assert len(raw) == 1797
    big = load_dataset("digits", "test", image_size=16)
    assert big.image_shape == (1, 16, 16) and big.images.dtype == torch.uint8


def test_builtin_channel_stats():
    assert channel_stats("cifar10") == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    mean, std = channel_stats("digits")
    exact_mean, exact_std = compute_stats(load_dataset("digits").images)
    assert mean[0] == pytest.approx(exact_mean[0], abs=1e-3)
    assert std[0] == pytest.approx(exact_std[0], abs=1e-3)
    assert len(channel_stats("fashion-mnist")[0]) == 1


# -------------------------------------------------------------------- Fashion-MNIST


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    dims = struct.pack(">" + "I" * array.ndim, *array.shape)
    return struct.pack(">I", magic) + dims + array.tobytes()


def write_fmnist(folder: Path, n_train=6, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", imgs), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            payload = idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        data[prefix] = (imgs, labels)
    return data


@pytest.mark.parametrize("layout", ["fashion-mnist", ".", "FashionMNIST/raw", "raw-uncompressed"])
def test_fashion_mnist_layouts(tmp_path, layout):
    if layout == "raw-uncompressed":
        data = write_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    else:
        data = write_fmnist(tmp_path / layout)
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path, download=False)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert train.image_shape == (1, 28, 28) and len(train) == 6 and len(test) == 3
    assert np.array_equal(train.images[:, 0].numpy(), data["train"][0])
    assert np.array_equal(test.labels.numpy(), data["t10k"][1].astype(np.int64))
    assert train.labels.dtype == torch.int64 and train.num_classes == 10
    assert train.name == "fashion-mnist"


def test_fashion_mnist_prefers_the_torchvision_layout(tmp_path):
    write_fmnist(tmp_path / "fashion-mnist", n_train=4)
    write_fmnist(tmp_path / "FashionMNIST" / "raw", n_train=5)
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path, download=False)) == 5


def test_fashion_mnist_resize(tmp_path):
    write_fmnist(tmp_path)
    d = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, image_size=32)
    assert d.image_shape == (1, 32, 32) and d.images.dtype == torch.uint8


def corrupt(path: Path, how: str):
    raw = gzip.decompress(path.read_bytes())
    if how == "magic":
        raw = struct.pack(">I", 0x0801) + raw[4:]
        path.write_bytes(gzip.compress(raw))
    elif how == "short":
        path.write_bytes(gzip.compress(raw[:-10]))
    elif how == "gzip":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "text":
        path.write_bytes(b"not a gzip file at all")


@pytest.mark.parametrize("how", ["magic", "short", "gzip", "text"])
def test_fashion_mnist_corrupt_files(tmp_path, how):
    write_fmnist(tmp_path / "fashion-mnist")
    bad = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    corrupt(bad, how)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    # The test split is untouched and still loads.
    assert len(load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)) == 3


def test_fashion_mnist_mismatched_counts(tmp_path):
    write_fmnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, dtype=np.uint8)))
    )
    with pytest.raises(DataError):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert str(tmp_path / "fashion-mnist") in str(err.value)


def test_fashion_mnist_failed_download_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", refuse)
    with pytest.raises(DataError, match="could not be downloaded"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=True)
    assert not any((tmp_path / "data").rglob("*"))  # nothing half-written left behind


def test_fashion_mnist_system_copy_is_the_last_resort(tmp_path, monkeypatch):
    system = tmp_path / "system"
    write_fmnist(system, n_train=7)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", system)
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "empty", download=False)) == 7


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIR", SYSTEM_FMNIST)
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path, download=False)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.image_shape == (1, 28, 28)
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    mean, std = compute_stats(train.images)
    fixed_mean, fixed_std = channel_stats("fashion-mnist")
    assert fixed_mean == pytest.approx(mean, abs=1e-4)
    assert fixed_std == pytest.approx(std, abs=1e-4)


# ------------------------------------------------------------------------- CIFAR-10


CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


def write_cifar(root: Path, per_batch=2, protocol=2, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batch = {
            b"batch_label": b"x",
            b"labels": labels,
            b"data": data,
            b"filenames": [b"f.png"] * per_batch,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = (data, labels)
    meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_from_batches(tmp_path, protocol):
    batches = write_cifar(tmp_path, protocol=protocol)
    train = load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    test = load_dataset("cifar10", "test", data_dir=tmp_path, download=False)
    assert (len(train), len(test)) == (10, 2)
    assert train.image_shape == (3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == CIFAR_CLASSES and train.name == "cifar10"
    # Rows are 1024 red, then 1024 green, then 1024 blue values, row-major.
    row = batches["data_batch_1"][0][1]
    assert train.images[1, 0, 0, 5] == row[5]
    assert train.images[1, 1, 2, 3] == row[1024 + 2 * 32 + 3]
    assert train.images[1, 2, 31, 31] == row[3071]
    assert train.images[2, 0, 0, 0] == batches["data_batch_2"][0][0][0]
    expected = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.labels.tolist() == expected
    assert test.labels.tolist() == batches["test_batch"][1]
    small = load_dataset("cifar10", "test", data_dir=tmp_path, download=False, image_size=16)
    assert small.image_shape == (3, 16, 16)


def test_cifar10_reads_numpy1_pickles(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    # The original files name numpy.core, as numpy 1.x did.
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy.core deprecation warning either
        assert len(load_dataset("cifar10", data_dir=tmp_path, download=False)) == 10


def test_cifar10_corrupt_pickle(tmp_path):
    write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_4"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert len(load_dataset("cifar10", "test", data_dir=tmp_path, download=False)) == 2


def test_cifar10_wrong_content(tmp_path):
    write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False)


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/nacvae-should-not-exist"),))


def test_cifar10_refuses_to_run_code_from_a_pickle(tmp_path):
    write_cifar(tmp_path)
    marker = Path("/tmp/nacvae-should-not-exist")
    marker.unlink(missing_ok=True)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match="data_batch_1"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert not marker.exists()


def test_cifar10_missing(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz") as err:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


def test_cifar10_failed_download_is_a_data_error(tmp_path, monkeypatch):
    import socket

    import torchvision.datasets

    seen = {}

    def refuse(*args, **kwargs):
        seen["timeout"] = socket.getdefaulttimeout()
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", refuse)
    before = socket.getdefaulttimeout()
    expected = "could not be downloaded; download cifar-10-python.tar.gz"
    with pytest.raises(DataError, match=expected):
        load_dataset("cifar10", data_dir=tmp_path / "data", download=True)
    assert seen["timeout"] is not None and seen["timeout"] <= 60
    assert socket.getdefaulttimeout() == before
    assert not any((tmp_path / "data").rglob("*"))


def test_cifar10_download_is_moved_into_place(tmp_path, monkeypatch):
    import torchvision.datasets

    source = tmp_path / "source"
    write_cifar(source)

    def fake_download(root, train=True, download=False):
        import shutil

        shutil.copytree(source / "cifar-10-batches-py", Path(root) / "cifar-10-batches-py")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    data_dir = tmp_path / "data"
    assert len(load_dataset("cifar10", data_dir=data_dir, download=True)) == 10
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-batches-py"]


# -------------------------------------------------------------------------- folders


def save(path: Path, size=(10, 12), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def test_folder_with_class_subfolders(tmp_path):
    for i in range(10):
        save(tmp_path / "cats" / f"{i}.png", seed=i)
    for i in range(20):
        save(tmp_path / "dogs" / f"{i}.jpg", seed=100 + i)
    name = f"folder:{tmp_path}"
    train = load_dataset(name, "train")
    test = load_dataset(name, "test")
    assert train.classes == ["cats", "dogs"] and train.num_classes == 2
    assert (len(train), len(test)) == (27, 3)
    assert torch.bincount(test.labels).tolist() == [1, 2]  # stratified 10%
    assert train.image_shape == (3, 32, 32) and train.images.dtype == torch.uint8
    assert train.name == f"folder:{tmp_path.resolve()}"
    again = load_dataset(name, "test")
    assert torch.equal(again.images, test.images)
    seen = {bytes(x) for x in train.images.flatten(1).numpy()}
    assert not any(bytes(x) in seen for x in test.images.flatten(1).numpy())
    mean, std = channel_stats(name, train)
    assert len(mean) == 3 and all(0 < m < 1 for m in mean) and all(0 < s < 1 for s in std)
    assert channel_stats(name) == (mean, std)


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(20):
        save(tmp_path / f"img{i:02d}.png", seed=i)
    (tmp_path / "notes.txt").write_text("ignored")
    d = load_dataset(f"folder:{tmp_path}", "train", image_size=16)
    assert d.labels is None and d.classes is None and d.num_classes is None
    assert len(d) == 18 and d.image_shape == (3, 16, 16)
    assert len(load_dataset(f"folder:{tmp_path}", "test", image_size=16)) == 2


def test_train_test_folders(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                save(tmp_path / split / cls / f"{i}.png", seed=i)
    save(tmp_path / "test" / "c" / "0.png")  # a class that only the test split has
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert (len(train), len(test)) == (8, 5)
    assert train.classes == test.classes == ["a", "b", "c"]
    assert test.labels.tolist() == [0, 0, 1, 1, 2]


def test_grayscale_folder_keeps_one_channel_and_mixed_folder_is_rgb(tmp_path):
    for i in range(3):
        save(tmp_path / "gray" / f"{i}.png", mode="L", seed=i)
    gray = load_dataset(f"folder:{tmp_path / 'gray'}", "train", image_size=8)
    assert gray.image_shape == (1, 8, 8)
    save(tmp_path / "gray" / "color.png", mode="RGB")
    mixed = load_dataset(f"folder:{tmp_path / 'gray'}", "train", image_size=8)
    assert mixed.image_shape == (3, 8, 8)
    # Gray images become three equal channels.
    grey_rows = [x for x in mixed.images if torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])]
    assert len(grey_rows) >= 2


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    save(tmp_path / "mixed" / "a.png")
    save(tmp_path / "mixed" / "cls" / "b.png")
    with pytest.raises(DataError, match="both directly"):
        load_dataset(f"folder:{tmp_path / 'mixed'}")
    for i in range(3):
        save(tmp_path / "broken" / f"{i}.png", seed=i)
    (tmp_path / "broken" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        load_dataset(f"folder:{tmp_path / 'broken'}")
    save(tmp_path / "single" / "only.png")
    with pytest.raises(DataError, match="too few images"):
        load_dataset(f"folder:{tmp_path / 'single'}", "test")


def test_digits_are_read_as_scikit_learn_reads_them():
    import numpy as np
    from sklearn.datasets import load_digits

    from nacvae.data.sources.digits import digits_arrays

    values, labels = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(values, bunch.images) and np.array_equal(labels, bunch.target)

"""In-memory dataset sources: each is loaded whole into memory as a uint8 tensor.

Supported names: ``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist``
(gzipped IDX files), ``cifar10`` (torchvision's python-pickle layout) and
``folder:PATH`` (a folder of image files; ``nacvae.data.catalog`` streams a large one
instead). Nothing is cached on disk; the only thing ever written is a download of
CIFAR-10 or Fashion-MNIST into ``data_dir`` when asked. The streamed datasets (ImageNet,
FLICKR-25K, shards) are in ``nacvae.data.catalog``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import socket
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nacvae.errors import ConfigError, DataError

__all__ = [
    "DATASET_NAMES",
    "ImageData",
    "channel_stats",
    "default_data_dir",
    "load_dataset",
]

DATASET_NAMES = ("digits", "fashion-mnist", "cifar10")
SPLITS = ("train", "test")
FOLDER_PREFIX = "folder:"

# Where Debian's `dataset-fashion-mnist` package puts the files.
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FOLDER_SIZE = 32
DOWNLOAD_TIMEOUT_S = 15.0

DIGITS_TEST_FRACTION = 0.2
FOLDER_TEST_FRACTION = 0.1
SPLIT_SEED = 0

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

# Per-channel mean/std of the train split in [0, 1] units. CIFAR-10's are the usual
# published constants; the other two were computed once with `channel_stats` on the
# train split (population std over all pixels) and are checked by the tests.
_CHANNEL_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3055,), (0.3759,)),
}


@dataclass
class ImageData:
    """A whole split in memory: uint8 images [N, C, H, W] and optional int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] | None
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape [N, C, H, W]")
        if self.images.shape[1] not in (1, 3):
            raise ValueError("images must have 1 or 3 channels")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
                raise ValueError("labels must be an int64 tensor of shape [N]")

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def default_data_dir() -> Path:
    """``$NACVAE_DATA_DIR`` if set, otherwise ``~/.cache/nacvae/data`` (not created)."""
    env = os.environ.get("NACVAE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nacvae" / "data"


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    image_size: int | None = None,
) -> ImageData:
    """Load one split of a dataset into memory.

    ``image_size`` resizes to a square of that side (built-in datasets keep their
    native size when it is None; folders default to 32).
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; use 'train' or 'test'.")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ConfigError(f"The image size must be a positive integer, not {image_size!r}.")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()

    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise ConfigError("A folder dataset needs a path, as in 'folder:/path/to/images'.")
        return _load_folder(Path(path), split, image_size or DEFAULT_FOLDER_SIZE)

    key = name.lower()
    if key == "digits":
        data = _load_digits(split)
    elif key == "fashion-mnist":
        data = _load_fashion_mnist(root, split, download)
    elif key == "cifar10":
        data = _load_cifar10(root, split, download)
    else:
        raise ConfigError(_unknown_name_message(name))

    if image_size is not None and image_size != data.images.shape[-1]:
        data.images = _resize_uint8(data.images, image_size)
    return data


def channel_stats(
    name: str, data: ImageData | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] units used for normalisation.

    Built-in datasets return fixed constants; for ``folder:PATH`` they are computed from
    ``data`` (or from the folder's train split when ``data`` is None).
    """
    key = name.lower()
    if key in _CHANNEL_STATS:
        return _CHANNEL_STATS[key]
    if name.startswith(FOLDER_PREFIX):
        if data is None:
            data = load_dataset(name, "train")
        return _compute_stats(data.images)
    raise ConfigError(_unknown_name_message(name))


# Datasets read batch by batch (nacvae.data.catalog), which load_dataset cannot hold.
_STREAMED_NAMES = ("imagenet", "flickr25k")


def _unknown_name_message(name: str) -> str:
    known = ", ".join(DATASET_NAMES)
    if name.lower() in _STREAMED_NAMES or name.startswith("webdataset:"):
        return (f"The dataset {name} is read batch by batch and this command needs one held in memory; "
                f"choose one of {known} or folder:PATH.")
    return f"Unknown dataset {name!r}; choose one of {known} or folder:PATH."


def _compute_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    # Chunked so that a float64 copy of a large dataset is never made at once.
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() // c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _stratified_holdout(
    n: int, labels: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; stratified by label when labels are given."""
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    test = []
    for idx in groups:
        k = int(round(fraction * len(idx)))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.concatenate(test) if test else np.zeros(0, dtype=np.int64)
    if len(test_idx) == 0 and n >= 2:
        test_idx = rng.permutation(n)[:1]
    mask = np.zeros(n, dtype=bool)
    mask[test_idx] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# ---------------------------------------------------------------------------- digits


def _load_digits(split: str) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # [N, 8, 8], 0..16
    images = np.rint(values * 255.0 / 16.0).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_holdout(
        len(labels), labels, DIGITS_TEST_FRACTION, SPLIT_SEED
    )
    idx = train_idx if split == "train" else test_idx
    return ImageData(
        images=torch.from_numpy(images[idx]).unsqueeze(1).contiguous(),
        labels=torch.from_numpy(labels[idx]),
        classes=[str(d) for d in range(10)],
        name="digits",
    )


# ----------------------------------------------------------------------- downloading


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download_into(root: Path, fetch, produced: str) -> bool:
    """Run ``fetch(tmpdir)`` and move the folder ``tmpdir/produced`` into ``root``.

    Everything happens in a temporary folder inside ``root`` so that a failed or
    interrupted download leaves nothing half-written behind. Returns success.
    """
    from nacvae.files import make_dirs, remove_dirs

    created: list[Path] = []
    try:
        created = make_dirs(root)
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                fetch(tmp)
            src = Path(tmp) / produced
            dst = root / produced
            dst.mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                if f.is_file():
                    os.replace(f, dst / f.name)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        remove_dirs(created)  # a folder made only for this download goes again
        return False


# --------------------------------------------------------------------- Fashion-MNIST

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(folder: Path, stem: str, allow_raw: bool) -> Path | None:
    gz = folder / (stem + ".gz")
    if gz.is_file():
        return gz
    if allow_raw and (folder / stem).is_file():
        return folder / stem
    return None


def _fashion_mnist_candidates(root: Path) -> list[tuple[Path, bool]]:
    # (folder, whether un-gzipped files are accepted there)
    return [
        (root / "FashionMNIST" / "raw", True),
        (root / "fashion-mnist", False),
        (root, False),
        (SYSTEM_FASHION_MNIST_DIR, False),
    ]


def _locate_fashion_mnist(root: Path, split: str) -> tuple[Path, Path] | None:
    img_stem, lbl_stem = _FMNIST_FILES[split]
    for folder, allow_raw in _fashion_mnist_candidates(root):
        img = _find_file(folder, img_stem, allow_raw)
        lbl = _find_file(folder, lbl_stem, allow_raw)
        if img is not None and lbl is not None:
            return img, lbl
    return None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} could not be read as a gzipped IDX file ({exc}).") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(
            f"{path} is not a valid IDX file (expected magic number {magic}); "
            "replace it with the original Fashion-MNIST file."
        )
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated or has trailing bytes; replace it with the original "
            "Fashion-MNIST file."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _load_fashion_mnist(root: Path, split: str, download: bool) -> ImageData:
    found = _locate_fashion_mnist(root, split)
    tried = False
    if found is None and download:
        tried = True

        def fetch(tmp: str) -> None:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(root=tmp, train=(split == "train"), download=True)

        if _download_into(root, fetch, os.path.join("FashionMNIST", "raw")):
            found = _locate_fashion_mnist(root, split)
    if found is None:
        places = ", ".join(str(f) for f, _ in _fashion_mnist_candidates(root))
        why = " and could not be downloaded" if tried else ""
        raise DataError(
            f"Fashion-MNIST {split} files were not found in any of {places}{why}; "
            f"put the four *-ubyte.gz files in {root / 'fashion-mnist'} "
            "or run `apt-get install dataset-fashion-mnist`."
        )
    img_path, lbl_path = found
    images = _read_idx(img_path, 0x0803)
    labels = _read_idx(lbl_path, 0x0801)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataError(
            f"{img_path} and {lbl_path} do not hold matching 28x28 images and labels; "
            "replace them with the original Fashion-MNIST files."
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{lbl_path} holds labels outside 0..9; replace it with the original file."
        )
    return ImageData(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(FASHION_MNIST_CLASSES),
        name="fashion-mnist",
    )


# -------------------------------------------------------------------------- CIFAR-10

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
_CIFAR_META = "batches.meta"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy uint8 arrays, lists, dicts and strings.

    The batches are pickles, and a plain pickle.load would run any code a tampered
    file names; only the globals numpy needs to rebuild an array are allowed here.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # Pickles from numpy 1.x name numpy.core, a deprecated alias in numpy 2.
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - pickle raises many kinds of errors
        raise DataError(
            f"{path} is not a valid CIFAR-10 batch ({type(exc).__name__}); "
            "download cifar-10-python.tar.gz again and re-extract it."
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a valid CIFAR-10 batch; download and extract it again.")
    return obj


def _cifar_complete(folder: Path, split: str) -> bool:
    names = _CIFAR_BATCHES[split] + [_CIFAR_META]
    return all((folder / n).is_file() for n in names)


def _load_cifar10(root: Path, split: str, download: bool) -> ImageData:
    folder = root / _CIFAR_FOLDER
    if not _cifar_complete(folder, split):
        ok = False
        if download:

            def fetch(tmp: str) -> None:
                from torchvision.datasets import CIFAR10

                CIFAR10(root=tmp, train=True, download=True)

            ok = _download_into(root, fetch, _CIFAR_FOLDER) and _cifar_complete(folder, split)
        if not ok:
            raise DataError(
                f"CIFAR-10 was not found in {folder}"
                + (" and could not be downloaded" if download else "")
                + "; download cifar-10-python.tar.gz and extract it there."
            )

    meta = _read_cifar_pickle(folder / _CIFAR_META)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names):
        raise DataError(
            f"{folder / _CIFAR_META} has no list of label names; download and extract it again."
        )
    classes = [n.decode("utf-8") for n in names]

    images, labels = [], []
    for batch_name in _CIFAR_BATCHES[split]:
        path = folder / batch_name
        batch = _read_cifar_pickle(path)
        data, lab = batch.get(b"data"), batch.get(b"labels")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
            or lab is None
            or len(lab) != data.shape[0]
        ):
            raise DataError(
                f"{path} does not hold uint8 image rows of 3072 bytes with one label each; "
                "download and extract CIFAR-10 again."
            )
        lab = np.asarray(lab, dtype=np.int64)
        if lab.size and (lab.min() < 0 or lab.max() >= len(classes)):
            raise DataError(
                f"{path} holds labels outside 0..{len(classes) - 1}; extract CIFAR-10 again."
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return ImageData(
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(np.concatenate(labels)),
        classes=classes,
        name="cifar10",
    )


# --------------------------------------------------------------------------- folders


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    found = []
    def fail(exc: OSError) -> None:  # os.walk would skip an unreadable folder silently
        raise exc

    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames))
    return [p for p in found if _is_image(p)]


def _scan_split(folder: Path) -> tuple[list[Path], list[str] | None]:
    """Image files of one split folder and, for class sub-folders, their class names."""
    direct = sorted(p for p in folder.iterdir() if _is_image(p))
    class_files = {d.name: _images_under(d) for d in _visible_dirs(folder)}
    class_files = {k: v for k, v in class_files.items() if v}
    if direct and class_files:
        raise DataError(
            f"{folder} has images both directly inside it and in sub-folders; put all of "
            "them in one sub-folder per class, or all directly in the folder for unlabelled data."
        )
    if not direct and not class_files:
        raise DataError(
            f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); put the images there, "
            "directly or in one sub-folder per class."
        )
    if direct:
        return direct, None
    files, names = [], []
    for name in sorted(class_files):
        files.extend(class_files[name])
        names.extend([name] * len(class_files[name]))
    return files, names


_GRAY_MODES = ("1", "L")


def _open_error(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path} could not be read as an image ({type(exc).__name__}); "
        "remove or replace that file."
    )


def _all_gray(files: list[Path]) -> bool:
    """Whether every file is a grayscale image.

    Reads only the headers, but of every file, so an unreadable file is reported
    whichever split is loaded.
    """
    from PIL import Image

    gray = True
    for path in files:
        try:
            with Image.open(path) as im:
                gray = gray and im.mode in _GRAY_MODES
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            raise _open_error(path, exc) from None
    return gray


def _read_images(files: list[Path], size: int, gray: bool) -> torch.Tensor:
    from PIL import Image

    arrays = []
    for path in files:
        try:
            with Image.open(path) as im:
                im = im.convert("L" if gray else "RGB")
                im = im.resize((size, size), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors
            raise _open_error(path, exc) from None
    if gray:
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _load_folder(path: Path, split: str, size: int) -> ImageData:
    try:
        return _read_folder(path, split, size)
    except OSError as exc:  # a folder or file the user may not read
        where = exc.filename or path
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


@dataclass
class FolderListing:
    """One split of an image folder before decoding: files, labels, class names, channels."""

    files: list[Path]
    labels: np.ndarray | None
    classes: list[str] | None
    gray: bool
    name: str


def list_folder(path: Path, split: str) -> FolderListing:
    """The files of one split of ``folder:PATH`` (headers read, no image decoded)."""
    try:
        return _list_folder(path, split)
    except OSError as exc:  # a folder or file the user may not read
        where = exc.filename or path
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}); check its permissions.") from None


def folder_decoded_bytes(listing: FolderListing, size: int) -> int:
    """Bytes of the split decoded as uint8 squares of ``size`` pixels."""
    return len(listing.files) * (1 if listing.gray else 3) * size * size


def _read_folder(path: Path, split: str, size: int) -> ImageData:
    listing = _list_folder(path, split)
    images = _read_images(listing.files, size, listing.gray)
    return ImageData(
        images=images,
        labels=None if listing.labels is None else torch.from_numpy(listing.labels),
        classes=listing.classes,
        name=listing.name,
    )


def _list_folder(path: Path, split: str) -> FolderListing:
    path = path.expanduser().resolve()
    name = FOLDER_PREFIX + str(path)
    if not path.is_dir():
        raise DataError(
            f"The image folder {path} does not exist; create it and put the images there."
        )

    has_splits = (path / "train").is_dir() and (path / "test").is_dir()
    if has_splits:
        train_files, train_names = _scan_split(path / "train")
        test_files, test_names = _scan_split(path / "test")
        if (train_names is None) != (test_names is None):
            raise DataError(
                f"In {path} one of train/ and test/ has class sub-folders and the other does "
                "not; use class sub-folders in both or in neither."
            )
        files, names = (train_files, train_names) if split == "train" else (test_files, test_names)
        # One channel count for both splits: decided over every image of the dataset.
        gray = _all_gray(train_files + test_files)
        # Classes from both splits so that label numbers agree between them.
        classes = sorted(set(train_names) | set(test_names)) if train_names is not None else None
    else:
        files, names = _scan_split(path)
        classes = sorted(set(names)) if names is not None else None
        gray = _all_gray(files)

    labels = None
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[n] for n in names], dtype=np.int64)

    if not has_splits:
        train_idx, test_idx = _stratified_holdout(
            len(files), labels, FOLDER_TEST_FRACTION, SPLIT_SEED
        )
        keep = train_idx if split == "train" else test_idx
        if len(keep) == 0:
            raise DataError(
                f"{path} has too few images to hold out a {split} split; add images or "
                "provide train/ and test/ sub-folders."
            )
        files = [files[i] for i in keep]
        if labels is not None:
            labels = labels[keep]
    return FolderListing(files, labels, classes, gray, name)

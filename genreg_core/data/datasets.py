"""Datasets as tensors in [-1, 1]: bundled digits, an image folder, torchvision; splits and subsets.

Every loader returns an :class:`ImageDataset` with images ``(N, C, H, W)`` float32 in [-1, 1] and
int64 labels. Nothing here downloads anything unless the caller asks for it explicitly.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genreg_core.config import DataConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# the only decoders Pillow is allowed to use, whatever a file's name or content: no other plugin (Ghostscript's EPS,
# TIFF, PDF...) is ever reached. MPO is how Pillow's JPEG decoder names a multi-picture JPEG.
ACCEPTED_FORMATS = ("PNG", "JPEG")
DECODED_FORMATS = ("PNG", "JPEG", "MPO")
# GENREG_FOLLOW_LINKS=1: follow symbolic links in a data folder, as long as they stay inside it (default: refuse)
FOLLOW_LINKS_ENV = "GENREG_FOLLOW_LINKS"
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
TORCHVISION_CHANNELS = {"mnist": 1, "fashion-mnist": 1, "cifar10": 3}
# an image larger than this is refused before it is decoded (PIL's own bomb check is far higher)
MAX_IMAGE_PIXELS = int(os.environ.get("GENREG_MAX_IMAGE_PIXELS", 25_000_000))
# an image folder whose decoded tensor would be larger than this is refused before loading
IMAGE_SIZE_RANGE = (4, 512)  # allowed image sides in pixels
MAX_DATASET_BYTES = int(float(os.environ.get("GENREG_MAX_DATASET_MB", 2048)) * 2**20)


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of a data folder or upload that was not read, and why (shown as a warning, never dropped silently)."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class FolderListing:
    """What :func:`scan_image_folder` found: the images with their labels, the classes, the entries not read."""

    files: list[tuple[Path, int]]
    class_names: list[str]
    skipped: list[SkippedEntry]


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` in [-1, 1], labels ``(N,)`` int64 and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str
    skipped: list[SkippedEntry] = field(default_factory=list)  # entries of the folder that were not read
    # a fixed test set shipped or published apart from these images (Fashion-MNIST's), or None
    held_out: ImageDataset | None = None

    def class_counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Split:
    """Index arrays of a fixed stratified train / val / test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` images to ``size × size`` (bilinear, antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrink = images.shape[-1] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def load_digits_dataset(image_size: int = 16) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), resized and scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    images = resize_images(images, image_size).clamp(0, 1) * 2 - 1
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return ImageDataset(images.contiguous(), labels, [str(c) for c in range(10)], "digits")


def open_image(path, name: str, max_pixels: int | None = None):
    """Open a PNG or JPEG lazily (header only), whatever its name; ``ValueError`` naming it for any other format or
    for one with more than ``max_pixels`` pixels. Pillow tries only the decoders of ``ACCEPTED_FORMATS``."""
    from PIL import Image, UnidentifiedImageError

    max_pixels = max_pixels or MAX_IMAGE_PIXELS
    limit = f"the limit is {max_pixels:,} pixels (GENREG_MAX_IMAGE_PIXELS)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as exc:  # PIL's own check, at twice its default limit
        raise ValueError(f"image {name} is too large ({exc}); {limit}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"image {name} is not a PNG or JPEG file (genreg reads only those, whatever the file "
                         "name says)") from exc
    if img.format not in DECODED_FORMATS:  # never reached: Pillow honours formats=; kept as a guard
        img.close()
        raise ValueError(f"image {name} is a {img.format} file; genreg reads only PNG and JPEG")
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ValueError(f"image {name} is too large ({width}×{height} pixels); {limit}")
    return img


def open_regular_file(path: Path):
    """``path`` opened for reading only if it is a regular file (not a link, FIFO, device or socket), checked on
    the open descriptor itself so nothing swapped in after a listing is ever read; ``ValueError`` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ValueError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _special(path)
    return os.fdopen(fd, "rb")


def _read_image(path: Path | io.BytesIO, image_size: int, channels: int, name: str | None = None) -> torch.Tensor:
    from PIL import Image

    name = name or str(path)
    handle = open_regular_file(path) if isinstance(path, Path) else path
    try:
        with handle, open_image(handle, name) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {name}: {exc}") from exc
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy()) * 2 - 1


def _is_grayscale(path: Path) -> bool:
    try:
        with open_regular_file(path) as handle, open_image(handle, str(path)) as img:
            return img.mode in ("1", "L", "LA", "I", "I;16", "F")
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def follow_links_default() -> bool:
    """Whether ``GENREG_FOLLOW_LINKS=1`` asks to follow symbolic links that stay inside a data folder."""
    return os.environ.get(FOLLOW_LINKS_ENV, "").strip() == "1"


def resolve_inside(path: Path, root: Path, follow_links: bool) -> Path:
    """The real path of ``path``, an entry of the (resolved) folder ``root``; ``ValueError`` naming it for a
    symbolic link (unless ``follow_links``), a link that cannot be resolved (a loop) or one that leaves ``root``."""
    if not path.is_symlink():
        return path
    if not follow_links:
        raise ValueError(f"{path} is a symbolic link; genreg does not follow links in a data folder (set "
                         f"{FOLLOW_LINKS_ENV}=1 to follow links that stay inside {root})")
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a loop (RuntimeError before Python 3.13), a dangling link
        raise ValueError(f"{path} is a symbolic link that cannot be followed ({exc})") from exc
    if not real.is_relative_to(root):
        raise ValueError(f"{path} is a symbolic link to {real}, outside the data folder {root}; refused")
    return real


def _entry_kind(path: Path, real: Path) -> str:
    """``dir``, ``file`` or ``special`` (FIFO, device, socket), from ``real``'s status; never opens it."""
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "special"


def _special(path: Path) -> ValueError:
    return ValueError(f"{path} is a special file (a FIFO, device or socket), not an image file; genreg never opens "
                      "one")


def _sorted_entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise ValueError(f"cannot list {folder}: {exc.strerror or exc}") from exc


def _class_files(class_dir: Path, root: Path, label: int, follow_links: bool,
                 skipped: list[SkippedEntry]) -> list[tuple[Path, int]]:
    """The image files of one class folder; every other entry is an error or a skipped entry."""
    files = []
    for path in _sorted_entries(class_dir):
        if path.name.startswith("."):
            skipped.append(SkippedEntry(str(path), "hidden file"))
            continue
        real = resolve_inside(path, root, follow_links)
        kind = _entry_kind(path, real)
        image_name = path.suffix.lower() in IMAGE_SUFFIXES
        if kind == "special":
            raise _special(path)
        if kind == "dir":
            if image_name:
                raise ValueError(f"{path} is a folder, not an image file")
            skipped.append(SkippedEntry(str(path), "a folder inside a class folder (not read)"))
            continue
        if not image_name:
            raise ValueError(f"{path} is not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        files.append((real, label))
    if not files:
        raise ValueError(f"class folder {class_dir} is empty")
    return files


def scan_image_folder(root: str | Path, follow_links: bool | None = None) -> FolderListing:
    """The ``(path, label)`` pairs, class names and skipped entries of ``ROOT/<class_name>/*.png|jpg|jpeg``,
    without decoding.

    ``root`` is resolved once; nothing outside it is read. Raises ``ValueError`` naming the offending path for a
    missing root, no or too few class folders, an empty class, a file that is not an image file, a folder named
    like an image, a special file (FIFO, device, socket), and a symbolic link (unless ``follow_links``, default
    ``GENREG_FOLLOW_LINKS=1``, and then only one that stays inside the root). Hidden entries, files beside the
    class folders and folders inside a class folder are not read: they are listed in ``skipped``.
    """
    follow_links = follow_links_default() if follow_links is None else follow_links
    given = Path(root)
    if not given.is_dir():
        raise ValueError(f"image folder {given} does not exist or is not a directory")
    root = given.resolve()
    skipped: list[SkippedEntry] = []
    class_dirs = []
    for path in _sorted_entries(root):
        if path.name.startswith("."):
            skipped.append(SkippedEntry(str(path), "hidden entry"))
            continue
        kind = _entry_kind(path, resolve_inside(path, root, follow_links))
        if kind == "special":
            raise _special(path)
        if kind == "file":
            skipped.append(SkippedEntry(str(path), "a file beside the class folders (not in a class folder)"))
            continue
        class_dirs.append(path)
    if not class_dirs:
        raise ValueError(f"image folder {given} has no class folders (expected ROOT/<class_name>/*.png)")
    if len(class_dirs) < 2:
        raise ValueError(f"image folder {given} has only one class folder ({class_dirs[0].name}); need at least 2")
    files: list[tuple[Path, int]] = []
    for label, class_dir in enumerate(class_dirs):
        files.extend(_class_files(class_dir, root, label, follow_links, skipped))
    return FolderListing(files, [d.name for d in class_dirs], skipped)


def list_image_folder(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """The ``(path, label)`` pairs and class names of :func:`scan_image_folder`."""
    listing = scan_image_folder(root)
    return listing.files, listing.class_names


def folder_channels(files: list[tuple[Path, int]]) -> int:
    """1 when every image is grayscale, else 3 (reads only the headers)."""
    return 1 if all(_is_grayscale(path) for path, _ in files) else 3


def load_image_folder(root: str | Path, image_size: int = 16, channels: int | None = None) -> ImageDataset:
    """Load ``ROOT/<class_name>/*.png|jpg|jpeg`` with class folders in sorted order.

    ``channels=None`` picks 1 when every image is grayscale, else 3. Raises ``ValueError`` naming the
    offending path (see :func:`list_image_folder`, plus unreadable or over-large images), and when the
    decoded set would exceed ``MAX_DATASET_BYTES``.
    """
    listing = scan_image_folder(root)
    files, class_names = listing.files, listing.class_names
    if channels is None:
        channels = folder_channels(files)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    n_bytes = len(files) * channels * image_size * image_size * 4
    if n_bytes > MAX_DATASET_BYTES:
        raise ValueError(f"image folder {root}: {len(files):,} images of {channels}×{image_size}×{image_size} take "
                         f"{n_bytes / 2**20:,.0f} MB, more than the {MAX_DATASET_BYTES / 2**20:,.0f} MB limit "
                         "(GENREG_MAX_DATASET_MB); use a smaller image size or fewer images")
    images = torch.empty(len(files), channels, image_size, image_size)  # (N, C, H, W), filled in place
    for i, (path, _) in enumerate(files):
        images[i] = _read_image(path, image_size, channels)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageDataset(images, labels, class_names, f"imagefolder:{Path(root).name}", listing.skipped)


def load_uploaded_images(files: list[tuple[str, bytes]], image_size: int, channels: int) -> torch.Tensor:
    """Decode uploaded ``(name, bytes)`` images to (N, C, H, W) in [-1, 1]; a bad file raises ``ValueError``."""
    if not files:
        raise ValueError("no images were uploaded")
    return torch.stack([_read_image(io.BytesIO(data), image_size, channels, name) for name, data in files])


def load_torchvision_dataset(name: str, root: str | Path, image_size: int = 16, download: bool = False) -> ImageDataset:
    """MNIST, Fashion-MNIST or CIFAR-10 (train set) from files on disk; downloads only if asked."""
    if name not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown torchvision dataset {name!r} (known: {', '.join(TORCHVISION_DATASETS)})")
    try:
        import torchvision
    except ImportError as exc:
        raise ValueError(f"dataset {name!r} needs torchvision, which is not installed") from exc
    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    try:
        ds = cls(root=str(root), train=True, download=download)
    except RuntimeError as exc:
        raise ValueError(f"{name} not found under {root}; pass download=True to fetch it: {exc}") from exc
    data = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
    images = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)
    images = resize_images(images, image_size).clamp(0, 1) * 2 - 1
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return ImageDataset(images.contiguous(), labels, [str(c) for c in ds.classes], name)


def _uint8_dataset(images: np.ndarray, labels: np.ndarray, image_size: int, name: str) -> ImageDataset:
    """(N, H, W) uint8 images and their labels as an :class:`ImageDataset` at ``image_size`` in [-1, 1]."""
    from genreg_core.data.fashion import CLASS_NAMES

    tensor = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]  # (N, 1, 28, 28) in [0, 1]
    tensor = resize_images(tensor, image_size).clamp(0, 1) * 2 - 1
    return ImageDataset(tensor.contiguous(), torch.from_numpy(labels.astype(np.int64)), list(CLASS_NAMES), name)


def load_fashion_dataset(root: str | Path | None = None, image_size: int = 28) -> ImageDataset:
    """Fashion-MNIST: the shipped subset's training pool (``root=None``) or the 60,000 training images of the
    four IDX files in ``root``; the matching test set (shipped 3,000, or the official 10,000) is ``held_out``.
    """
    from genreg_core.data.fashion import load_fashion_subset, read_fashion_idx

    if root is None:
        subset = load_fashion_subset()
        pool = _uint8_dataset(subset["pool_images"], subset["pool_labels"], image_size, "fashion-mnist")
        pool.held_out = _uint8_dataset(subset["test_images"], subset["test_labels"], image_size, "fashion-mnist:test")
        return pool
    full = _uint8_dataset(*read_fashion_idx(root, "train"), image_size, "fashion-mnist-full")
    full.held_out = _uint8_dataset(*read_fashion_idx(root, "test"), image_size, "fashion-mnist-full:test")
    return full


def check_image_size(image_size: int) -> None:
    """``ValueError`` unless ``image_size`` lies in ``IMAGE_SIZE_RANGE``."""
    low, high = IMAGE_SIZE_RANGE
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not low <= image_size <= high:
        raise ValueError(f"image size must be an integer in [{low}, {high}], got {image_size!r}")


def dataset_shape(config: DataConfig) -> tuple[int, int]:
    """(channels, image side) that :func:`load_dataset` will return, found without decoding any image."""
    check_image_size(config.image_size)
    if config.name == "imagefolder" and config.root:
        return config.channels or folder_channels(list_image_folder(config.root)[0]), config.image_size
    return TORCHVISION_CHANNELS.get(config.name, config.channels or 1), config.image_size


def load_dataset(config: DataConfig) -> ImageDataset:
    """Dispatch on ``config.name``: ``digits`` (default), ``fashion-mnist`` (shipped subset, or the IDX files
    under ``config.root``), ``imagefolder`` or a torchvision dataset (mnist, cifar10)."""
    check_image_size(config.image_size)
    if config.name == "digits":
        return load_digits_dataset(config.image_size)
    if config.name == "imagefolder":
        if not config.root:
            raise ValueError("dataset 'imagefolder' needs a root folder")
        return load_image_folder(config.root, config.image_size, config.channels)
    if config.name == "fashion-mnist":
        return load_fashion_dataset(config.root, config.image_size)
    if config.name in TORCHVISION_DATASETS:
        return load_torchvision_dataset(config.name, config.root or "data", config.image_size, config.download)
    raise ValueError(f"unknown dataset {config.name!r}")


def split_dataset(labels: torch.Tensor | np.ndarray, seed: int = 0, val_fraction: float = 0.2,
                  test_fraction: float = 0.2) -> Split:
    """A stratified train / val / test split, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    need = math.ceil(1 / min(val_fraction, test_fraction, 1 - val_fraction - test_fraction) - 1e-9)
    if len(counts) and counts.min() < need:
        raise ValueError(f"class {classes[counts.argmin()]} has only {counts.min()} images; a train/val/test split "
                         f"with fractions {1 - val_fraction - test_fraction:g}/{val_fraction:g}/{test_fraction:g} "
                         f"needs at least {need} images in every class")
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    val_share = val_fraction / (1 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=seed)
    return Split(np.sort(train), np.sort(val), np.sort(test), seed)


def scoring_set(dataset: ImageDataset, split: Split) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images, labels and name of the set a classifier run is scored on: the dataset's fixed held-out test set
    when it has one (Fashion-MNIST's shipped 3,000, or the official 10,000 with ``--data-root``), else the split's
    test part. Neither was seen by a shipped model, and no seed changes it."""
    if dataset.held_out is not None:
        return dataset.held_out.images, dataset.held_out.labels, dataset.held_out.name
    return dataset.images[split.test], dataset.labels[split.test], f"{dataset.name}:split{split.seed}-test"


def per_class_subset(labels: torch.Tensor | np.ndarray, indices: np.ndarray, per_class: int | None,
                     seed: int = 0) -> np.ndarray:
    """``per_class`` indices of each class drawn from ``indices`` (all of them when ``None``).

    Raises ``ValueError`` when a class has fewer than ``per_class`` examples.
    """
    indices = np.asarray(indices)
    if per_class is None:
        return np.sort(indices)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels[indices]):
        members = indices[labels[indices] == cls]
        if len(members) < per_class:
            raise ValueError(f"class {cls} has only {len(members)} examples, fewer than per_class={per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))

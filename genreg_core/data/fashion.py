"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; Zalando SE, MIT licence): an embedded subset and the full IDX set.

The package ships a stratified subset in ``genreg_core/assets/fashion-mnist/`` (``subset.npz``, uint8, with
``PROVENANCE.json`` and ``LICENSE`` beside it): a training pool drawn from the official training files and a
fixed test set drawn from the official test files, so the two are disjoint by construction. It needs no
download, no apt and no torchvision. With a data root the four official IDX files are read instead
(Debian: ``apt-get install dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``).

Rebuild the subset: ``python -m genreg_core.data.fashion --idx-root /usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from genreg_core.data.idx import read_idx_pair

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
SUBSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "fashion-mnist"
SUBSET_FILE = SUBSET_DIR / "subset.npz"
PROVENANCE_FILE = SUBSET_DIR / "PROVENANCE.json"
DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
POOL_PER_CLASS = 500  # training-pool images per class in the shipped subset
TEST_PER_CLASS = 300  # fixed test images per class in the shipped subset
SUBSET_SEED = 0  # seed of the stratified draw


def _idx_path(root: Path, stem: str) -> Path:
    raw = root / "FashionMNIST" / "raw"  # torchvision's layout under its data root
    for candidate in (root / f"{stem}.gz", root / stem, raw / f"{stem}.gz", raw / stem):
        if candidate.is_file():
            return candidate
    raise ValueError(f"Fashion-MNIST file {stem}(.gz) not found under {root} "
                     f"(Debian: apt-get install dataset-fashion-mnist puts the four files in {DEBIAN_ROOT})")


def read_fashion_idx(root: str | Path, part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The official ``train`` (60,000) or ``test`` (10,000) images ``(N, 28, 28)`` uint8 and labels from ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"Fashion-MNIST data root {root} does not exist or is not a directory")
    images_stem, labels_stem = IDX_FILES[part]
    images, labels = read_idx_pair(_idx_path(root, images_stem), _idx_path(root, labels_stem))
    if images.shape[1:] != (28, 28) or labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{root}: not Fashion-MNIST (images {images.shape[1:]}, labels in "
                         f"[{labels.min()}, {labels.max()}]; expected 28×28 and 0–9)")
    return images, labels


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_fashion_subset(path: str | Path = SUBSET_FILE) -> dict[str, np.ndarray]:
    """The shipped subset: ``pool_images`` / ``test_images`` ``(N, 28, 28)`` uint8 and their int64 labels.

    ``pool_index`` / ``test_index`` give each image's position in the official train / test files.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the Fashion-MNIST subset {path}: {exc}") from exc
    for key in ("pool_labels", "test_labels"):
        arrays[key] = arrays[key].astype(np.int64)
    return arrays


def stratified_pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class, sorted; ``ValueError`` when a class has fewer."""
    chosen = []
    for cls in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise ValueError(f"class {cls} has only {len(members)} images, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def build_subset(idx_root: str | Path, out_dir: str | Path = SUBSET_DIR, pool_per_class: int = POOL_PER_CLASS,
                 test_per_class: int = TEST_PER_CLASS, seed: int = SUBSET_SEED) -> dict:
    """Draw the stratified subset from the four official IDX files and write ``subset.npz`` + ``PROVENANCE.json``.

    Reproducible: the same files, counts and seed give the same bytes (the npz members are written with
    fixed timestamps by numpy's zip writer), so the recorded SHA-256 can be checked by rebuilding.
    """
    idx_root, out_dir = Path(idx_root), Path(out_dir)
    rng = np.random.default_rng(seed)
    train_x, train_y = read_fashion_idx(idx_root, "train")
    test_x, test_y = read_fashion_idx(idx_root, "test")
    pool = stratified_pick(train_y, pool_per_class, rng)
    test = stratified_pick(test_y, test_per_class, rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = out_dir / SUBSET_FILE.name
    with open(npz_path, "wb") as handle:
        np.savez_compressed(handle, pool_images=train_x[pool], pool_labels=train_y[pool].astype(np.uint8),
                            pool_index=pool.astype(np.int32), test_images=test_x[test],
                            test_labels=test_y[test].astype(np.uint8), test_index=test.astype(np.int32))
    sources = {}
    for stems in IDX_FILES.values():
        for stem in stems:
            source = _idx_path(idx_root, stem)
            sources[source.name] = sha256_file(source)
    provenance = {
        "dataset": "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747)",
        "copyright": "2017 Zalando SE",
        "licence": "MIT (Expat); see LICENSE beside this file",
        "source_files": sources,
        "source_note": "the four official IDX files, as packaged by Debian (dataset-fashion-mnist) in "
                       f"{DEBIAN_ROOT}",
        "pool": f"{pool_per_class} images per class drawn without replacement from the 60,000 training images",
        "test": f"{test_per_class} images per class drawn without replacement from the 10,000 test images",
        "pool_per_class": pool_per_class,
        "test_per_class": test_per_class,
        "seed": seed,
        "rng": "numpy.random.default_rng(seed); pool drawn first, then test, class by class",
        "class_names": CLASS_NAMES,
        "command": f"python -m genreg_core.data.fashion --idx-root {idx_root}",
        "subset_sha256": sha256_file(npz_path),
    }
    (out_dir / PROVENANCE_FILE.name).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the shipped Fashion-MNIST subset from the IDX files.")
    parser.add_argument("--idx-root", default=DEBIAN_ROOT, help="folder of the four official IDX files")
    parser.add_argument("--out", default=str(SUBSET_DIR), help="folder to write subset.npz and PROVENANCE.json")
    parser.add_argument("--pool-per-class", type=int, default=POOL_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    parser.add_argument("--seed", type=int, default=SUBSET_SEED)
    args = parser.parse_args(argv)
    provenance = build_subset(args.idx_root, args.out, args.pool_per_class, args.test_per_class, args.seed)
    print(f"wrote {args.out}/subset.npz (sha256 {provenance['subset_sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

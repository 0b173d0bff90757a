"""Datasets as seeded streams of uint8 NHWC batches: MNIST, Fashion-MNIST, CIFAR-10, ImageNet.

``load(name, split, batch_size)`` finds the data in this order: the directory given as
``data_dir`` (else ``$JAXVIS_DATA_DIR``), the dataset's system location (Debian's
``dataset-fashion-mnist``), then tensorflow-datasets when it is installed and the dataset
is prepared. ``mnist_sample`` (1,000 MNIST test images, 100 per class) ships inside the
package, so demos and tests need no data at all.

Small datasets are read into memory; ImageNet never is: its images are decoded lazily
(:func:`jaxvis.images.read`), a few batches ahead, following Zeiler & Fergus Sec. 3
(Krizhevsky et al.): the short side resized to 256, random 224 crops with horizontal flips
for training, and the 10-crop evaluation (four corners and the centre, flipped and not).
The resize and the centre crop are torchvision's ``Resize(256)`` and ``CenterCrop(224)``
(:func:`jaxvis.images.resize_short_side`, :func:`jaxvis.images.center_crop`: the long side
truncated, the crop offset rounded half to even), so a single-crop evaluation sees exactly
what torchvision's ImageNet evaluation sees, except that EXIF orientation is applied.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import gzip
import importlib.resources
import importlib.util
import math
import os
import pickle
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _checks
from jaxvis._io import folder
from jaxvis.images import IMAGE_SUFFIXES, PRESETS, center_crop, crop_size, read, resize_short_side

ENV_VAR = "JAXVIS_DATA_DIR"
IMAGENET_RESIZE = PRESETS["torchvision"].resize
IMAGENET_CROP = PRESETS["torchvision"].crop[0]
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------------------
# File formats


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is a damaged gzip file ({e}); download it again") from e


def read_idx(path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzip-compressed or not) as a numpy array.

    Raises:
      ValueError: the magic number is wrong, or the file is shorter or longer than its
        header says.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"expected an IDX file, but {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path} is not an IDX file: expected the magic bytes 00 00 <type in "
            f"{[f'{t:02x}' for t in _IDX_DTYPES]}> <ndim >= 1>, got {raw[:4].hex(' ') or 'an empty file'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"{path} is {state}: dimensions {dims} of {dtype.name} need {expected} bytes, "
                         f"the file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_file(directory: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_idx_dir(directory: Path, split: str, num_classes: int):
    """The images and labels of one split from the four-file IDX layout, or None."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = _find_file(directory, (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"))
    labels_path = _find_file(directory, (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"))
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = f"{prefix}-images-idx3-ubyte" if images_path is None else f"{prefix}-labels-idx1-ubyte"
        raise ValueError(f"{directory} holds {(images_path or labels_path).name} but no {missing}[.gz] beside it")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path} must hold uint8 images of shape (N, H, W), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path} must hold one label per image, got shape {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{images_path.name} holds {len(images)} images but {labels_path.name} "
                         f"holds {len(labels)} labels; they must match")
    _check_labels(labels, num_classes, labels_path)
    return images[..., None], labels.astype(np.int32)


def _check_labels(labels: np.ndarray, num_classes: int, where) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in [0, {num_classes}), "
                         f"got values from {labels.min()} to {labels.max()}")


def _read_cifar_dir(directory: Path, split: str, num_classes: int):
    """CIFAR-10's python batches (``data_batch_1..5``, ``test_batch``), or None."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    present = [(directory / n).is_file() for n in names]
    if not any(present):
        return None
    if not all(present):
        missing = [n for n, p in zip(names, present) if not p]
        raise ValueError(f"{directory} is an incomplete CIFAR-10 directory: {missing} missing")
    images, labels = [], []
    for name in names:
        try:
            with open(directory / name, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data, batch_labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        except Exception as e:
            raise ValueError(f"{directory / name} is not a CIFAR-10 python batch "
                             f"(a pickled dict with b'data' and b'labels'): {e!r}") from e
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{directory / name}: b'data' must be uint8 of shape (N, 3072), "
                             f"got {data.dtype} of shape {data.shape}")
        if batch_labels.shape != (len(data),):
            raise ValueError(f"{directory / name} holds {len(data)} images but {batch_labels.size} labels")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    labels = np.concatenate(labels).astype(np.int32)
    _check_labels(labels, num_classes, directory)
    return np.concatenate(images), labels


def _image_folder(directory: Path, split: str):
    """ImageNet as ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``: paths, labels, wnids."""
    split_dir = next((directory / d for d in {"train": ("train",), "validation": ("val", "validation")}[split]
                      if (directory / d).is_dir()), None)
    if split_dir is None:
        return None
    class_root = directory / "train" if (directory / "train").is_dir() else split_dir
    wnids = sorted(e.name for e in os.scandir(class_root) if e.is_dir() and not e.name.startswith("."))
    if not wnids:
        raise ValueError(f"{class_root} has no class folders: expected {class_root}/<wnid>/*.JPEG")
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        if not (split_dir / wnid).is_dir():
            continue
        files = sorted(e.path for e in os.scandir(split_dir / wnid)
                       if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        paths += files
        labels += [label] * len(files)
    extra = sorted(set(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
                   - set(wnids))
    if extra:
        raise ValueError(f"{split_dir} has class folders {extra[:5]} that {class_root} lacks")
    if not paths:
        raise ValueError(f"{split_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return paths, np.asarray(labels, np.int32), tuple(wnids)


# ---------------------------------------------------------------------------------------
# ImageNet preprocessing


def random_crop_flip(image_HWC, size, draw: np.ndarray):
    """A ``size`` crop (an int, or ``(height, width)``) at a position set by ``draw[0:2]``
    in [0, 1), flipped if ``draw[2] < .5``."""
    crop_h, crop_w = crop_size(image_HWC, size)
    h, w = image_HWC.shape[:2]
    top, left = int(draw[0] * (h - crop_h + 1)), int(draw[1] * (w - crop_w + 1))
    crop = image_HWC[top:top + crop_h, left:left + crop_w]
    return crop[:, ::-1] if draw[2] < 0.5 else crop


def ten_crops(image_HWC, size):
    """The four corners and the centre (:func:`jaxvis.images.center_crop`, torchvision's
    offsets) of ``size`` (an int, or ``(height, width)``), then the same five flipped:
    ``(10, height, width, C)``."""
    crop_h, crop_w = crop_size(image_HWC, size)
    h, w = image_HWC.shape[:2]
    five = [image_HWC[t:t + crop_h, l:l + crop_w] for t, l in ((0, 0), (0, w - crop_w), (h - crop_h, 0),
                                                                (h - crop_h, w - crop_w))]
    five.append(center_crop(image_HWC, size))
    return np.stack(five + [c[:, ::-1] for c in five])


def _resized(image_HWC) -> np.ndarray:
    """An ImageNet image with its short side resized to 256, as torchvision's ``Resize(256)``."""
    return resize_short_side(np.asarray(image_HWC), IMAGENET_RESIZE)


# ---------------------------------------------------------------------------------------
# Sources: where the examples of one split come from


class _Arrays:
    """A split held in memory."""

    def __init__(self, images_NHWC: np.ndarray, labels_N: np.ndarray):
        self.images_NHWC, self.labels_N = images_NHWC, labels_N

    def __len__(self) -> int:
        return len(self.labels_N)


class _Lazy:
    """A split decoded one example at a time: ``read(i)`` gives ``(image, label)``, the
    image as an HWC uint8 RGB array."""

    def __init__(self, read: Callable[[int], tuple[object, int]], size: int):
        self.read, self.size = read, size

    def __len__(self) -> int:
        return self.size


def _pad_crop_flip(images_NHWC: np.ndarray, pad: int, draws_N3: np.ndarray) -> np.ndarray:
    """CIFAR augmentation: random crops of the image padded by ``pad``, random flips."""
    n, h, w, _ = images_NHWC.shape
    padded = np.pad(images_NHWC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return np.stack([random_crop_flip(padded[i], h, draws_N3[i]) for i in range(n)])


# ---------------------------------------------------------------------------------------
# The catalogue


@dataclasses.dataclass(frozen=True)
class _Spec:
    splits: tuple[str, ...]
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    dirnames: tuple[str, ...]
    how_to: str
    reader: Callable | None = None
    system_dirs: tuple[str, ...] = ()
    tfds_name: str | None = None
    augment: str | None = None


_MNIST_HOW = ("download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
              "t10k-labels-idx1-ubyte.gz (for example from https://ossci-datasets.s3.amazonaws.com/mnist/) "
              "into DIR/mnist and pass --data-dir DIR (or set JAXVIS_DATA_DIR=DIR), or "
              "`pip install tensorflow-datasets && tfds build mnist --file_format=array_record`")
_FASHION_HOW = ("on Debian/Ubuntu `apt-get install dataset-fashion-mnist`; or download the four IDX files from "
                "https://github.com/zalandoresearch/fashion-mnist into DIR/fashion_mnist and pass --data-dir DIR "
                "(or set JAXVIS_DATA_DIR=DIR); or `pip install tensorflow-datasets && "
                "tfds build fashion_mnist --file_format=array_record`")
_CIFAR_HOW = ("download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it in DIR (giving "
              "DIR/cifar-10-batches-py) and pass --data-dir DIR (or set JAXVIS_DATA_DIR=DIR); or "
              "`pip install tensorflow-datasets && tfds build cifar10 --file_format=array_record`")
_IMAGENET_HOW = ("ILSVRC2012 needs registration at https://image-net.org; arrange it as "
                 "DIR/imagenet2012/train/<wnid>/*.JPEG and DIR/imagenet2012/val/<wnid>/*.JPEG and pass "
                 "--data-dir DIR (or set JAXVIS_DATA_DIR=DIR); or put ILSVRC2012_img_train.tar and "
                 "ILSVRC2012_img_val.tar in tfds' manual directory and "
                 "`tfds build imagenet2012 --file_format=array_record`")

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DATASETS: dict[str, _Spec] = {
    "mnist": _Spec(("train", "test"), (28, 28, 1), DIGITS, ("mnist",), _MNIST_HOW, _read_idx_dir,
                   tfds_name="mnist"),
    "fashion_mnist": _Spec(("train", "test"), (28, 28, 1), FASHION_CLASSES, ("fashion_mnist", "fashion-mnist"),
                           _FASHION_HOW, _read_idx_dir, ("/usr/share/datasets/fashion-mnist",), "fashion_mnist"),
    "cifar10": _Spec(("train", "test"), (32, 32, 3), CIFAR10_CLASSES, ("cifar10", "cifar-10-batches-py"),
                     _CIFAR_HOW, _read_cifar_dir, tfds_name="cifar10", augment="pad_crop_flip"),
    "imagenet2012": _Spec(("train", "validation"), (IMAGENET_CROP, IMAGENET_CROP, 3), (),
                          ("imagenet2012", "imagenet"), _IMAGENET_HOW, tfds_name="imagenet2012",
                          augment="crop_flip"),
    "mnist_sample": _Spec(("test",), (28, 28, 1), DIGITS, (), "it ships inside the jaxvis package"),
}
SAMPLE_FILE = "mnist_test_1000.npz"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split of a dataset, ready to be batched.

    ``image_shape`` is the shape of the images in the batches (224x224 crops for
    ImageNet); ``where`` says which files or tfds dataset the examples come from.
    """

    name: str
    split: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    where: str
    source: _Arrays | _Lazy = dataclasses.field(repr=False)

    @property
    def num_examples(self) -> int:
        return len(self.source)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """Example ``i`` in file order as ``(image_HWC uint8, label)``, as evaluation sees it
        (ImageNet: torchvision's ``Resize(256)`` + ``CenterCrop(224)``)."""
        _checks.index(f"example of {self.name} {self.split}", i, self.num_examples)
        if isinstance(self.source, _Lazy):
            image, label = self.source.read(int(i))
            return center_crop(_resized(image), IMAGENET_CROP), int(label)
        return self.source.images_NHWC[i], int(self.source.labels_N[i])

    def batches(self, batch_size: int, *, shuffle_seed: int | None = None, epoch: int = 0, skip: int = 0,
                drop_remainder: bool = False, augment: bool = False, ten_crop: bool = False,
                shard: tuple[int, int] = (0, 1), workers: int | None = None, prefetch: int = 2) -> Batches:
        """Batches of ``(images_NHWC uint8, labels_N int32)``.

        Args:
          batch_size: images per batch (over all shards).
          shuffle_seed: shuffle with this seed, a new order each ``epoch``; None keeps the
            file order.
          epoch: which epoch's order (and augmentation draws) to give.
          skip: start after this many batches, as when resuming mid-epoch.
          drop_remainder: leave out the last batch when it is smaller than ``batch_size``.
          augment: random crops and flips (ImageNet: 224 crops of the 256 image; CIFAR-10:
            32 crops of the image padded by 4). Drawn from ``shuffle_seed`` (0 if None).
          ten_crop: ImageNet evaluation; images come as ``(N, 10, 224, 224, 3)``.
          shard: ``(index, count)``: give only this part of each batch (one host's share
            when training over several hosts); ``batch_size`` must divide by ``count``.
          workers: threads decoding images of lazily read datasets (default: all cores).
          prefetch: batches decoded ahead of the one being consumed.
        """
        _checks.count("batch_size", batch_size)
        _checks.count("shuffle_seed", shuffle_seed, minimum=0, optional=True)
        _checks.count("epoch", epoch, minimum=0)
        _checks.count("skip", skip, minimum=0)
        _checks.count("workers", workers, optional=True)
        _checks.count("prefetch", prefetch, minimum=0)
        if not (isinstance(shard, (tuple, list)) and len(shard) == 2 and all(
                isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in shard)
                and 0 <= shard[0] < shard[1] and batch_size % shard[1] == 0):
            raise ValueError(f"shard must be (index, count) with 0 <= index < count and batch_size divisible "
                             f"by count, got shard={shard!r} with batch_size={batch_size}")
        spec = DATASETS[self.name]
        if augment and spec.augment is None:
            raise ValueError(f"{self.name} has no augmentation (flipping or shifting it changes what the "
                             "images show); train it with augment=False")
        if ten_crop and spec.augment != "crop_flip":
            raise ValueError(f"ten_crop is the ImageNet evaluation; {self.name} has no crops to take")
        if augment and ten_crop:
            raise ValueError("augment (training crops) and ten_crop (evaluation crops) exclude each other")
        return Batches(self, batch_size, shuffle_seed, epoch, skip, drop_remainder, augment, ten_crop,
                       shard, workers or os.cpu_count() or 1, prefetch)


@dataclasses.dataclass(frozen=True)
class Batches:
    """An epoch of batches; ``len()`` is the number of batches it yields."""

    dataset: Dataset
    batch_size: int
    shuffle_seed: int | None
    epoch: int
    skip: int
    drop_remainder: bool
    augment: bool
    ten_crop: bool
    shard: tuple[int, int]
    workers: int
    prefetch: int

    def _num_batches(self) -> int:
        n = self.dataset.num_examples
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def __len__(self) -> int:
        return max(0, self._num_batches() - self.skip)

    def _order(self) -> np.ndarray:
        n = self.dataset.num_examples
        if self.shuffle_seed is None:
            return np.arange(n)
        return np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(n)

    def _plan(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Indices and augmentation draws of each (local share of a) batch."""
        order = self._order()
        index, count = self.shard
        seed = 0 if self.shuffle_seed is None else self.shuffle_seed
        for b in range(self.skip, self._num_batches()):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            draws = np.random.default_rng([seed, self.epoch, b]).random((len(batch), 3))
            local = slice(index * len(batch) // count, (index + 1) * len(batch) // count)
            yield batch[local], draws[local]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        source = self.dataset.source
        if isinstance(source, _Lazy):
            yield from self._iter_lazy(source)
            return
        for idx, draws in self._plan():
            images = source.images_NHWC[idx]
            if self.augment:
                images = _pad_crop_flip(images, 4, draws)
            yield images, source.labels_N[idx]

    def _iter_lazy(self, source: _Lazy) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        def one(i: int, draw: np.ndarray):
            image, label = source.read(int(i))
            image = _resized(image)
            if self.ten_crop:
                return ten_crops(image, IMAGENET_CROP), label
            if self.augment:
                return random_crop_flip(image, IMAGENET_CROP, draw), label
            return center_crop(image, IMAGENET_CROP), label

        def collect(futures) -> tuple[np.ndarray, np.ndarray]:
            images, labels = zip(*(f.result() for f in futures))
            return np.stack(images), np.asarray(labels, np.int32)

        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = collections.deque()
            for idx, draws in self._plan():
                pending.append([pool.submit(one, i, d) for i, d in zip(idx, draws)])
                if len(pending) > self.prefetch:
                    yield collect(pending.popleft())
            while pending:
                yield collect(pending.popleft())


# ---------------------------------------------------------------------------------------
# Finding a dataset


def _candidates(base: Path, spec: _Spec) -> list[Path]:
    """``base`` itself, then its folders named after the dataset. ``base`` itself is left
    out where its name is another dataset's: MNIST and Fashion-MNIST have the same file
    names, so the files in ``.../mnist`` must not be read as Fashion-MNIST."""
    others = {d.lower() for other in DATASETS.values() if other is not spec for d in other.dirnames}
    return [base] * (base.name.lower() not in others) + [base / d for d in spec.dirnames]


def _local(name: str, split: str, base: Path, spec: _Spec):
    """``(source, where, class_names)`` from a local directory, or None if it is not there."""
    for directory in _candidates(base, spec):
        if not directory.is_dir():
            continue
        if spec.reader is not None:
            arrays = spec.reader(directory, split, len(spec.class_names))
            if arrays is not None:
                return _Arrays(*arrays), str(directory), spec.class_names
        else:
            folder = _image_folder(directory, split)
            if folder is not None:
                paths, labels, wnids = folder
                return _Lazy(lambda i: (read(paths[i]).pixels_HWC, labels[i]), len(paths)), str(directory), wnids
    return None


def _tfds(name: str, split: str, data_dir: Path | None, spec: _Spec):
    """``(source, where, class_names)`` from tensorflow-datasets; raises when not prepared."""
    import tensorflow_datasets as tfds

    try:
        ds = tfds.data_source(spec.tfds_name, split=split, data_dir=None if data_dir is None else str(data_dir),
                              download=False)
    except NotImplementedError as err:  # prepared as TFRecord (tfds' default), which has no random access
        raise RuntimeError(f"{spec.tfds_name} is prepared in a format without random access ({err}); rebuild it "
                           f"with `tfds build {spec.tfds_name} --file_format=array_record`") from err
    where = f"tensorflow-datasets {spec.tfds_name} ({split})"

    def read(i: int):
        example = ds[i]
        return example["image"], int(example["label"])

    if name == "imagenet2012":
        return _Lazy(read, len(ds)), where, tuple(ds.dataset_info.features["label"].names)
    images, labels = zip(*(read(i) for i in range(len(ds))))
    images = np.stack(images).astype(np.uint8).reshape(len(ds), *spec.image_shape)
    return _Arrays(images, np.asarray(labels, np.int32)), where, spec.class_names


def _sample():
    with importlib.resources.as_file(importlib.resources.files("jaxvis") / "sample" / SAMPLE_FILE) as path:
        with np.load(path) as f:
            return _Arrays(f["images"], f["labels"].astype(np.int32)), f"jaxvis/sample/{SAMPLE_FILE}"


def open_dataset(name: str, split: str, *, data_dir=None, image_size: int | None = None) -> Dataset:
    """Find one split of a dataset; see :func:`load`.

    ``image_size``: resize every image to ``image_size`` x ``image_size`` (bilinear, once,
    when the split is opened), e.g. to give 28x28 digits to a network made for 64x64
    inputs. Only for datasets held in memory (not ImageNet, which is cropped to 224).

    Raises:
      ValueError: unknown name or split, a ``data_dir`` (or ``$JAXVIS_DATA_DIR``) that is
        a file, or data files that are there but malformed.
      FileNotFoundError: the dataset is in none of the searched places; the message
        (one line) lists each place and how to provide the data.
    """
    _checks.choice("dataset", name, DATASETS)
    spec = DATASETS[name]
    _checks.choice(f"split of {name}", split, spec.splits)
    if image_size is not None:
        if spec.reader is None and name != "mnist_sample":
            raise ValueError(f"image_size resizes datasets held in memory; {name} is read lazily and cropped to "
                             f"{spec.image_shape[0]}, so leave image_size None")
        _checks.count("image_size", image_size, optional=True)
    found = _open(name, split, data_dir, spec)
    if image_size is None or image_size == found.image_shape[0] == found.image_shape[1]:
        return found
    source = _Arrays(resize(found.source.images_NHWC, image_size), found.source.labels_N)
    return dataclasses.replace(found, image_shape=(image_size, image_size, found.image_shape[2]),
                               where=f"{found.where} (resized to {image_size}x{image_size})", source=source)


def resize(images_NHWC: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """uint8 images resized to ``size`` x ``size`` by bilinear interpolation (antialiased
    when shrinking), rounded back to uint8; in chunks, so memory stays small."""
    images_NHWC = np.asarray(images_NHWC)
    if images_NHWC.ndim != 4 or images_NHWC.dtype != np.uint8:
        raise ValueError(f"resize takes uint8 images (N, H, W, C), got {images_NHWC.dtype} of shape "
                         f"{images_NHWC.shape}")
    _checks.count("size", size)
    n, _, _, c = images_NHWC.shape
    fn = jax.jit(lambda x: jnp.clip(jnp.round(jax.image.resize(x.astype(jnp.float32), (x.shape[0], size, size, c),
                                                                "linear")), 0, 255).astype(jnp.uint8))
    out = np.empty((n, size, size, c), np.uint8)
    for start in range(0, n, chunk):
        part = images_NHWC[start:start + chunk]
        if len(part) < chunk and n > chunk:  # one compiled shape: pad the last chunk
            part = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
        out[start:start + chunk] = np.asarray(fn(part))[:min(chunk, n - start)]
    return out


def _data_folder(path, what: str) -> Path:
    """A folder the user named for data, ``~`` expanded; a ``ValueError`` names ``what`` if it is a file."""
    return folder(folder(path, what, create=False).expanduser(), what, create=False)


def _open(name: str, split: str, data_dir, spec: _Spec) -> Dataset:
    if name == "mnist_sample":
        source, where = _sample()
        return Dataset(name, split, spec.image_shape, spec.class_names, where, source)

    searched = []
    places = []
    if data_dir is not None:
        places.append((_data_folder(data_dir, "data_dir"), "data_dir argument"))
    elif os.environ.get(ENV_VAR):
        places.append((_data_folder(os.environ[ENV_VAR], f"${ENV_VAR}"), f"${ENV_VAR}"))
    else:
        searched.append(f"no data_dir argument, and ${ENV_VAR} is not set")
    places += [(Path(d), "system location") for d in spec.system_dirs]
    for base, label in places:
        found = _local(name, split, base, spec)
        if found is not None:
            return Dataset(name, split, spec.image_shape, found[2], found[1], found[0])
        if base.is_dir():
            tried = ", ".join(str(d) for d in _candidates(base, spec))
            searched.append(f"{label}: no {name} {split} files in {tried}")
        else:
            searched.append(f"{label}: {base} does not exist")
    if importlib.util.find_spec("tensorflow_datasets") is None:
        searched.append("tensorflow-datasets: not installed")
    else:
        try:
            source, where, names = _tfds(name, split, data_dir, spec)
            return Dataset(name, split, spec.image_shape, names, where, source)
        except Exception as e:
            searched.append(f"tensorflow-datasets {spec.tfds_name}: {type(e).__name__}: {e}".splitlines()[0])
    raise FileNotFoundError(f"dataset {name!r} (split {split!r}) was not found; searched: {'; '.join(searched)}. "
                            f"To provide it: {spec.how_to}.")


def load(name: str, split: str, batch_size: int, *, data_dir=None, shuffle_seed: int | None = None,
         image_size: int | None = None, **batch_options) -> Batches:
    """One epoch of ``(images_NHWC uint8, labels_N int32)`` batches of a dataset split.

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``imagenet2012`` or ``mnist_sample``.
      split: ``train`` or ``test`` (ImageNet: ``train`` or ``validation``).
      batch_size: images per batch.
      data_dir: a directory holding the files (or a folder named after the dataset);
        default ``$JAXVIS_DATA_DIR``.
      shuffle_seed: seeded shuffle; None keeps the file order.
      image_size: resize to this square size (see :func:`open_dataset`).
      **batch_options: passed to :meth:`Dataset.batches` (``epoch``, ``augment``, ...).
    """
    _checks.keywords("data.load", batch_options, ("epoch", "skip", "drop_remainder", "augment", "ten_crop", "shard",
                                                  "workers", "prefetch"))
    return open_dataset(name, split, data_dir=data_dir, image_size=image_size).batches(
        batch_size, shuffle_seed=shuffle_seed, **batch_options)

"""Photos in: find image files, read them as RGB, and prepare them the way a network's
weights expect.

The path of a photo to the network: :func:`find` turns files, folders and glob patterns
into image files; :func:`read` decodes one into uint8 RGB (EXIF orientation applied,
other colour modes converted and noted); :func:`prepare` resizes and crops it as a named
:class:`Preset` says, giving floats in [0, 1] (torchvision's ``Resize`` + ``CenterCrop``
are :func:`resize_short_side` and :func:`center_crop`, which :mod:`jaxvis.data`'s ImageNet
pipeline uses too); :func:`for_preset` gives the model whose
``normalize`` then produces exactly the input the weights were trained on (torchvision's
RGB mean/std, or the caffe/Keras BGR mean subtraction). :func:`load` does all of it for a
list of paths. Colour profiles are not applied (neither torchvision nor Keras applies them).
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from jaxvis import _checks, weights
from jaxvis.models import CHANNEL_ORDERS, IMAGENET_MEAN, IMAGENET_STD, Model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SAMPLE_PHOTOS = Path(__file__).parent / "sample" / "photos"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # on 0-255 pixels, as keras.applications.vgg16.preprocess_input
_KERAS_SUFFIXES = (".h5", ".hdf5")
_MODE_NAMES = {"L": "grayscale", "1": "black and white", "P": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr",
               "LAB": "CIELAB", "HSV": "HSV"}
_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclasses.dataclass(frozen=True)
class Preset:
    """How photos become a network's input.

    Attributes:
      name: the preset's name in :data:`PRESETS`.
      resize: the short side, in pixels, that the photo is resized to (keeping its aspect)
        before a centre crop of ``crop``; None: the whole photo is resized to the output
        size, aspect not kept.
      crop: the output (height, width) when :func:`prepare` is given no size; None: the
        size must be given (the network's input).
      channel_order: "RGB" or "BGR", the channel order the network's first layer expects.
      mean, std: per channel, on pixels in [0, 1], in ``channel_order``: the network's
        input is ``(pixels - mean) / std``.
      doc: what the preset reproduces, in words.
    """

    name: str
    resize: int | None
    crop: tuple[int, int] | None
    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    doc: str

    def __post_init__(self):
        _checks.choice("channel order", self.channel_order, CHANNEL_ORDERS)
        _checks.count("resize", self.resize, optional=True)
        if self.resize is not None and (self.crop is None or self.resize < max(self.crop)):
            raise ValueError(f"preset {self.name!r} resizes the short side to {self.resize}, so it needs a crop "
                             f"no larger than that, got crop={self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"preset {self.name!r} needs 3 means and 3 positive stds, got mean={self.mean}, "
                             f"std={self.std}")


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("torchvision", 256, (224, 224), "RGB", IMAGENET_MEAN, IMAGENET_STD,
           "torchvision's ImageNet evaluation, Resize(256) + CenterCrop(224) + ToTensor + Normalize: the short "
           "side resized to 256 (PIL bilinear, antialiased; the long side int(256 * long / short)), the centre "
           "224x224 (offsets int(round((256 - 224) / 2)) as torchvision rounds), RGB, ImageNet mean/std. For "
           "torchvision weights (.pth, .pt, .safetensors, .npz). Another output size keeps the crop's share "
           "of the short side, 224/256, as timm's crop_pct does."),
    Preset("caffe", None, None, "BGR", tuple(m / 255 for m in CAFFE_MEAN_BGR), (1 / 255,) * 3,
           "Keras VGG16/VGG19 (keras.applications.vgg16.preprocess_input, caffe mode): the whole photo resized "
           "to the network's input (bilinear; Keras's load_img defaults to nearest), BGR, the mean (103.939, "
           "116.779, 123.68) subtracted from 0-255 pixels, no scaling. For Keras .h5 weights."),
    Preset("whole", None, None, "RGB", IMAGENET_MEAN, IMAGENET_STD,
           "The whole photo resized to the network's input (bilinear, aspect not kept: nothing is cropped "
           "away, shapes are stretched), RGB, ImageNet mean/std. For torchvision weights."),
)}


@dataclasses.dataclass(frozen=True)
class Photo:
    """One decoded photo: ``pixels_HWC`` uint8 RGB, upright; ``note`` says what was
    converted (colour mode, EXIF orientation, frames), or None."""

    path: Path
    pixels_HWC: np.ndarray
    note: str | None


@dataclasses.dataclass(frozen=True)
class Photos:
    """Photos prepared for a network: ``pixels_NHWC`` float32 RGB in [0, 1], with each
    photo's path and note, and the preset's name."""

    pixels_NHWC: np.ndarray
    paths: tuple[Path, ...]
    notes: tuple[str | None, ...]
    preset: str


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files from files, folders and glob patterns, in the order given, each once.

    A folder gives its image files sorted by name, not searching subfolders; a glob
    pattern (``photos/*.jpg``, ``photos/**/*.png`` for subfolders too) gives its image
    matches sorted. Images are recognised by suffix: ``IMAGE_SUFFIXES``, any case.

    Raises ``ValueError`` naming the entry for a missing path, a file that is not an
    image, a folder with no images, or a pattern matching none.
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not entries:
        raise ValueError("no photos given: expected image files, folders of images or glob patterns")
    expected = f"files ending in {', '.join(IMAGE_SUFFIXES)}"
    found: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if _is_image(p))
            if not images:
                raise ValueError(f"folder {str(path)!r} holds no images (expected {expected}; "
                                 "subfolders are not searched: use a pattern such as 'folder/**/*.jpg')")
        elif path.is_file():
            if not _is_image(path):
                raise ValueError(f"{str(path)!r} is not an image file: expected {expected}")
            images = [path]
        elif glob.has_magic(str(entry)):
            images = sorted(p for p in map(Path, glob.glob(str(entry), recursive=True)) if _is_image(p))
            if not images:
                raise ValueError(f"pattern {str(entry)!r} matches no image files (expected {expected})")
        else:
            raise ValueError(f"no such file or folder: {str(path)!r} (expected an image file, a folder of "
                             "images or a glob pattern such as 'photos/*.jpg')")
        found.extend(images)
    return list(dict.fromkeys(found))


def read(path: str | os.PathLike) -> Photo:
    """Decode one photo as uint8 RGB ``(H, W, 3)``, turned upright by its EXIF orientation.

    Grayscale, black and white, palette, CMYK and other modes are converted to RGB;
    16-bit grayscale is scaled by 255/65535; transparent pixels (RGBA, LA, palette or
    colour-key transparency) are composited on white; an animation gives its first
    frame. ``Photo.note`` says which of these happened.

    Raises ``ValueError`` naming the file if it is missing, unreadable or truncated, or
    holds floating-point pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such photo: {str(path)!r} is not a file")
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
            image = ImageOps.exif_transpose(opened)
            image.load()
    except Exception as err:  # Pillow's decoders fail with many types (OSError, SyntaxError, struct.error, ...)
        raise ValueError(f"cannot read photo {str(path)!r} ({type(err).__name__}: {err}); expected an "
                         "undamaged JPEG, PNG or other image Pillow decodes") from err
    pixels_HWC, converted = _to_rgb(image, path)
    notes = [converted] if converted else []
    if orientation in range(2, 9):
        notes.append(f"EXIF orientation {orientation} applied")
    if frames > 1:
        notes.append(f"first of {frames} frames")
    return Photo(path, pixels_HWC, "; ".join(notes) or None)


def _to_rgb(image: Image.Image, path: Path) -> tuple[np.ndarray, str | None]:
    """uint8 RGB pixels of a decoded image, and what conversion it took (None if none)."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.asarray(image), None
    if mode in _16_BIT_MODES:
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"photo {str(path)!r} has {mode} pixels in [{values.min()}, {values.max()}]; expected "
                             "8-bit or 16-bit values")
        gray_HW = np.round(values * (255 / 65535)).astype(np.uint8)
        return np.repeat(gray_HW[..., None], 3, axis=-1), f"converted from {mode} (16-bit grayscale)"
    if mode.startswith("F") or mode.startswith("I"):
        raise ValueError(f"photo {str(path)!r} holds {mode} pixels (floating point or 32-bit); expected 8-bit or "
                         "16-bit images")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
        return np.asarray(rgb), f"converted from {mode} (transparent pixels composited on white)"
    name = f" ({_MODE_NAMES[mode]})" if mode in _MODE_NAMES and _MODE_NAMES[mode] != mode else ""
    return np.asarray(image.convert("RGB")), f"converted from {mode}{name}"


def _preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    _checks.choice("preset", preset, PRESETS)
    return PRESETS[preset]


def _output_size(preset: Preset, size) -> tuple[int, int]:
    if size is None:
        if preset.crop is None:
            raise ValueError(f"preset {preset.name!r} resizes the whole photo to the network's input: pass "
                             "size=(height, width), e.g. model.input_shape[:2]")
        return preset.crop
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        pair = tuple(size)
    else:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    for value in pair:
        _checks.count("size", value)
    return int(pair[0]), int(pair[1])


def _check_pixels(pixels_HWC, what: str = "the image") -> None:
    if not (isinstance(pixels_HWC, np.ndarray) and pixels_HWC.dtype == np.uint8 and pixels_HWC.ndim == 3
            and pixels_HWC.shape[2] == 3):
        given = getattr(pixels_HWC, "dtype", type(pixels_HWC).__name__)
        raise ValueError(f"{what} must hold uint8 RGB pixels (H, W, 3), got {given} of shape {np.shape(pixels_HWC)}")


def resize_short_side(pixels_HWC: np.ndarray, short: int) -> np.ndarray:
    """uint8 RGB pixels resized, aspect kept, so that the shorter side is ``short``, as
    torchvision's ``Resize(short)`` resizes a PIL image: the long side is
    ``int(short * long / shorter)`` (truncated, not rounded), the filter PIL's bilinear
    (antialiased when shrinking), a photo already that size is left as it is."""
    _check_pixels(pixels_HWC)
    _checks.count("short side", short)
    h, w = pixels_HWC.shape[:2]
    # torchvision's _compute_resized_output_size: the long side is truncated, not rounded.
    new_h, new_w = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    if (new_h, new_w) == (h, w):
        return pixels_HWC
    return np.asarray(Image.fromarray(pixels_HWC).resize((new_w, new_h), Image.Resampling.BILINEAR))


def crop_size(pixels_HWC, size) -> tuple[int, int]:
    """A crop's ``(height, width)`` from an int or a pair, checked to fit in the HWC image."""
    pair = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"crop size must be an int or (height, width), got {size!r}")
    for side in pair:
        _checks.count("crop size", side)
    if np.ndim(pixels_HWC) != 3 or np.shape(pixels_HWC)[0] < pair[0] or np.shape(pixels_HWC)[1] < pair[1]:
        raise ValueError(f"expected an HWC image of at least {pair[0]}x{pair[1]} to crop, got shape "
                         f"{np.shape(pixels_HWC)}")
    return int(pair[0]), int(pair[1])


def center_crop(pixels_HWC: np.ndarray, size) -> np.ndarray:
    """The centre ``size`` (an int, or ``(height, width)``) of an HWC image, as torchvision's
    ``CenterCrop``: offsets ``int(round((H - height) / 2))``, Python's round, so a half goes
    to the even offset (19.5 -> 20, 18.5 -> 18; a floor would take 19 and 18)."""
    out_h, out_w = crop_size(pixels_HWC, size)
    h, w = np.shape(pixels_HWC)[:2]
    top, left = int(round((h - out_h) / 2.0)), int(round((w - out_w) / 2.0))
    return pixels_HWC[top:top + out_h, left:left + out_w]


def prepare(photo: Photo, preset: str | Preset = "torchvision", size=None, min_size: int = 32) -> np.ndarray:
    """A photo resized and cropped as ``preset`` says: float32 RGB in [0, 1], ``(h, w, 3)``.

    Args:
      photo: from :func:`read`.
      preset: a name in :data:`PRESETS` or a :class:`Preset`.
      size: the output (height, width) or one int for both: the network's input size.
        Required by presets without a crop ("whole", "caffe"); for "torchvision" it
        replaces the 224 crop, and the short side is resized to keep the crop's share
        of it (256/224 times the crop's larger side, rounded down).
      min_size: photos whose shorter side is below this many pixels are refused, since
        upscaling them shows the interpolation rather than the photo.

    The channel order and normalization are left to the model (:func:`for_preset`).
    """
    if not isinstance(photo, Photo):
        raise ValueError(f"prepare takes a Photo from jaxvis.images.read, got {type(photo).__name__}")
    photo_HWC = photo.pixels_HWC
    _check_pixels(photo_HWC, "a Photo")
    preset = _preset(preset)
    out_h, out_w = _output_size(preset, size)
    _checks.count("min_size", min_size)
    h, w = photo_HWC.shape[:2]
    if min(h, w) < min_size:
        raise ValueError(f"photo {str(photo.path)!r} is {w}x{h} pixels; expected a shorter side of at least "
                         f"{min_size} pixels (min_size)")
    if preset.resize is None:
        pixels_HWC = np.asarray(Image.fromarray(photo_HWC).resize((out_w, out_h), Image.Resampling.BILINEAR))
    else:
        short = preset.resize * max(out_h, out_w) // max(preset.crop)
        pixels_HWC = center_crop(resize_short_side(photo_HWC, short), (out_h, out_w))
    return pixels_HWC.astype(np.float32) / 255


def load(paths, preset: str | Preset = "torchvision", size=None, min_size: int = 32) -> Photos:
    """:func:`find`, :func:`read` and :func:`prepare` for every photo in ``paths``: one
    batch, ``Photos.pixels_NHWC`` float32 RGB in [0, 1]; see :func:`prepare` for the
    arguments. Normalize it with ``for_preset(model, preset).normalize``."""
    preset = _preset(preset)
    photos = [read(path) for path in find(paths)]
    pixels_NHWC = np.stack([prepare(photo, preset, size, min_size) for photo in photos])
    return Photos(pixels_NHWC, tuple(p.path for p in photos), tuple(p.note for p in photos), preset.name)


def for_preset(model: Model, preset: str | Preset) -> Model:
    """``model`` with the preset's mean, std and channel order, so that
    ``model.normalize(pixels_NHWC)`` of RGB pixels in [0, 1] is exactly the input the
    weights expect and ``model.denormalize`` gives the RGB pixels back."""
    preset = _preset(preset)
    if model.input_shape[-1] != 3:
        raise ValueError(f"photo presets are for networks with 3 input channels; {model.name} has "
                         f"{model.input_shape[-1]}")
    return dataclasses.replace(model, mean=tuple(preset.mean), std=tuple(preset.std),
                               channel_order=preset.channel_order)


def preset_for_weights(path: str | os.PathLike) -> str:
    """"caffe" for Keras ``.h5`` weights, "torchvision" for the other weight files."""
    suffix = weights._suffix(Path(path), weights.LOAD_SUFFIXES, "choose a preset for")
    return "caffe" if suffix in _KERAS_SUFFIXES else "torchvision"


def check_preset(preset: str | Preset, weights_path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``preset`` normalizes pixels as the weights in
    ``weights_path`` expect (same channel order, mean and std as
    :func:`preset_for_weights`'s preset; the resize and crop may differ)."""
    preset = _preset(preset)
    expected = PRESETS[preset_for_weights(weights_path)]
    if (preset.channel_order, preset.mean, preset.std) != (expected.channel_order, expected.mean, expected.std):
        matching = [p.name for p in PRESETS.values()
                    if (p.channel_order, p.mean, p.std) == (expected.channel_order, expected.mean, expected.std)]
        raise ValueError(f"preset {preset.name!r} ({preset.channel_order}, mean {preset.mean}) does not normalize "
                         f"pixels as the weights in {str(weights_path)!r} expect ({expected.channel_order}, mean "
                         f"{expected.mean}); use preset {' or '.join(repr(m) for m in matching)}")

"""jaxvis.images: presets against torchvision's and Keras's documented preprocessing, file
types made with Pillow against NumPy conversions, and find's files, folders and patterns."""

import numpy as np
import pytest
from PIL import Image

import jaxvis
from jaxvis import images
from jaxvis.images import Photo
from jaxvis.models import IMAGENET_MEAN, IMAGENET_STD


def photo(pixels_HWC, name="photo.png"):
    return Photo(name, np.asarray(pixels_HWC, np.uint8), None)


def random_rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth_rgb(h, w):
    """A smooth image: resampling differences stay small, unlike on noise."""
    y, x = np.mgrid[:h, :w]
    return np.stack([255 * x / w, 255 * y / h, 127 + 100 * np.sin(x / 7.0 + y / 11.0)], -1).round().astype(np.uint8)


# --- presets against the frameworks' documented preprocessing --------------------------------


def torchvision_pixels(rgb_HWC, resize=256, crop=224):
    """transforms.Resize(resize) + CenterCrop(crop) + ToTensor on a PIL image, written from
    torchvision's transforms/functional.py: _compute_resized_output_size truncates the long
    side, F_pil.resize is PIL's bilinear resize, center_crop offsets are
    int(round((size - crop) / 2.0)) with Python's round."""
    h, w = rgb_HWC.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = np.asarray(Image.fromarray(rgb_HWC).resize((new_w, new_h), Image.BILINEAR))
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return resized[top:top + crop, left:left + crop] / 255.0


@pytest.mark.parametrize("h, w, resized_hw, offsets", [
    (200, 204, (256, 261), (16, 18)),  # (261-224)/2 = 18.5 rounds to even 18 (torchvision < 0.8 took 19)
    (206, 200, (263, 256), (20, 16)),  # 19.5 rounds to 20 (a floor would take 19)
    (300, 451, (256, 384), (16, 80)),  # int(384.85): the long side truncated, not rounded to 385
    (256, 256, (256, 256), (16, 16)),  # no resize
])
def test_torchvision_preset_equals_resize_centercrop_totensor(rng, h, w, resized_hw, offsets):
    rgb = random_rgb(rng, h, w)
    got = images.prepare(photo(rgb), "torchvision")
    assert got.shape == (224, 224, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, torchvision_pixels(rgb).astype(np.float32))
    # The sizes and offsets worked out by hand above.
    resized = np.asarray(Image.fromarray(rgb).resize(resized_hw[::-1], Image.BILINEAR)) / 255.0
    top, left = offsets
    np.testing.assert_array_equal(got, resized[top:top + 224, left:left + 224].astype(np.float32))


def antialiased_bilinear(rgb_HWC, new_h, new_w):
    """The triangle filter widened by the downscale factor (torch's antialiased bilinear
    resize; PIL's BILINEAR), as two weight matrices in float64."""
    def weights(n_in, n_out):
        scale = n_in / n_out
        width = max(scale, 1.0)
        centers = (np.arange(n_out) + 0.5) * scale
        w = np.maximum(0.0, 1 - np.abs((np.arange(n_in)[None] + 0.5 - centers[:, None]) / width))
        return w / w.sum(1, keepdims=True)

    h, w = rgb_HWC.shape[:2]
    return np.einsum("ih,hwc,jw->ijc", weights(h, new_h), rgb_HWC.astype(np.float64), weights(w, new_w), optimize=True)


def test_torchvision_resize_is_the_antialiased_bilinear_filter(rng):
    rgb = random_rgb(rng, 300, 451)  # noise: the worst case for antialiasing
    got = images.prepare(photo(rgb), "torchvision")
    expected = antialiased_bilinear(rgb, 256, 384)[16:240, 80:304] / 255
    # PIL rounds to uint8 after each pass: at most one level apart.
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("size, short", [((320, 320), 365), (32, 36), ((224, 300), 342)])
def test_torchvision_preset_keeps_the_crop_share_for_other_sizes(rng, size, short):
    rgb = smooth_rgb(240, 330)
    got = images.prepare(photo(rgb), "torchvision", size=size)
    oh, ow = (size, size) if isinstance(size, int) else size
    new_h, new_w = short, int(short * 330 / 240)
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR)) / 255
    top, left = int(round((new_h - oh) / 2)), int(round((new_w - ow) / 2))
    np.testing.assert_array_equal(got, resized[top:top + oh, left:left + ow].astype(np.float32))


@pytest.mark.parametrize("preset", ["caffe", "whole"])
def test_whole_photo_presets_resize_without_cropping(rng, preset):
    rgb = random_rgb(rng, 90, 70)
    got = images.prepare(photo(rgb), preset, size=(40, 60))
    expected = np.asarray(Image.fromarray(rgb).resize((60, 40), Image.BILINEAR)) / 255
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    with pytest.raises(ValueError, match=f"preset '{preset}' resizes the whole photo.*pass size"):
        images.prepare(photo(rgb), preset)


def test_torchvision_preset_normalizes_as_torchvision(rng):
    pixels = images.prepare(photo(random_rgb(rng, 230, 250)), "torchvision")[None]
    model = images.for_preset(jaxvis.build("vgg16", input_size=32), "torchvision")
    expected = (pixels - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)  # transforms.Normalize
    np.testing.assert_allclose(model.normalize(pixels), expected, atol=1e-5)


def test_caffe_preset_normalizes_as_keras_vgg_preprocess_input(rng):
    pixels = images.prepare(photo(random_rgb(rng, 50, 40)), "caffe", size=32)[None]
    model = images.for_preset(jaxvis.build("vgg16", input_size=32), "caffe")
    # keras.applications.vgg16.preprocess_input on 0-255 RGB: to BGR, minus the caffe mean.
    expected = (pixels * 255.0)[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(model.normalize(pixels), expected, atol=1e-4)
    np.testing.assert_allclose(model.denormalize(model.normalize(pixels)), pixels, atol=1e-6)


def test_for_preset_refuses_a_grayscale_network():
    with pytest.raises(ValueError, match="3 input channels; mnist_cnn has 1"):
        images.for_preset(jaxvis.build("mnist_cnn"), "torchvision")


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ValueError, match="unknown preset 'torchvison'.*Did you mean 'torchvision'"):
        images.prepare(photo(np.zeros((40, 40, 3))), "torchvison")


@pytest.mark.parametrize("size, message", [(224.0, "size must be an int or"), ((1, 2, 3), "size must be"),
                                           (0, "size must be an integer >= 1"), (True, "size must be an int or")])
def test_prepare_refuses_bad_sizes(size, message):
    with pytest.raises(ValueError, match=message):
        images.prepare(photo(np.zeros((40, 40, 3))), "whole", size=size)


def test_prepare_refuses_a_photo_that_is_not_uint8_rgb():
    with pytest.raises(ValueError, match=r"uint8 RGB pixels \(H, W, 3\), got float64 of shape \(40, 40\)"):
        images.prepare(Photo("x.png", np.zeros((40, 40)), None), "whole", size=32)


def test_center_crop_rounds_half_offsets_to_even():
    image = np.arange(9 * 6).reshape(9, 6, 1)
    # rows (9 - 4) / 2 = 2.5 -> 2, columns (6 - 3) / 2 = 1.5 -> 2: Python's round, as torchvision's CenterCrop
    np.testing.assert_array_equal(images.center_crop(image, (4, 3)), image[2:6, 2:5])
    np.testing.assert_array_equal(images.center_crop(image, 6), image[2:8, 0:6])  # 1.5 -> 2, 0


@pytest.mark.parametrize("call, message", [
    (lambda: images.resize_short_side(np.zeros((40, 50, 3)), 32),
     "the image must hold uint8 RGB pixels (H, W, 3), got float64 of shape (40, 50, 3)"),
    (lambda: images.resize_short_side(np.zeros((40, 50, 3), np.uint8), 0), "short side must be an integer >= 1, got 0"),
    (lambda: images.center_crop(np.zeros((10, 12, 3)), (11, 12)),
     "expected an HWC image of at least 11x12 to crop, got shape (10, 12, 3)"),
    (lambda: images.center_crop(np.zeros((10, 12, 3)), (2, 3, 4)),
     "crop size must be an int or (height, width), got (2, 3, 4)"),
    (lambda: images.center_crop(np.zeros((10, 12, 3)), 2.5), "crop size must be an int or (height, width), got 2.5"),
    (lambda: images.center_crop(np.zeros((10, 12, 3)), (0, 2)), "crop size must be an integer >= 1, got 0"),
])
def test_resize_and_crop_refuse_bad_input(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value), str(info.value)


def test_small_photos_are_refused_by_min_size():
    small = photo(np.zeros((20, 40, 3)), "tiny.png")
    with pytest.raises(ValueError, match=r"'tiny.png' is 40x20 pixels; expected a shorter side of at least 32"):
        images.prepare(small, "torchvision")
    assert images.prepare(small, "whole", size=8, min_size=16).shape == (8, 8, 3)


@pytest.mark.parametrize("path, preset", [("vgg16.h5", "caffe"), ("w.HDF5", "caffe"), ("vgg16.pth", "torchvision"),
                                          ("vgg16.safetensors", "torchvision"), ("w.npz", "torchvision")])
def test_preset_for_weights_by_file_kind(path, preset):
    assert images.preset_for_weights(path) == preset
    images.check_preset(preset, path)


def test_check_preset_refuses_a_mismatch_and_allows_the_same_normalization():
    images.check_preset("whole", "vgg16.pth")  # same RGB mean/std, another geometry
    with pytest.raises(ValueError, match="preset 'torchvision'.*'vgg16.h5'.*use preset 'caffe'"):
        images.check_preset("torchvision", "vgg16.h5")
    with pytest.raises(ValueError, match="preset 'caffe'.*use preset 'torchvision' or 'whole'"):
        images.check_preset("caffe", "vgg16.npz")
    with pytest.raises(ValueError, match="unknown suffix '.bin'"):
        images.preset_for_weights("model.bin")


# --- reading files --------------------------------------------------------------------------


def test_rgba_is_composited_on_white(tmp_path, rng):
    rgba = rng.integers(0, 256, (33, 35, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = images.read(tmp_path / "a.png")
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(got.pixels_HWC.astype(float) - expected).max() <= 1
    assert got.pixels_HWC[0, 0].tolist() == [255, 255, 255] and got.pixels_HWC[0, 1].tolist() == rgba[0, 1, :3].tolist()
    assert got.note == "converted from RGBA (transparent pixels composited on white)"


def test_grayscale_becomes_three_equal_channels(tmp_path, rng):
    gray = rng.integers(0, 256, (40, 36), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    got = images.read(tmp_path / "g.png")
    np.testing.assert_array_equal(got.pixels_HWC, np.repeat(gray[..., None], 3, -1))
    assert got.note == "converted from L (grayscale)"


def test_palette_is_looked_up_and_its_transparent_index_is_white(tmp_path, rng):
    index = rng.integers(0, 4, (32, 34), dtype=np.uint8)
    palette = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200], [7, 8, 9]], np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    image.save(tmp_path / "p.png")
    image.save(tmp_path / "pt.png", transparency=3)
    opaque, transparent = images.read(tmp_path / "p.png"), images.read(tmp_path / "pt.png")
    np.testing.assert_array_equal(opaque.pixels_HWC, palette[index])
    np.testing.assert_array_equal(transparent.pixels_HWC, np.where(index[..., None] == 3, 255, palette[index]))
    assert opaque.note == "converted from P (palette)"
    assert transparent.note == "converted from P (transparent pixels composited on white)"


def test_16_bit_grayscale_is_scaled_to_8_bits(tmp_path, rng):
    values = rng.integers(0, 65536, (32, 40)).astype(np.uint16)
    values[0, :3] = [0, 65535, 32896]
    Image.fromarray(values).save(tmp_path / "g16.png")
    got = images.read(tmp_path / "g16.png")
    np.testing.assert_array_equal(got.pixels_HWC[..., 1], np.round(values / 65535 * 255).astype(np.uint8))
    assert got.pixels_HWC[0, :3, 0].tolist() == [0, 255, 128]
    assert "16-bit grayscale" in got.note


def test_cmyk_is_converted(tmp_path, rng):
    cmyk = rng.integers(0, 256, (32, 33, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    got = images.read(tmp_path / "c.tif")
    c_HWC, k_HW1 = cmyk[..., :3].astype(float), cmyk[..., 3:].astype(float)
    expected = (255 - c_HWC) * (255 - k_HW1) / 255  # no colour profile: the plain subtractive model
    assert np.abs(got.pixels_HWC - expected).max() <= 1
    assert got.note == "converted from CMYK"


def test_exif_orientation_is_applied(tmp_path, rng):
    rgb = random_rgb(rng, 34, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)
    got = images.read(tmp_path / "o.png")
    np.testing.assert_array_equal(got.pixels_HWC, np.rot90(rgb, k=-1))
    assert got.note == "EXIF orientation 6 applied"


def test_animation_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    got = images.read(tmp_path / "a.gif")
    assert got.pixels_HWC[5, 5].tolist() == [255, 0, 0]
    assert got.note.endswith("first of 2 frames")


def test_rgb_jpeg_reads_unchanged(tmp_path):
    rgb = smooth_rgb(40, 48)
    Image.fromarray(rgb).save(tmp_path / "s.jpg", quality=95)
    got = images.read(tmp_path / "s.jpg")
    assert got.note is None and got.pixels_HWC.dtype == np.uint8
    assert np.abs(got.pixels_HWC.astype(int) - rgb).mean() < 2  # JPEG loss only


def test_truncated_and_foreign_files_are_value_errors_naming_the_file(tmp_path, rng):
    Image.fromarray(random_rgb(rng, 64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match=r"cannot read photo '.*cut.jpg'.*truncated"):
        images.read(tmp_path / "cut.jpg")
    with pytest.raises(ValueError, match=r"cannot read photo '.*text.jpg'"):
        images.read(tmp_path / "text.jpg")
    with pytest.raises(ValueError, match=r"no such photo: '.*missing.png'"):
        images.read(tmp_path / "missing.png")


def test_floating_point_images_are_refused(tmp_path):
    Image.fromarray(np.full((32, 32), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"'.*f.tif' holds F pixels"):
        images.read(tmp_path / "f.tif")


# --- finding files -------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", "sub/d.png", "empty/notes.md"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(("png", "JPG")):
            Image.new("RGB", (40, 40)).save(path, format="PNG" if name.endswith("png") else "JPEG")
        else:
            path.write_text("x")
    return tmp_path


def test_find_lists_a_folder_sorted_without_subfolders(tree):
    assert images.find(tree) == [tree / "a.JPG", tree / "b.png"]


def test_find_globs_keeps_order_and_drops_repeats(tree):
    assert images.find(str(tree / "**" / "*.png")) == [tree / "b.png", tree / "sub" / "d.png"]
    assert images.find([tree / "sub" / "d.png", str(tree / "*"), tree / "b.png"]) == [
        tree / "sub" / "d.png", tree / "a.JPG", tree / "b.png"]


@pytest.mark.parametrize("entry, message", [
    ("empty", r"folder '.*empty' holds no images.*subfolders are not searched"),
    ("c.txt", r"'.*c.txt' is not an image file: expected files ending in .jpg"),
    ("nope.png", r"no such file or folder: '.*nope.png'"),
    ("*.gif", r"pattern '.*\*.gif' matches no image files"),
])
def test_find_refuses_what_holds_no_images(tree, entry, message):
    with pytest.raises(ValueError, match=message):
        images.find(str(tree / entry))


def test_find_refuses_nothing():
    with pytest.raises(ValueError, match="no photos given"):
        images.find([])


# --- the bundled photos -------------------------------------------------------------------


def test_load_sample_photos_equals_read_then_prepare():
    photos = images.load(images.SAMPLE_PHOTOS)
    names = [p.name for p in photos.paths]
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert photos.pixels_NHWC.shape == (4, 224, 224, 3) and photos.pixels_NHWC.dtype == np.float32
    assert photos.notes == (None,) * 4 and photos.preset == "torchvision"
    np.testing.assert_array_equal(photos.pixels_NHWC[1], images.prepare(images.read(photos.paths[1])))
    assert 0 <= photos.pixels_NHWC.min() and photos.pixels_NHWC.max() <= 1


def test_sample_photos_are_small_and_documented():
    readme = (images.SAMPLE_PHOTOS / "README.md").read_text()
    for path in images.find(images.SAMPLE_PHOTOS):
        assert path.stat().st_size < 150_000, path
        assert f"`{path.name}`" in readme

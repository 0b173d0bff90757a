"""jaxvis.data against hand-written files: IDX, CIFAR-10 batches, an ImageNet folder tree."""

import dataclasses
import gzip
import pickle
import struct

import re

import numpy as np
import pytest
from PIL import Image
from test_images import torchvision_pixels

from jaxvis import data


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written by hand from the format's description (big-endian)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    return header + array.astype(dtype).tobytes()


def write_mnist(directory, split="train", n=7, seed=0, compress=True, labels=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8) if labels is None else labels
    prefix = {"train": "train", "test": "t10k"}[split]
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return images, labels


# --- IDX ----------------------------------------------------------------------------------


def test_read_idx_matches_handwritten_bytes(tmp_path):
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    expected = np.array([[1, 2, 3], [4, 5, 255]], np.uint8)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), expected)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), expected)


def test_read_idx_big_endian_int32_and_float32(tmp_path):
    ints = np.array([-2, 70000, 1], np.int32)
    floats = np.array([[0.5, -1.25]], np.float32)
    (tmp_path / "i").write_bytes(idx_bytes(ints, 0x0C))
    (tmp_path / "f").write_bytes(idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "i"), ints)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "f"), floats)


@pytest.mark.parametrize("raw, message", [
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2, 3]), "truncated"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "longer than its header"),
    (bytes([0, 0, 0x08, 3, 0, 0]), "truncated"),
    (b"\x89PNG\r\n", "not an IDX file"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "not an IDX file"),
    (b"", "not an IDX file"),
])
def test_read_idx_rejects_malformed_files(tmp_path, raw, message):
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(ValueError, match=message):
        data.read_idx(tmp_path / "bad")


def test_damaged_gzip_is_a_value_error(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:20])
    with pytest.raises(ValueError, match="damaged gzip"):
        data.read_idx(tmp_path / "bad.gz")


# --- MNIST-format directories -------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_data_dir_gives_the_written_images(tmp_path, compress):
    images, labels = write_mnist(tmp_path / "mnist", "test", compress=compress)
    ds = data.open_dataset("mnist", "test", data_dir=tmp_path)  # finds the mnist/ subfolder
    assert ds.num_examples == 7 and ds.where == str(tmp_path / "mnist")
    batches = list(ds.batches(3))
    assert [len(y) for _, y in batches] == [3, 3, 1]
    x = np.concatenate([b[0] for b in batches])
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)


def test_env_var_is_searched_when_no_data_dir(tmp_path, monkeypatch):
    images, _ = write_mnist(tmp_path, "train", n=4)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    x, _ = next(iter(data.load("mnist", "train", 4)))
    np.testing.assert_array_equal(x[..., 0], images)


def test_count_mismatch_names_both_counts(tmp_path):
    write_mnist(tmp_path, "train", n=5, labels=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        data.open_dataset("mnist", "train", data_dir=tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    write_mnist(tmp_path, "train", n=3, labels=np.array([1, 10, 2], np.uint8))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        data.open_dataset("mnist", "train", data_dir=tmp_path)


def test_images_without_labels_is_a_value_error(tmp_path):
    write_mnist(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="no train-labels"):
        data.open_dataset("mnist", "train", data_dir=tmp_path)


def test_missing_dataset_lists_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as info:
        data.open_dataset("mnist", "train", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message  # a script ends with it as one line
    for place in (str(tmp_path), str(tmp_path / "mnist"), "tensorflow-datasets", "--data-dir", "JAXVIS_DATA_DIR"):
        assert place in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.open_dataset("mnist", "train", data_dir=tmp_path / "nowhere")


def sample():
    return data.open_dataset("mnist_sample", "test")


# (id, callable of a scratch folder holding the plain file "file", what the ValueError must say)
BAD_INPUTS = [
    ("open_dataset name", lambda tmp: data.open_dataset("minst", "train"),
     "unknown dataset 'minst'; expected one of ['mnist', 'fashion_mnist', 'cifar10', 'imagenet2012', 'mnist_sample']."
     " Did you mean 'mnist'?"),
    ("open_dataset split", lambda tmp: data.open_dataset("mnist_sample", "train"),
     "unknown split of mnist_sample 'train'; expected one of ['test']"),
    ("open_dataset data_dir file", lambda tmp: data.open_dataset("mnist", "train", data_dir=tmp / "file"),
     "data_dir must be a folder, but"),
    ("open_dataset data_dir int", lambda tmp: data.open_dataset("mnist", "train", data_dir=3),
     "data_dir must be a path (str or os.PathLike), got int 3"),
    ("open_dataset image_size", lambda tmp: data.open_dataset("mnist_sample", "test", image_size="64"),
     "image_size must be None or an integer >= 1, got '64'"),
    ("open_dataset image_size imagenet", lambda tmp: data.open_dataset("imagenet2012", "train", image_size=64),
     "image_size resizes datasets held in memory; imagenet2012 is read lazily"),
    ("load batch_size 0", lambda tmp: data.load("mnist_sample", "test", 0), "batch_size must be an integer >= 1, got 0"),
    ("load unknown option", lambda tmp: data.load("mnist_sample", "test", 8, shufle_seed=1),
     "data.load has no setting 'shufle_seed'; its settings are ['epoch', 'skip',"),
    ("load augment", lambda tmp: data.load("mnist_sample", "test", 10, augment=True),
     "mnist_sample has no augmentation"),
    ("batches batch_size float", lambda tmp: sample().batches(2.5), "batch_size must be an integer >= 1, got 2.5"),
    ("batches batch_size str", lambda tmp: sample().batches("8"), "batch_size must be an integer >= 1, got '8'"),
    ("batches shard short", lambda tmp: sample().batches(8, shard=(0,)),
     "shard must be (index, count) with 0 <= index < count and batch_size divisible by count, got shard=(0,)"),
    ("batches shard float", lambda tmp: sample().batches(8, shard=(0.5, 2)), "got shard=(0.5, 2) with batch_size=8"),
    ("batches shard indivisible", lambda tmp: sample().batches(9, shard=(0, 2)), "got shard=(0, 2) with batch_size=9"),
    ("batches epoch negative", lambda tmp: sample().batches(8, shuffle_seed=0, epoch=-1),
     "epoch must be an integer >= 0, got -1"),
    ("batches epoch float", lambda tmp: sample().batches(8, epoch=1.5), "epoch must be an integer >= 0, got 1.5"),
    ("batches shuffle_seed str", lambda tmp: sample().batches(8, shuffle_seed="a"),
     "shuffle_seed must be None or an integer >= 0, got 'a'"),
    ("batches skip float", lambda tmp: sample().batches(8, skip=1.5), "skip must be an integer >= 0, got 1.5"),
    ("batches workers 0", lambda tmp: sample().batches(8, workers=0), "workers must be None or an integer >= 1, got 0"),
    ("batches prefetch -1", lambda tmp: sample().batches(8, prefetch=-1), "prefetch must be an integer >= 0, got -1"),
    ("batches ten_crop", lambda tmp: sample().batches(8, ten_crop=True), "ten_crop is the ImageNet evaluation"),
    ("getitem float", lambda tmp: sample()[1.5], "example of mnist_sample test must be an integer, got float64"),
    ("getitem out of range", lambda tmp: sample()[1000],
     "expected 0 <= example of mnist_sample test < 1000, got [1000]"),
    ("read_idx missing", lambda tmp: data.read_idx(tmp / "nowhere"), "expected an IDX file, but"),
    ("read_idx folder", lambda tmp: data.read_idx(tmp), "is a folder"),
    ("resize size float", lambda tmp: data.resize(np.zeros((1, 4, 4, 1), np.uint8), 2.5),
     "size must be an integer >= 1, got 2.5"),
    ("resize float images", lambda tmp: data.resize(np.zeros((1, 4, 4, 1)), 2),
     "resize takes uint8 images (N, H, W, C), got float64 of shape (1, 4, 4, 1)"),
    ("center_crop larger", lambda tmp: data.center_crop(np.zeros((10, 12, 3)), 11),
     "expected an HWC image of at least 11x11 to crop, got shape (10, 12, 3)"),
    ("ten_crops larger", lambda tmp: data.ten_crops(np.zeros((10, 12, 3)), 11), "at least 11x11 to crop"),
    ("random_crop_flip size 0", lambda tmp: data.random_crop_flip(np.zeros((10, 12, 3)), 0, np.zeros(3)),
     "crop size must be an integer >= 1, got 0"),
]


def over_bad_inputs(table):
    """Parametrize a test over a ``BAD_INPUTS`` table of ``(id, call, message)``."""
    return pytest.mark.parametrize("call, message", [case[1:] for case in table], ids=[case[0] for case in table])


def assert_refused(call, scratch, message: str) -> None:
    """``call(scratch)`` raises a ``ValueError`` whose message holds ``message``."""
    with pytest.raises(ValueError) as info:
        call(scratch)
    assert message in str(info.value), f"{message!r} is not in {str(info.value)!r}"


@over_bad_inputs(BAD_INPUTS)
def test_bad_input_is_a_value_error_naming_expected_and_given(tmp_path, call, message):
    (tmp_path / "file").write_text("not a folder")
    assert_refused(call, tmp_path, message)


def test_data_dir_env_var_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "file"))
    with pytest.raises(ValueError, match=f"JAXVIS_DATA_DIR must be a folder, but {tmp_path / 'file'} is a file"):
        data.open_dataset("mnist", "train")


# --- Order ---------------------------------------------------------------------------------


def labels_of(batches):
    return np.concatenate([y for _, y in batches])


def test_shuffle_is_a_seeded_permutation_new_each_epoch():
    ds = data.open_dataset("mnist_sample", "test")
    plain = labels_of(ds.batches(300))
    first = labels_of(ds.batches(300, shuffle_seed=1))
    assert sorted(first) == sorted(plain) and not np.array_equal(first, plain)
    np.testing.assert_array_equal(first, labels_of(ds.batches(300, shuffle_seed=1)))
    assert not np.array_equal(first, labels_of(ds.batches(300, shuffle_seed=1, epoch=1)))
    assert not np.array_equal(first, labels_of(ds.batches(300, shuffle_seed=2)))


def test_images_follow_their_labels_through_the_shuffle():
    ds = data.open_dataset("mnist_sample", "test")
    by_image = {x.tobytes(): y for x, y in zip(ds.source.images_NHWC, ds.source.labels_N)}
    for x_B, y_B in ds.batches(64, shuffle_seed=5):
        assert [by_image[x.tobytes()] for x in x_B] == list(y_B)


def test_skip_and_shards_cut_the_same_sequence():
    ds = data.open_dataset("mnist_sample", "test")
    full = list(ds.batches(100, shuffle_seed=3, epoch=2, drop_remainder=True))
    skipped = list(ds.batches(100, shuffle_seed=3, epoch=2, skip=7, drop_remainder=True))
    assert len(skipped) == 3
    np.testing.assert_array_equal(labels_of(skipped), labels_of(full[7:]))
    shards = [list(ds.batches(100, shuffle_seed=3, epoch=2, shard=(i, 4))) for i in range(4)]
    for b, (x, y) in enumerate(full):
        np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shards]), x)
    with pytest.raises(ValueError, match="divisible by count"):
        ds.batches(10, shard=(0, 4))


def test_drop_remainder():
    ds = data.open_dataset("mnist_sample", "test")
    assert len(ds.batches(300)) == 4 and len(ds.batches(300, drop_remainder=True)) == 3
    assert [len(y) for _, y in ds.batches(300, drop_remainder=True)] == [300] * 3


def test_bundled_sample_has_100_images_per_digit():
    ds = data.open_dataset("mnist_sample", "test")
    x, y = next(iter(ds.batches(1000)))
    assert x.shape == (1000, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [100] * 10)
    assert 0.10 < x.mean() / 255 < 0.15  # MNIST's pixel mean is 0.13


# --- CIFAR-10 ------------------------------------------------------------------------------


def write_cifar(directory, n=4, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows[name] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": rows[name][0], b"labels": rows[name][1]}, f)
    return rows


def test_cifar_batches_become_hwc_images(tmp_path):
    rows = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = data.open_dataset("cifar10", "train", data_dir=tmp_path)
    assert ds.num_examples == 20 and ds.image_shape == (32, 32, 3)
    x, y = next(iter(ds.batches(20)))
    flat, labels = rows["data_batch_2"]
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values, each row-major
    for i in range(4):
        for r, c, ch in ((0, 0, 0), (1, 2, 1), (31, 5, 2)):
            assert x[4 + i, r, c, ch] == flat[i, ch * 1024 + r * 32 + c]
    assert list(y[4:8]) == labels


def test_cifar_augmentation_is_a_shifted_flipped_window(tmp_path):
    write_cifar(tmp_path)
    ds = data.open_dataset("cifar10", "test", data_dir=tmp_path)
    plain, _ = next(iter(ds.batches(4)))
    augmented, _ = next(iter(ds.batches(4, augment=True)))
    padded = np.pad(plain, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(4):
        windows = [w for t in range(9) for l in range(9)
                   for w in (padded[i, t:t + 32, l:l + 32], padded[i, t:t + 32, l:l + 32][:, ::-1])]
        assert any(np.array_equal(augmented[i], w) for w in windows)


def test_incomplete_cifar_directory_names_the_missing_files(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="data_batch_3"):
        data.open_dataset("cifar10", "train", data_dir=tmp_path)


# --- ImageNet folder tree ------------------------------------------------------------------


def write_imagenet(root):
    """Two classes; every image is one flat colour that encodes its class and index."""
    colours = {}
    for split, per_class in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(("n02", "n01")):
            (root / split / wnid).mkdir(parents=True)
            for k in range(per_class):
                colour = (40 + 100 * (wnid == "n02"), 10 * k, 7)
                Image.new("RGB", (300 + 20 * k, 260), colour).save(root / split / wnid / f"{k}.png")
                colours[split, wnid, k] = colour
    return colours


def test_imagenet_folder_labels_follow_sorted_wnids(tmp_path):
    write_imagenet(tmp_path / "imagenet2012")
    ds = data.open_dataset("imagenet2012", "validation", data_dir=tmp_path)
    assert ds.class_names == ("n01", "n02") and ds.num_examples == 4
    x, y = next(iter(ds.batches(4, workers=2)))
    assert x.shape == (4, 224, 224, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1])
    np.testing.assert_array_equal(x[:, 100, 100, 0], [40, 40, 140, 140])  # a flat colour survives resizing


def test_imagenet_train_and_ten_crop_shapes(tmp_path):
    write_imagenet(tmp_path)
    train = data.open_dataset("imagenet2012", "train", data_dir=tmp_path)
    batches = list(train.batches(4, shuffle_seed=0, augment=True, prefetch=1))
    assert [x.shape for x, _ in batches] == [(4, 224, 224, 3), (2, 224, 224, 3)]
    by_colour = {(40, 7): 0, (140, 7): 1}
    for x, y in batches:
        assert [by_colour[int(v[0, 0, 0]), int(v[0, 0, 2])] for v in x] == list(y)
    x, _ = next(iter(data.load("imagenet2012", "validation", 2, data_dir=tmp_path, ten_crop=True)))
    assert x.shape == (2, 10, 224, 224, 3)


def test_imagenet_hidden_folders_are_not_classes_and_bad_images_are_named(tmp_path):
    write_imagenet(tmp_path)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "val" / ".cache").mkdir()
    ds = data.open_dataset("imagenet2012", "validation", data_dir=tmp_path)
    assert ds.class_names == ("n01", "n02")
    np.testing.assert_array_equal(next(iter(ds.batches(4, workers=1)))[1], [0, 0, 1, 1])
    broken = tmp_path / "val" / "n01" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=re.escape(f"cannot read photo '{broken}'")):
        list(data.open_dataset("imagenet2012", "validation", data_dir=tmp_path).batches(4, workers=1))


# (width, height): short sides 333 and 257; 300x451 resizes to 256x384 (384.85 truncated, as
# torchvision does; rounding gives 385); 200x206 to 263x256 (263.68 truncated), whose crop
# offset 19.5 rounds to 20 (a floor takes 19)
ODD_SIZES = [(333, 500), (500, 333), (257, 1000), (300, 451), (200, 206)]


def write_photos(folder, photos):
    folder.mkdir(parents=True)
    for k, rgb in enumerate(photos):
        Image.fromarray(rgb).save(folder / f"{k}.png")


def test_imagenet_evaluation_is_torchvision_resize_256_and_centercrop_224(tmp_path, rng):
    photos = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ODD_SIZES]  # noise: any shift shows
    write_photos(tmp_path / "val" / "n01", photos)
    ds = data.open_dataset("imagenet2012", "validation", data_dir=tmp_path)
    centre, _ = next(iter(ds.batches(len(photos), workers=2)))
    ten, _ = next(iter(ds.batches(len(photos), ten_crop=True, workers=2)))
    for k, (rgb, size) in enumerate(zip(photos, ODD_SIZES)):
        expected = torchvision_pixels(rgb)
        for name, got in (("dataset[k]", ds[k][0]), ("batch", centre[k]), ("ten crops' centre", ten[k, 4])):
            assert got.shape == (224, 224, 3) and got.dtype == np.uint8, (size, name)
            differ = np.count_nonzero(got / 255.0 != expected)
            assert differ == 0, f"{size[0]}x{size[1]}, {name}: {differ} values differ from Resize(256) + CenterCrop(224)"


def test_imagenet_centre_crop_rounds_a_half_offset_to_even(tmp_path, rng):
    rgb = rng.integers(0, 256, (263, 256, 3), dtype=np.uint8)  # short side 256 already: cropped only
    write_photos(tmp_path / "val" / "n01", [rgb])
    image, _ = data.open_dataset("imagenet2012", "validation", data_dir=tmp_path)[0]
    np.testing.assert_array_equal(image, rgb[20:244, 16:240])  # rows: round(19.5) = 20; columns: 16


def test_mnist_files_are_not_read_as_fashion_mnist(tmp_path, monkeypatch):
    digits, _ = write_mnist(tmp_path / "mnist", "test", seed=1)
    fashion, _ = write_mnist(tmp_path / "fashion_mnist", "test", seed=2)
    # the MNIST folder given as the data directory: its files are MNIST's, not Fashion-MNIST's
    monkeypatch.setitem(data.DATASETS, "fashion_mnist", dataclasses.replace(data.DATASETS["fashion_mnist"],
                                                                            system_dirs=(str(tmp_path),)))
    mnist = data.open_dataset("mnist", "test", data_dir=tmp_path / "mnist")
    np.testing.assert_array_equal(mnist.source.images_NHWC[..., 0], digits)
    found = data.open_dataset("fashion_mnist", "test", data_dir=tmp_path / "mnist")
    np.testing.assert_array_equal(found.source.images_NHWC[..., 0], fashion)
    assert found.where == str(tmp_path / "fashion_mnist")


def test_ten_crops_are_the_corners_centre_and_their_mirrors():
    image = np.arange(6 * 8 * 1).reshape(6, 8, 1)
    crops = data.ten_crops(image, 4)
    expected = [image[:4, :4], image[:4, 4:], image[2:, :4], image[2:, 4:], image[1:5, 2:6]]
    for k in range(5):
        np.testing.assert_array_equal(crops[k], expected[k])
        np.testing.assert_array_equal(crops[5 + k], expected[k][:, ::-1])


def test_random_crop_reaches_both_ends_and_flips():
    image = np.arange(5 * 7 * 1).reshape(5, 7, 1)
    np.testing.assert_array_equal(data.random_crop_flip(image, 3, np.array([0.0, 0.0, 0.9])), image[:3, :3])
    np.testing.assert_array_equal(data.random_crop_flip(image, 3, np.array([0.999, 0.999, 0.1])),
                                  image[2:, 4:][:, ::-1])


def test_ten_crop_only_for_imagenet():
    with pytest.raises(ValueError, match="ten_crop"):
        data.load("mnist_sample", "test", 10, ten_crop=True)


def test_dataset_indexing_equals_the_file_order_batches():
    ds = data.open_dataset("mnist_sample", "test")
    images, labels = next(iter(ds.batches(50)))
    assert len(ds) == 1000
    for i in (0, 17, 49):
        image, label = ds[i]
        np.testing.assert_array_equal(image, images[i])
        assert label == labels[i]
    with pytest.raises(ValueError, match=r"example of mnist_sample test out of range.*< 1000, got \[1000\]"):
        ds[1000]


def test_resize_reproduces_a_linear_ramp_and_keeps_labels():
    # bilinear interpolation is exact on a linear function of the pixel-centre coordinate
    x = np.arange(16, dtype=np.float64)
    ramp = np.broadcast_to((10 + 10 * x)[None, None, :, None], (2, 16, 16, 1)).astype(np.uint8)
    out = data.resize(ramp, 32)
    centres = (np.arange(32) + 0.5) / 2 - 0.5  # new pixel centres in old coordinates
    interior = slice(2, 30)
    np.testing.assert_allclose(out[0, 5, interior, 0], (10 + 10 * centres)[interior], atol=0.5)
    assert out.shape == (2, 32, 32, 1) and out.dtype == np.uint8
    ds = data.open_dataset("mnist_sample", "test", image_size=40)
    plain = data.open_dataset("mnist_sample", "test")
    assert ds.image_shape == (40, 40, 1) and "resized to 40x40" in ds.where
    np.testing.assert_array_equal(ds.source.labels_N, plain.source.labels_N)
    with pytest.raises(ValueError, match="image_size must be None or an integer >= 1, got 0"):
        data.open_dataset("mnist_sample", "test", image_size=0)
    with pytest.raises(ValueError, match="resize takes uint8 images"):
        data.resize(ramp.astype(np.float32), 8)

"""The real MNIST and Fashion-MNIST: the files, the bundled sample, the shipped models.

Needs ../shared/data/mnist beside the repository and `apt-get install dataset-fashion-mnist`.
"""

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxvis import checkpoint, data, train

ROOT = Path(__file__).resolve().parents[2]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
# decompressed md5 sums published with the files (../shared/data/mnist/README.md)
MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
       "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
       "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
       "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}


def test_mnist_files_match_their_published_checksums():
    for name, md5 in MD5.items():
        assert hashlib.md5(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes())).hexdigest() == md5


def test_mnist_loads_with_the_published_statistics():
    train_ds = data.open_dataset("mnist", "train", data_dir=MNIST_DIR)
    test_ds = data.open_dataset("mnist", "test", data_dir=MNIST_DIR.parent)
    assert (train_ds.num_examples, test_ds.num_examples) == (60000, 10000)
    pixels = train_ds.source.images_NHWC / 255.0
    np.testing.assert_allclose([pixels.mean(), pixels.std()], [0.1307, 0.3081], atol=5e-5)
    np.testing.assert_array_equal(np.bincount(test_ds.source.labels_N),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_bundled_sample_is_what_make_sample_writes(tmp_path):
    out = tmp_path / "sample.npz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample.py"), "--data-dir", str(MNIST_DIR),
                    "--out", str(out)], check=True, env={"PYTHONPATH": str(ROOT)})
    bundled = Path(data.__file__).parent / "sample" / data.SAMPLE_FILE
    with np.load(out) as made, np.load(bundled) as shipped:
        for key in ("images", "labels", "indices"):
            np.testing.assert_array_equal(made[key], shipped[key])


@pytest.mark.parametrize("name, dataset, data_dir, target", [
    ("mnist_cnn", "mnist", MNIST_DIR, 0.992),
    ("fashion_cnn", "fashion_mnist", None, 0.91),
])
def test_shipped_model_reaches_its_card_accuracy(name, dataset, data_dir, target):
    model, params, card = checkpoint.restore_model(ROOT / "checkpoints" / name)
    metrics = train.evaluate(model, params, data.load(dataset, "test", 1000, data_dir=data_dir))
    assert metrics["top1"] >= target
    np.testing.assert_allclose(metrics["top1"], card["test_accuracy"], atol=2e-4)

"""Write the bundled sample jaxvis/sample/mnist_test_1000.npz from the real MNIST.

The first 100 test images of each digit, in test-set order, with their labels and their
indices in the test set.

    python scripts/make_sample.py --data-dir ../shared/data/mnist
"""

import argparse
from pathlib import Path

import numpy as np

from jaxvis import cli, data

PER_CLASS = 100


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="where the MNIST IDX files are (default: $JAXVIS_DATA_DIR)")
    parser.add_argument("--out", default=str(Path(data.__file__).parent / "sample" / data.SAMPLE_FILE))
    args = parser.parse_args()

    test = data.open_dataset("mnist", "test", data_dir=args.data_dir)
    labels = test.source.labels_N
    indices = np.sort(np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS] for c in range(10)]))
    np.savez_compressed(args.out, images=test.source.images_NHWC[indices], labels=labels[indices].astype(np.uint8),
                        indices=indices.astype(np.int32))
    print(f"wrote {len(indices)} images from {test.where} to {args.out} ({Path(args.out).stat().st_size:,} bytes)")


if __name__ == "__main__":
    cli.run(main)

"""Zeiler & Fergus Table 3: train each ablation of a network and tabulate train and test
error and parameter count.

    python scripts/ablate.py --workdir outputs/ablation --out results/ablation   # ZFNet's shape on Fashion-MNIST
    python scripts/ablate.py --config zfnet_imagenet --workdir outputs/ablation_imagenet --data-dir DIR
    python scripts/ablate.py --variants baseline without_fc7 --set num_epochs=1

The variants are the paper's (jaxvis.analysis.ablation.paper_ablations) at the base
network's widths. Each trains in ``--workdir/<variant>``; a rerun skips finished
variants and resumes an interrupted one from its checkpoint. Writes ``table.md`` and
``table.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time

from jaxvis import cli, configs
from jaxvis.analysis import ablation


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="fashion_zfnet",
                        help=f"fashion_zfnet (default) or one of {', '.join(configs.NAMES)}")
    parser.add_argument("--workdir", default="outputs/ablation", help="one folder per variant goes here")
    parser.add_argument("--out", help="where table.md and table.json go (default: --workdir)")
    parser.add_argument("--data-dir", help="where the dataset is (default: $JAXVIS_DATA_DIR, then tfds)")
    parser.add_argument("--variants", nargs="+", help="train only these (default: all)")
    parser.add_argument("--set", type=cli.setting, action="append", default=[], metavar="KEY=VALUE",
                        help="replace a setting of the base config (a Python literal), e.g. --set num_epochs=1")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    overrides = dict(args.set)
    base = ablation.fashion_zfnet(**overrides) if args.config == "fashion_zfnet" else configs.get(args.config,
                                                                                                **overrides)
    ablations = ablation.ablations_for(base.build_model())
    if args.variants:
        unknown = [v for v in args.variants if v not in ablations]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; the variants are {list(ablations)}")
        ablations = {v: ablations[v] for v in args.variants}
    start = time.time()
    rows = ablation.run(base, ablations, args.workdir, data_dir=args.data_dir, progress=not args.no_progress)
    out = cli.folder(args.out or args.workdir, "--out" if args.out else "--workdir")
    table = ablation.table_markdown(rows)
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps({"config": base.name, "base": ablation.settings(base),
                                                "variants": rows}, indent=2) + "\n")
    print(table)
    print(f"wrote {out / 'table.md'}\nwrote {out / 'table.json'} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    cli.run(main)

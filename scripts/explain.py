"""One HTML report per photo: what a network sees in it (jaxvis.report).

    python scripts/explain.py --weights vgg16.pth --model vgg16 --image cat.jpg dog.jpg --out report/
    python scripts/explain.py --model vgg16 --random-weights --image jaxvis/sample/photos --out report/
    python scripts/explain.py --checkpoint checkpoints/mnist_cnn --image digits/ --out report/

Writes ``--out/index.html`` and its PNG figures: per photo the top predictions, the
strongest map of every conv/pool layer projected (``--rule``), the transformed photo's
predictions and projections, occlusion (``--patch``, ``--stride``, ``--smooth``) and
saliency maps; with ``--class-model`` the class model of the predicted (or ``--class``)
class, with ``--invert`` feature inversion. A rerun with the same settings skips the
sections already written; an error keeps what was written.
"""

from __future__ import annotations

from jaxvis import cli, report, synthesis


def parser():
    p = cli.parser(__doc__, out=None, checkpoint="", dataset=None, photos=True)
    p.add_argument("--random-weights", action="store_true",
                   help="with --model and no --weights: random weights in torchvision's layout (the page says so)")
    p.add_argument("--seed", type=int, default=0, help="the random weights' seed (default 0)")
    cli.add_class(p, default="the predicted one")
    p.add_argument("--rule", choices=report.RULES, default="deconvnet", help="the projections' ReLU rule")
    p.add_argument("--layers", nargs="+", help="the layers projected (default: every conv (rectified) and pool layer)")
    p.add_argument("--transform-layers", nargs="+", help="the layers projected per transformed photo "
                                                         "(default: the three deepest of --layers)")
    p.add_argument("--sections", nargs="+", default=list(report.DEFAULT_SECTIONS),
                   help=f"which sections, of {', '.join(report.SECTIONS)} (default: {' '.join(report.DEFAULT_SECTIONS)}"
                        "; --class-model and --invert add theirs)")
    p.add_argument("--top", type=cli.count, default=5, help="classes in the predictions table (default 5)")
    p.add_argument("--patch", type=cli.count, help="the occluder's side in pixels (default: a seventh of the "
                                                     "input's side, 32 on 224)")
    p.add_argument("--stride", type=cli.count, help="the occluder's step in pixels (default: half the side)")
    p.add_argument("--smooth", type=float, default=0.0, help="blur the occlusion heat map by this many pixels")
    p.add_argument("--occlusion-method", choices=report.OCCLUSION_METHODS, default="incremental")
    p.add_argument("--class-model", nargs="+", metavar="PRESET", choices=list(synthesis.PRESETS),
                   help=f"add the class model with these presets ({', '.join(synthesis.PRESETS)})")
    p.add_argument("--invert", nargs="+", metavar="LAYER", default=[], help="add feature inversion from these layers")
    p.add_argument("--synthesis-steps", type=cli.count, help="steps of class models and inversions (default: preset's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def network(args) -> report.Network:
    """The network of ``--checkpoint``, ``--weights``/``--model`` or ``--model --random-weights``."""
    if args.random_weights:
        if args.weights or args.checkpoint or not args.model:
            raise ValueError("--random-weights takes --model NAME and neither --weights nor --checkpoint")
        size = None if not args.input_size else (*args.input_size, *args.input_size)[:2]
        args.preset = args.preset or "torchvision"  # the photos are read as the random weights' layout expects
        return report.random_network(args.model, size, args.seed, args.preset)
    model, params, card = cli.open_network(args)
    return report.Network(model, params, cli.source(args), False, cli.class_names(args, model, card))


def settings(args, net: report.Network, note: str = "") -> report.Settings:
    """The report's settings from the command line (``--class`` is checked against the names)."""
    sections = list(args.sections)
    target = None if args.target in (None, "predicted") else net.names.index(args.target)
    if (args.class_model or target is not None) and "class_model" not in sections:
        sections.append("class_model")
    if args.invert and "inversion" not in sections:
        sections.append("inversion")
    patch, stride = cli.occluder(net.model.input_shape[:2], args.patch, args.stride, 2)
    return report.Settings(
        sections=tuple(sections), rule=args.rule, layers=tuple(args.layers) if args.layers else None,
        transform_layers=tuple(args.transform_layers) if args.transform_layers else None, top=args.top,
        patch=patch, stride=stride, occlusion_method=args.occlusion_method, smooth=args.smooth,
        target=target, presets=tuple(args.class_model or ("simonyan",)), invert=tuple(args.invert),
        synthesis_steps=args.synthesis_steps, note=note)


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if not args.image:
        raise ValueError("give the photos with --image FILE/FOLDER...")
    out = cli.output_dir(args)
    net = network(args)
    chosen = settings(args, net)
    report.check(net, chosen)
    inputs = cli.open_inputs(args, net.model)
    notes = [[n] if n else [] for n in inputs.notes]
    if net.model.input_shape[-1] == 1:
        notes = [n + ["shown to the one-channel network as its luminance"] for n in notes]
    page = report.write(net, inputs.pixels_NHWC, inputs.names, out, chosen, notes, progress=not args.no_progress)
    print(f"wrote {page}")


if __name__ == "__main__":
    cli.run(main)

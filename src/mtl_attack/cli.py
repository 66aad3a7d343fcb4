"""The `mtl-attack` command: subcommands around the experiment runner."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_data(args: argparse.Namespace) -> int:
    from .config import compose
    from .data.build import build_splits, prepare_root
    from .data.inspect import describe_split

    cfg = compose(args.overrides)
    root = prepare_root(cfg.dataset, Path(cfg.cache_dir), progress=not args.quiet)
    train, test = build_splits(cfg.dataset, root)
    print(f"dataset {cfg.dataset.name} ({cfg.dataset.kind.value}) at {root}")
    for name, split in (("train", train), ("test", test)):
        print(describe_split(name, split, limit=args.inspect))
    if args.grid:
        from .data.synth import save_sample_grid

        save_sample_grid(test, args.grid)
        print(f"wrote {args.grid}")
    return 0


def _cmd_layout(args: argparse.Namespace) -> int:
    import json

    from .models.build import layout_size
    from .models.layout import enumerate_layouts, layout_by_index, parse_layout
    from .tasks import get_tasks

    kind = args.dataset.replace("synth_", "")
    tasks = get_tasks(kind)
    channels = [t.channels for t in tasks]
    if args.index is not None and args.spec is not None:
        raise ValueError("give --index or --spec, not both")
    if args.index is not None or args.spec is not None:
        layouts = [(args.index, layout_by_index(len(tasks), args.index))] if args.spec is None else [
            (None, parse_layout(args.spec, len(tasks)))]
    else:
        layouts = list(enumerate(enumerate_layouts(len(tasks))))
    rows = []
    for index, layout in layouts:
        if index is None:
            from .models.layout import index_of

            index = index_of(layout)
        size = layout_size(layout, args.backbone, channels, args.head_width)
        rows.append({"index": index, "layout": str(layout), "params_torch": size["params_torch"],
                     "params_paper_M": size["params_paper_M"]})
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    if len(rows) == 1:
        r = rows[0]
        print(f"layout #{r['index']} ({kind}, {args.backbone}, heads {args.head_width} wide)")
        print(f"  {r['layout']}")
        print(f"  params (torch, backbone + heads): {r['params_torch']:,}")
        print(f"  params (paper, backbone tree only): {r['params_paper_M']:.2f}M")
        return 0
    print(f"{len(rows)} layouts for {kind} ({len(tasks)} tasks), {args.backbone}, heads {args.head_width} wide")
    print(f"{'index':>5}  {'paper M':>8}  {'torch':>12}  layout")
    for r in rows:
        print(f"{r['index']:>5}  {r['params_paper_M']:>8.2f}  {r['params_torch']:>12,}  {r['layout']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import main_report

    for path in main_report(args.paths, args.out, args.eps):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl-attack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make (if rendered) and inspect a dataset")
    data.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=synth_taskonomy")
    data.add_argument("--inspect", type=int, default=8, metavar="N", help="images per split to check (default 8)")
    data.add_argument("--grid", metavar="PNG", help="save a grid of test samples with their labels")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=_cmd_data)

    lay = sub.add_parser("layout", help="print a TreeMTL layout and its size, or list all layouts")
    lay.add_argument("--dataset", default="nyuv2", choices=["nyuv2", "taskonomy", "synth_nyuv2", "synth_taskonomy"])
    lay.add_argument("--backbone", default="resnet34", choices=["resnet34", "mobilenetv2"])
    lay.add_argument("--index", type=int, help="model index in TreeMTL's enumeration (0 = all-shared)")
    lay.add_argument("--spec", help="a layout in the paper's notation, e.g. '[[{0,1,2}], ...]'")
    lay.add_argument("--head-width", type=int, default=1024, help="ASPP head width (paper: 1024)")
    lay.add_argument("--json", action="store_true", help="print JSON with keys index, layout, params_torch, params_paper_M")
    lay.set_defaults(func=_cmd_layout)

    rep = sub.add_parser("report", help="rebuild the paper's tables and figures from results")
    rep.add_argument("paths", nargs="+", help="sweep folders, record.json files or results tables (.csv/.parquet)")
    rep.add_argument("--out", help="output folder (default: <first folder>/report)")
    rep.add_argument("--eps", type=float, help="the eps (pixel units) for the tables when results hold several")
    rep.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head`
        return 0
    except (ValueError, FileNotFoundError, KeyError, HydraException) as err:
        # Bad input: one line saying what was wrong, no traceback.
        message = " ".join(str(err).split()) or type(err).__name__
        if err.__cause__ is not None:  # Hydra wraps OmegaConf's reason (e.g. the valid choices)
            message += ": " + " ".join(str(err.__cause__).split()[:40])
        print(f"mtl-attack {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `mtl-attack` command: subcommands around the experiment runner."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_data(args: argparse.Namespace) -> int:
    from .config import compose
    from .data.inspect import describe_split
    from .parts import prepare

    cfg = compose(args.overrides)
    parts = prepare(cfg, progress=not args.quiet, with_model=False)
    train, test = parts.train, parts.test
    print(f"dataset {cfg.dataset.name} ({cfg.dataset.format.value}: {', '.join(t.name for t in parts.tasks)}) at {parts.root}")
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
    from .data.registry import config_tasks

    tasks = config_tasks(args.dataset, args.tasks.split(",") if args.tasks else None)
    kind = f"{args.dataset}: {', '.join(t.name for t in tasks)}"
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
        size = layout_size(layout, args.backbone, channels, args.head_width, args.width)
        rows.append({"index": index, "layout": str(layout), "backbone": args.backbone, "width": args.width,
                     "head_width": args.head_width, "params_torch": size["params_torch"],
                     "params_paper_M": size["params_paper_M"]})
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    if len(rows) == 1:
        r = rows[0]
        print(f"layout #{r['index']} ({kind}, {args.backbone} width {args.width:g}, heads {args.head_width} wide)")
        print(f"  {r['layout']}")
        print(f"  params (torch, backbone + heads): {r['params_torch']:,}")
        print(f"  params (paper, backbone tree only): {r['params_paper_M']:.2f}M")
        return 0
    print(f"{len(rows)} layouts for {kind} ({len(tasks)} tasks), {args.backbone} width {args.width:g}, "
          f"heads {args.head_width} wide")
    print(f"{'index':>5}  {'paper M':>8}  {'torch':>12}  layout")
    for r in rows:
        print(f"{r['index']:>5}  {r['params_paper_M']:>8.2f}  {r['params_torch']:>12,}  {r['layout']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import main_report

    for path in main_report(args.paths, args.out, args.eps):
        print(path)
    return 0


def _cmd_linearization(args: argparse.Namespace) -> int:
    from .config import compose
    from .linearization import measure, write_measurement

    result = measure(compose(args.overrides), progress=not args.quiet)
    written = write_measurement(result, args.out)
    print(written[-1].read_text(encoding="utf-8"))
    for path in written:
        print(path)
    return 0


def _cmd_examples(args: argparse.Namespace) -> int:
    from . import atomic
    from .config import compose
    from .gallery import gallery

    pictures = gallery(compose(args.overrides), args.images, args.attacks, args.eps, progress=not args.quiet)
    for index, png in pictures.items():
        print(atomic.write_bytes(Path(args.out) / f"examples_{index}.png", png))
    return 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from .report.robustness import write_robustness

    written = write_robustness(args.paths, args.out)
    print(written[0].read_text(encoding="utf-8"))
    for path in written:
        print(path)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchSpec, format_table, run_bench, write_json
    from .precision_check import arp_check

    on_off = {"off": [False], "on": [True], "both": [False, True]}
    spec = BenchSpec(dataset=args.dataset, size=args.size, backbone=args.backbone, width=args.width,
                     head_width=args.head_width,
                     layouts=args.layout, batch=args.batch, device=args.device, precisions=args.precisions,
                     channels_last=on_off[args.channels_last], compile=on_off[args.compile],
                     optimizers=args.optimizers, steps=args.steps, repeats=args.repeats, warmup=args.warmup,
                     eps=args.eps, seed=args.seed, threads=args.threads)
    spec.validate()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_bench(spec, log=log)
    result["arp_check"] = None
    if args.arp:
        log(f"ARP check: {args.arp_images} test images, precisions {args.precisions}")
        result["arp_check"] = arp_check(args.overrides, args.precisions, args.arp_images, args.device,
                                        progress=not args.quiet, log=log)
    print(format_table(result))
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
    return 0


def _cmd_check_default(args: argparse.Namespace) -> int:
    from .check_default import check_default, format_check

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = check_default(args.overrides, log=log)
    print(format_check(result))
    return 0 if all(ok for *_, ok in result["rows"]) else 1


def build_parser() -> argparse.ArgumentParser:
    from .attacks.build import OPTIMIZERS
    from .attacks.config import Precision
    from .bench import BenchSpec
    from .config import BackboneName
    from .data.registry import dataset_config_names

    datasets = list(dataset_config_names())
    backbones = [b.value for b in BackboneName]
    optimizers = list(OPTIMIZERS)
    precisions = [p.value for p in Precision]
    parser = argparse.ArgumentParser(prog="mtl-attack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make (if rendered) and inspect a dataset")
    data.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=synth_taskonomy")
    data.add_argument("--inspect", type=int, default=8, metavar="N", help="images per split to check (default 8)")
    data.add_argument("--grid", metavar="PNG", help="save a grid of test samples with their labels")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=_cmd_data)

    lay = sub.add_parser("layout", help="print a TreeMTL layout and its size, or list all layouts")
    lay.add_argument("--dataset", default="nyuv2", choices=datasets,
                     help="a dataset= option whose tasks the layouts split (default nyuv2)")
    lay.add_argument("--tasks", help="comma-separated subset of the dataset's tasks (default: all)")
    lay.add_argument("--backbone", default="resnet34", choices=backbones)
    lay.add_argument("--width", type=float, default=1.0, help="backbone channel scale (1.0 = the paper's)")
    lay.add_argument("--index", type=int, help="model index in TreeMTL's enumeration (0 = all-shared)")
    lay.add_argument("--spec", help="a layout in the paper's notation, e.g. '[[{0,1,2}], ...]'")
    lay.add_argument("--head-width", type=int, default=1024, help="ASPP head width (paper: 1024)")
    lay.add_argument("--json", action="store_true",
                     help="print JSON with keys index, layout, backbone, width, head_width, params_torch, "
                          "params_paper_M")
    lay.set_defaults(func=_cmd_layout)

    rep = sub.add_parser("report", help="rebuild the paper's tables and figures from results")
    rep.add_argument("paths", nargs="+", help="sweep folders, record.json files or results tables (.csv/.parquet)")
    rep.add_argument("--out", help="output folder (default: <first folder>/report)")
    rep.add_argument("--eps", type=float, help="the eps (pixel units) for the tables when results hold several")
    rep.set_defaults(func=_cmd_report)

    lin = sub.add_parser("linearization", help="the paper's Table 5: the second-order term of DGBA's "
                                               "objective against the first over the attack's perturbation")
    lin.add_argument("overrides", nargs="*", help="Hydra overrides of the job (default: the default job, dgba_apgd)")
    lin.add_argument("--out", default="linearization", help="output folder (default ./linearization)")
    lin.add_argument("--quiet", action="store_true", help="no progress bars")
    lin.set_defaults(func=_cmd_linearization)

    exa = sub.add_parser("examples", help="the paper's Figure 7: adversarial images and every task's "
                                          "prediction for chosen test images, attacks by eps")
    exa.add_argument("overrides", nargs="*", help="Hydra overrides of the job whose model is attacked")
    exa.add_argument("--out", default="figure7", help="output folder (default ./figure7)")
    exa.add_argument("--images", type=int, nargs="+", default=[0], metavar="I", help="test image indexes (default 0)")
    exa.add_argument("--attacks", nargs="+", metavar="PRESET",
                     help="attack presets (default: Single-x for each task, Total and DGBA with the job's optimizer)")
    exa.add_argument("--eps", type=float, nargs="+", default=[0, 1, 2, 4, 8, 16],
                     help="budgets in pixel units out of 255 (default 0 1 2 4 8 16; 0 = clean)")
    exa.add_argument("--quiet", action="store_true", help="no progress bars")
    exa.set_defaults(func=_cmd_examples)

    rob = sub.add_parser("robustness", help="RobustBench-style summary of models from ensemble sweeps "
                                            "(ARP vs eps with intervals, strongest single attack)")
    rob.add_argument("paths", nargs="+", help="sweep folders, record.json files or results tables "
                     "(.csv/.parquet) of attack=ensemble jobs")
    rob.add_argument("--out", help="output folder (default: <first path>/robustness)")
    rob.set_defaults(func=_cmd_robustness)

    chk = sub.add_parser("check-default", help="time the default job cold and cached, and compare its "
                                               "metrics and ARP with the miniature's targets")
    chk.add_argument("overrides", nargs="*", help="Hydra overrides of the job (default: none, the default job)")
    chk.add_argument("--quiet", action="store_true", help="no progress lines")
    chk.set_defaults(func=_cmd_check_default)

    ben = sub.add_parser("bench", help="attack throughput against the bare forward+input-gradient step",
                         description="Times the bare forward, the bare step and every optimizer with Total and "
                                     "DGBA (and DGBA with one backward per task) at each precision, memory "
                                     "format and compile setting; defaults are paper-shaped (docs/performance.md).")
    spec = BenchSpec()  # the one source of the benchmark's defaults
    ben.add_argument("overrides", nargs="*", help="Hydra overrides of the job whose model --arp attacks")
    ben.add_argument("--dataset", default=spec.dataset, choices=datasets, help="a dataset= option: tasks and their shapes")
    ben.add_argument("--size", type=int, default=spec.size, help="square input side in pixels (paper: 321)")
    ben.add_argument("--backbone", default=spec.backbone, choices=backbones)
    ben.add_argument("--width", type=float, default=spec.width, help="backbone channel scale (1.0 = the paper's)")
    ben.add_argument("--head-width", type=int, default=spec.head_width, help="ASPP head width (paper: 1024)")
    ben.add_argument("--layout", nargs="+", default=spec.layouts, metavar="LAYOUT",
                     help="all_shared, independent or layout indexes (default: all_shared independent)")
    ben.add_argument("--batch", type=int, default=spec.batch, help=f"images per batch (default {spec.batch})")
    ben.add_argument("--device", default=spec.device, help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    ben.add_argument("--precisions", nargs="+", default=spec.precisions, choices=precisions)
    ben.add_argument("--channels-last", default="both", choices=["off", "on", "both"])
    ben.add_argument("--compile", default="both", choices=["off", "on", "both"], help="torch.compile the model")
    ben.add_argument("--optimizers", nargs="*", default=spec.optimizers, choices=optimizers,
                     help="none: the bare rows only")
    ben.add_argument("--steps", type=int, default=spec.steps, help="attack steps (and bare steps per timed run)")
    ben.add_argument("--repeats", type=int, default=spec.repeats, help="timed runs per row; the median is reported")
    ben.add_argument("--warmup", type=int, default=spec.warmup, help=f"untimed runs of every row first (default {spec.warmup})")
    ben.add_argument("--eps", type=float, default=spec.eps, help=f"budget in pixel units out of 255 (default {spec.eps:g})")
    ben.add_argument("--seed", type=int, default=spec.seed, help="seed of the model's init and the batch")
    ben.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 makes CPU time a clean measure)")
    ben.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ben.add_argument("--arp", action="store_true",
                     help="also attack the configured job's model (overrides) at each precision and compare ARP")
    ben.add_argument("--arp-images", type=int, default=32, metavar="N", help="test images for --arp (default 32)")
    ben.add_argument("--quiet", action="store_true", help="no progress lines")
    ben.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException

    from .floats import flush_denormals

    args = build_parser().parse_args(argv)
    flush_denormals()  # before any torch work, so every worker thread inherits it
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

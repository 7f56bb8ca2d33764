"""rnnlab-report DIR [--group-by KEYS] [--metrics NAMES] [--format md|csv|latex|all] [--out DIR] [--plot]
rnnlab-report --results results.yaml [--out RESULTS.md]

Aggregates every run under DIR (single runs, sweep jobs, search trials: any directory with
``.hydra/overrides.yaml``) into one table, mean ± std over the runs that differ only in ``seed``,
prints it as Markdown on stdout and writes report.md / report.csv / report.tex (and with
``--plot`` PNG learning curves and bar charts) into ``--out`` (default: DIR). What is written is
listed on stderr, so stdout is the Markdown alone.

Not a Hydra app: it reads run directories and needs no config, and it imports neither torch nor
Lightning, so it starts in a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnlab.errors import UserError
from rnnlab.reports import tables
from rnnlab.reports.runs import build_report

PROG = "rnnlab-report"
FORMATS = {"md": "report.md", "csv": "report.csv", "latex": "report.tex"}


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Aggregate runs and sweeps under DIR into a results table (mean ± std over seeds) and plots.",
        epilog="Example: rnnlab-report outputs/multiruns/2025-01-01_12-00-00_abc123 --metrics test/acc,val/acc --plot",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", nargs="?", help="a run, a sweep, or any directory of them (e.g. outputs/)")
    parser.add_argument(
        "--results",
        type=Path,
        metavar="SPEC",
        help="instead of DIR: write RESULTS.md (or --out FILE) from the recipes of SPEC (e.g. results.yaml)",
    )
    parser.add_argument(
        "--group-by",
        type=comma_list,
        metavar="KEYS",
        help="group by these override keys only, e.g. model/backbone,data.length "
        "(default: every override that affects results, except seed)",
    )
    parser.add_argument(
        "--metrics",
        type=comma_list,
        metavar="NAMES",
        help="metrics to show, e.g. test/acc,val/acc (default: every test/* then val/* metric, without padding_ratio)",
    )
    parser.add_argument("--format", choices=[*FORMATS, "all"], default="all", help="files to write (default: all)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write the files (default: DIR)")
    parser.add_argument("--plot", action="store_true", help="also write curves_<val metric>.png and bar_<metric>.png")
    parser.add_argument("--band", choices=["minmax", "std"], default="minmax", help="the spread drawn across runs (default: minmax)")
    return parser


def report(args: argparse.Namespace) -> list[Path]:
    """Print the Markdown report, write the chosen files and plots; returns the paths written."""
    result = build_report(args.dir, metrics=args.metrics, group_by=args.group_by)
    out_dir = args.out or args.dir
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tables.markdown(result)
    print(text, end="", flush=True)
    written = []
    for name in FORMATS if args.format == "all" else [args.format]:
        path = out_dir / FORMATS[name]
        if name == "md":
            path.write_text(text, encoding="utf-8")
        elif name == "csv":
            tables.write_csv(result, path)
        else:
            path.write_text(tables.latex(result), encoding="utf-8")
        written.append(path)
    if args.plot:
        from rnnlab.reports.plots import write_plots  # matplotlib and tensorboard: only when plotting

        plots, notes = write_plots(result, out_dir, band=args.band)
        written += plots
        for note in notes:
            print(f"{PROG}: {note}", file=sys.stderr)
    return written


def results(args: argparse.Namespace) -> list[Path]:
    """RESULTS.md from a results spec (rnnlab.reports.results)."""
    from rnnlab.reports.results import results_markdown

    path = args.out or Path("RESULTS.md")
    text = results_markdown(args.results)
    path.write_text(text, encoding="utf-8")
    print(text, end="", flush=True)
    return [path]


def main(argv: list[str] | None = None) -> None:
    """The console script. A user mistake (no runs, unknown metric or key) is one line on stderr, exit 2."""
    command = parser()
    args = command.parse_args(argv)
    if (args.dir is None) == (args.results is None):
        command.error("give either DIR or --results SPEC")
    try:
        written = results(args) if args.results is not None else report(args)
    except UserError as exc:  # as rnnlab.cli.common.report_user_errors, without importing torch
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"{PROG}: wrote {', '.join(str(path) for path in written)}", file=sys.stderr)


if __name__ == "__main__":
    main()

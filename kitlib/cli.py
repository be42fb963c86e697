"""Command line of kitlib: datasets, fetch NAME, reproduce [PAPER ...], verify DIR ..., claims

Exit codes: 0 success; 1 a notebook failed, a dataset could not be fetched, a manifest is invalid or a
result is not whole; 2 bad usage (unknown paper, profile or parameter, a parameter out of range, an
unwritable --out) or no notebook to run, before anything runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from kitlib import profiles


def _catalog():
    """kitlib.data.catalog, imported only when a data command runs (it may be absent in a partial checkout)."""
    try:
        from kitlib.data import catalog
    except ImportError as exc:
        raise SystemExit(f"kitlib.data.catalog is not available ({exc}); reinstall kitlib") from None
    return catalog


def cmd_datasets(args) -> int:
    """Print the status of every dataset manifest (present / missing / checksum mismatch / invalid manifest).

    --verify re-hashes every listed file (no remembered digests). A manifest that does not validate is one
    row 'invalid manifest' naming file and field, the others are still listed; the exit code is then 1.
    """
    catalog = _catalog()
    rows = catalog.status_rows(root=args.root, verify=args.verify)
    print(catalog.format_status_table(root=args.root, verify=args.verify, rows=rows))
    return 1 if any(r["status"] == catalog.INVALID for r in rows) else 0


def cmd_fetch(args) -> int:
    """Download what can be downloaded for one dataset; 0 when it is present afterwards."""
    catalog = _catalog()
    try:
        status, detail = catalog.fetch(args.name, root=args.root)
    except (catalog.DatasetError, LookupError, OSError) as exc:
        print(f"fetch {args.name}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {status}\n{detail}")
    return 0 if status == catalog.PRESENT else 1


def cmd_reproduce(args) -> int:
    """Run the paper notebooks through papermill; non-zero exit when any failed."""
    from kitlib import reproduce as rep

    try:
        overrides = rep.parse_overrides(args.param)
        results = rep.reproduce(args.papers or None, args.profile, device=args.device, overrides=overrides,
                                out=args.out, timeout=args.timeout, notebooks_dir=args.notebooks_dir,
                                progress=not args.no_progress, command=["python", "-m", "kitlib", *args.argv])
    except ValueError as exc:
        print(f"reproduce: {exc}", file=sys.stderr)
        return 2
    print()
    print(rep.format_summary(results))
    failed = [r.paper for r in results if r.status not in ("ok", "skipped")]
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}")
        return 1
    return 0


def cmd_verify(args) -> int:
    """Check result folders against their run.json (status ok, every listed file present and unchanged)."""
    from kitlib.reproduce import verify_result

    bad = 0
    for folder in args.folders:
        problems = verify_result(folder)
        bad += bool(problems)
        print(f"{folder}: " + ("whole (run.json status ok, every file as recorded)" if not problems
                               else f"NOT WHOLE\n  " + "\n  ".join(problems)))
    return 1 if bad else 0


def cmd_claims(args) -> int:
    """Print every claim of every paper that has run (one page per profile) and write <out>/<profile>/CLAIMS.md."""
    from kitlib import claims
    from kitlib.report import atomic_write_text

    root = Path(args.out)
    wanted = [args.profile] if args.profile else [p for p in profiles.PROFILE_NAMES if (root / p).is_dir()]
    if not wanted:
        print(f"claims: no results under {root} yet; run: python -m kitlib reproduce --profile laptop", file=sys.stderr)
        return 1
    for profile in wanted:
        table, problems = claims.collect(root, profile)
        page = claims.claims_page(table, profile, problems)
        print(page)
        if (root / profile).is_dir():
            atomic_write_text(root / profile / "CLAIMS.md", page)
            print(f"(written to {root / profile / 'CLAIMS.md'})\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with its sub-commands."""
    from kitlib.reproduce import PAPERS

    parser = argparse.ArgumentParser(prog="python -m kitlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    root_help = "data root (default: $KITLIB_DATA, else <repo>/data and ../shared/data)"
    p = sub.add_parser("datasets", help="status of every dataset manifest (present / missing / checksum)")
    p.add_argument("--verify", action="store_true", help="hash every listed file, not only the key files")
    p.add_argument("--root", default=None, help=root_help)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("fetch", help="download one dataset (MedMNIST sets); others print the manual steps")
    p.add_argument("name", help="manifest name (see: python -m kitlib datasets)")
    p.add_argument("--root", default=None, help=root_help)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser(
        "reproduce", help="run paper notebooks with papermill into results/<profile>/<paper>/",
        description="Run paper notebooks with papermill. Papers: " + ", ".join(PAPERS)
        + ". Without PAPER every notebook that exists is run.")
    p.add_argument("papers", nargs="*", metavar="PAPER", help="paper keys (default: all notebooks present)")
    p.add_argument("--profile", default="smoke", choices=profiles.PROFILE_NAMES,
                   help="parameter set: smoke (minutes on CPU), laptop, paper (default: smoke)")
    p.add_argument("--device", default="auto", help="torch device passed to the notebooks: auto, cpu, cuda, "
                   "cuda:1 ... (default: auto = cuda when available)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter; VALUE is YAML (-p epochs=3 -p methods=[ce,rs]); repeatable")
    p.add_argument("--out", default="results", help="results root (default: ./results)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="fail a notebook when one cell runs longer than S seconds (default: no limit)")
    p.add_argument("--notebooks-dir", default=None, metavar="DIR",
                   help="folder holding the notebooks (default: $KITLIB_NOTEBOOKS_DIR or <repo>/notebooks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("verify", help="check that result folders are whole (files and checksums of run.json)")
    p.add_argument("folders", nargs="+", metavar="DIR", help="result folders, e.g. results/smoke/perturbed_input")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("claims", help="one page: every claim of every paper that has run, with verdict and interval",
                       description="Gather <out>/<profile>/<paper>/claims.csv of every whole result, print them "
                       "and write <out>/<profile>/CLAIMS.md.")
    p.add_argument("--profile", default=None, choices=profiles.PROFILE_NAMES,
                   help="one profile (default: every profile with results)")
    p.add_argument("--out", default="results", help="results root (default: ./results)")
    p.set_defaults(func=cmd_claims)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kitlib`` and the ``kitlib`` script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)

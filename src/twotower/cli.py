"""The `twotower` command: check params and data before a run, search the embedded corpus after.

    twotower validate [--params params.yaml] [--data data/raw]
    twotower search "what is a flea life cycle" -k 5
    twotower search --interactive
"""

import argparse
import sys
from pathlib import Path

from twotower.errors import TwoTowerError, exit_on_error

TEXT_WIDTH = 200


def shorten(text: str | None, width: int = TEXT_WIDTH) -> str:
    """One line of at most `width` characters, cut at a word boundary where there is one."""
    text = " ".join((text or "").split())
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."


def print_hits(hits) -> None:
    if not hits:
        print("no passages")
    for hit in hits:
        print(f"{hit.rank}. [{hit.pid}] {hit.score:.4f}  {shorten(hit.text)}")


def run_search(args) -> None:
    if args.query is None and not args.interactive:
        raise TwoTowerError("search needs a QUERY (or --interactive)")
    if args.k < 1:
        raise TwoTowerError(f"-k must be at least 1, got {args.k}")
    from twotower.search import Searcher  # torch: only the search command pays its import time

    searcher = Searcher.from_pipeline(args.root, args.device)
    if args.query is not None:
        print_hits(searcher.search(args.query, args.k))
    if args.interactive:
        while True:
            try:
                query = input("query> ")
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if query.strip() in ("", "quit", "exit"):
                break
            print_hits(searcher.search(query, args.k))


def run_validate(args) -> None:
    """Print one line per problem in the params file and the raw data; exit 1 if there is any.

    Reads only params, parquet schemas and each split's first rows, so it takes seconds
    whatever the data size; warnings (rows the subsample stage would drop) do not fail it.
    """
    from twotower.data import check_split
    from twotower.prepared import SPLITS
    from twotower.params import DataParams, read_params_file, validate_all

    problems, warnings = [], []
    try:
        raw = read_params_file(args.params)
    except TwoTowerError as exc:
        problems.append(str(exc))
        raw = None
    if raw is not None:
        problems += [f"{args.params}: {problem}" for problem in validate_all(raw)]
    raw_dir = args.data
    if raw_dir is None:
        data = (raw or {}).get("data")
        raw_dir = data.get("raw_dir") if isinstance(data, dict) else None
        raw_dir = raw_dir if isinstance(raw_dir, str) and raw_dir else DataParams.raw_dir
    for split in SPLITS if Path(raw_dir).is_dir() else SPLITS[:1]:  # one "folder not found" line
        found, warned = check_split(raw_dir, split)
        problems += found
        warnings += warned
    for line in problems:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    if problems:
        sys.exit(1)
    print(f"ok: {args.params} is valid and {raw_dir} has {', '.join(SPLITS)} in the expected schema"
          + (f" ({len(warnings)} warning(s))" if warnings else ""))


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(prog="twotower", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    search = commands.add_parser("search", help="rank the embedded test passages for a query",
                                 description="Rank the pipeline's embedded test passages for a query.")
    search.add_argument("query", nargs="?", help="the query (optional with --interactive)")
    search.add_argument("-k", "--top-k", dest="k", type=int, default=10, help="passages to show (10)")
    search.add_argument("--root", default=".", help="project root holding models/ and data/ (.)")
    search.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    search.add_argument("-i", "--interactive", action="store_true",
                        help="keep asking for queries until EOF, an empty line or `quit`")
    search.set_defaults(handler=run_search)

    validate = commands.add_parser(
        "validate", help="check params and raw data in seconds, before a long run",
        description="Check every params section and the raw data's schema (and a sample of its rows). "
                    "Prints one line per problem and exits 1 if there is any.")
    validate.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    validate.add_argument("--data", default=None,
                          help="raw data folder (default: data.raw_dir from the params file)")
    validate.set_defaults(handler=run_validate)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()

"""The `twotower` command: search the pipeline's embedded corpus from the shell.

    twotower search "what is a flea life cycle" -k 5
    twotower search --interactive
"""

import argparse

from twotower.errors import TwoTowerError, exit_on_error
from twotower.search import Hit, Searcher

TEXT_WIDTH = 200


def shorten(text: str | None, width: int = TEXT_WIDTH) -> str:
    """One line of at most `width` characters, cut at a word boundary where there is one."""
    text = " ".join((text or "").split())
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."


def print_hits(hits: list[Hit]) -> None:
    if not hits:
        print("no passages")
    for hit in hits:
        print(f"{hit.rank}. [{hit.pid}] {hit.score:.4f}  {shorten(hit.text)}")


def run_search(args) -> None:
    if args.query is None and not args.interactive:
        raise TwoTowerError("search needs a QUERY (or --interactive)")
    if args.k < 1:
        raise TwoTowerError(f"-k must be at least 1, got {args.k}")
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

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()

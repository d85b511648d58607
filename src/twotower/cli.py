"""The `twotower` command: check params and data before a run, search the embedded corpus after,
index your own collection and search it from the shell, over HTTP or in a browser.

    twotower validate [--params params.yaml] [--data data/raw]
    twotower search "what is a flea life cycle" -k 5
    twotower search --interactive
    twotower index passages.parquet [more.jsonl ...] --out my-index [--index auto|exact|hnsw|ivf|ivf_sq8|ivf_pq]
    twotower search --index my-index --mode hybrid "what is a flea life cycle"
    twotower serve --index my-index [--host 127.0.0.1] [--port 8000]
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
    from twotower.serve.search import Searcher  # torch: only the search command pays its import time

    if args.index is not None:
        searcher = Searcher.from_index(args.index, args.model, args.device)
    else:
        if args.mode != "dense":
            raise TwoTowerError(f"--mode {args.mode} needs --index DIR (the pipeline's corpus is dense only)")
        searcher = Searcher.from_pipeline(args.root, args.device, pipeline_feedback(args.root))
    if args.query is not None:
        print_hits(searcher.search(args.query, args.k, mode=args.mode))
    if args.interactive:
        while True:
            try:
                query = input("query> ")
            except (EOFError, KeyboardInterrupt):
                print()
                break
            if query.strip() in ("", "quit", "exit"):
                break
            try:
                print_hits(searcher.search(query, args.k, mode=args.mode))
            except TwoTowerError as exc:  # a bad query ("???") ends nothing: ask for the next
                print(f"error: {exc}", file=sys.stderr)


def pipeline_feedback(root):
    """The `feedback` params of the checkout at `root`, so `twotower search` ranks its test
    passages as the evaluate stage did; the defaults where it has no params.yaml."""
    from twotower.params import FeedbackParams, load_section

    path = Path(root) / "params.yaml"
    return load_section("feedback", path) if path.is_file() else FeedbackParams()


def index_params(path, explicit: bool):
    """(eval, bm25, hybrid, feedback) params from the params file, so an index searches as the
    pipeline evaluates; the defaults where there is no file and none was asked for."""
    from twotower.params import Bm25Params, EvalParams, FeedbackParams, HybridParams, load_section

    if not Path(path).is_file():
        if explicit:
            raise TwoTowerError(f"params file not found: {path}")
        return EvalParams(), Bm25Params(), HybridParams(), FeedbackParams()
    return tuple(load_section(name, path) for name in ("eval", "bm25", "hybrid", "feedback"))


def run_index(args) -> None:
    from twotower.serve.collection import describe_skipped, open_source
    from twotower.serve.indexer import build_index_folder
    from twotower.retrieval.ann import IVF_KINDS, KINDS

    if args.part_rows is not None and args.part_rows < 1:
        raise TwoTowerError(f"--part-rows must be at least 1, got {args.part_rows}")
    eval_params, bm25_params, hybrid_params, feedback = index_params(args.params, args.params_given)
    kind = args.index
    if kind not in ("auto", *KINDS):
        raise TwoTowerError(f"--index {kind!r} is not one of auto, {', '.join(KINDS)}")
    if args.nprobe is not None and (args.nprobe < 1 or kind not in ("auto", *IVF_KINDS)):
        raise TwoTowerError(f"--nprobe must be a positive integer, for an ivf index (got {args.nprobe} "
                            f"with --index {kind})")
    sources = [open_source(path, args.format, args.id_column, args.text_column) for path in args.collections]
    if not Path(args.model).is_file():
        raise TwoTowerError(f"model not found: {args.model} (run `dvc repro train`, or pass --model)")
    manifest = build_index_folder(sources, args.out, args.model, kind=kind, eval_params=eval_params,
                                  bm25_params=bm25_params, hybrid_params=hybrid_params, feedback=feedback,
                                  device=args.device,
                                  part_rows=args.part_rows, force=args.force, nprobe=args.nprobe,
                                  show_progress=not args.quiet)
    skipped = describe_skipped(manifest["skipped"])
    seconds = manifest["seconds"]
    print(f"indexed {manifest['passages']} passages of {manifest['rows_read']} rows "
          f"({'skipped: ' + skipped if skipped else 'none skipped'}) into {args.out}: "
          f"embedding {seconds['embed']} s, {_describe_dense(manifest['dense'])} {seconds['dense_index']} s, "
          f"BM25 {seconds['bm25_index']} s")


def _describe_dense(dense: dict) -> str:
    if "recall_at_10" not in dense:
        return f"{dense['kind']} index"
    return (f"{dense['kind']} index ({dense['ivf_nlist']} cells, nprobe {dense['ivf_nprobe']}: recall@10 "
            f"{dense['recall_at_10']} against exact)")


def run_serve(args) -> None:
    from twotower.serve.live_index import LiveIndex
    from twotower.serve.server import limit_malloc_arenas, serve

    if not 0 <= args.port <= 65535:
        raise TwoTowerError(f"--port must be between 0 and 65535, got {args.port}")
    if args.workers < 1:
        raise TwoTowerError(f"--workers must be at least 1, got {args.workers}")
    device = args.device
    if args.workers > 1:  # checked before the load, which may take minutes
        from twotower.serve.workers import forked_device

        device = forked_device(device)
    limit_malloc_arenas()
    live = LiveIndex.open(args.index, args.model, device)
    if args.workers > 1:
        from twotower.serve.server import serve_workers

        print(f"serving {live.searcher.size} passages from {args.index} at http://{args.host}:{args.port}/ "
              f"with {args.workers} worker processes forked from this one (a new build of the folder is "
              "swapped in as it lands; `kill -HUP` reloads it)", flush=True)
        serve_workers(live, args.workers, args.host, args.port, args.log_level, args.access_log)
        return
    print(f"serving {live.searcher.size} passages from {args.index} at http://{args.host}:{args.port}/ "
          "(a new build of the folder is swapped in as it lands; `kill -HUP` reloads it)", flush=True)
    serve(live, args.host, args.port, args.log_level, args.access_log)


def run_validate(args) -> None:
    """Print one line per problem in the params file and the raw data; exit 1 if there is any.

    Reads only params, parquet schemas and each split's first rows, so it takes seconds
    whatever the data size; warnings (rows the subsample stage would drop) do not fail it.
    """
    from twotower.data.prepare import check_split
    from twotower.data.prepared import SPLITS
    from twotower.param_rules import check_cross_section, validate_all
    from twotower.params import DataParams, read_params_file

    problems, warnings = [], []
    try:
        raw = read_params_file(args.params)
    except TwoTowerError as exc:
        problems.append(str(exc))
        raw = None
    if raw is not None:
        problems += [f"{args.params}: {problem}" for problem in validate_all(raw) + check_cross_section(raw)]
    raw_dir = args.data
    if raw_dir is None:
        data = (raw or {}).get("data")
        raw_dir = data.get("raw_dir") if isinstance(data, dict) else None
        raw_dir = raw_dir if isinstance(raw_dir, str) and raw_dir else DataParams.raw_dir
    for split in SPLITS if Path(raw_dir).is_dir() else SPLITS[:1]:  # one "folder not found" line
        found, warned = check_split(raw_dir, split)
        problems += found
        warnings += warned
    if raw is not None and not problems:
        problems += _trec_set_problems(raw, raw_dir, args.params)
    for line in problems:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    if problems:
        sys.exit(1)
    print(f"ok: {args.params} is valid and {raw_dir} has {', '.join(SPLITS)} in the expected schema"
          + (f" ({len(warnings)} warning(s))" if warnings else ""))


def _trec_set_problems(raw: dict, raw_dir, params_path) -> list[str]:
    """The subsample stage's check of `data.val_trec_set` against the raw train rows' sets
    (rows without sets hold out from every query, so they pass, without the stage's note)."""
    from twotower.data.holdout import trec_set_queries
    from twotower.params import section_from_dict

    data = section_from_dict("data", raw.get("data"))
    if data.validation != "trec":
        return []
    try:
        trec_set_queries(raw_dir, data.val_trec_set, note=lambda line: None)
    except TwoTowerError as exc:
        return [f"{params_path}: {exc}"]
    return []


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
    search.add_argument("--index", default=None, help="an index folder from `twotower index` "
                                                      "(default: the pipeline's embedded test passages)")
    search.add_argument("--mode", default="dense", choices=["dense", "bm25", "hybrid"],
                        help="dense (the towers), bm25, or hybrid (both fused); the last two need --index")
    search.add_argument("--model", default=None,
                        help="with --index: the model file, if it moved since the index was built")
    search.set_defaults(handler=run_search)

    index = commands.add_parser(
        "index", help="embed your own collection into an index folder (dense + BM25)",
        description="Read one or more collections (parquet, jsonl or tsv; an id and a text column) "
                    "in batches and write an index folder: passage vectors, ids and texts, a faiss "
                    "index and a BM25 index, and a manifest naming the model. Rows without an id or "
                    "text, and rows repeating an earlier id, are skipped and counted. An interrupted "
                    "run resumes from DIR.partial when rerun with the same arguments.")
    index.add_argument("collections", nargs="+", metavar="COLLECTION", help="parquet, jsonl or tsv file(s)")
    index.add_argument("--out", required=True, help="the index folder to write")
    index.add_argument("--model", default="models/model.pt", help="trained model (models/model.pt)")
    index.add_argument("--index", default="auto",
                       help="faiss index: auto (sized to the collection: exact up to 20k passages, ivf up to "
                            "200k, ivf_pq above, nprobe calibrated for recall@10 >= 0.95), exact, hnsw, ivf, "
                            "ivf_sq8 or ivf_pq (these take eval.* settings from --params)")
    index.add_argument("--nprobe", type=int, default=None,
                       help="cells an ivf index visits per query (default: calibrated with auto, else eval.ivf_nprobe)")
    index.add_argument("--format", default=None, choices=["parquet", "jsonl", "tsv"],
                       help="collection format (default: from the file suffix)")
    index.add_argument("--id-column", default=None,
                       help="id column (default: the first of pid, id, passage_id, docid, doc_id, _id)")
    index.add_argument("--text-column", default=None,
                       help="text column (default: the first of text, passage_text, passage, contents, "
                            "content, body)")
    index.add_argument("--params", default=None,
                       help="params file for the eval, bm25, hybrid and feedback settings (params.yaml if present)")
    index.add_argument("--part-rows", type=int, default=None,
                       help="rows embedded and saved at a time: what a resumed run can skip (65536; 4096 when "
                            "the model's passages are the teacher's, ~70 s a part on 2 cores)")
    index.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    index.add_argument("--force", action="store_true",
                       help="replace an index already in --out; discard a DIR.partial of other inputs and a DIR.old")
    index.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    index.set_defaults(handler=run_index)

    serve = commands.add_parser(
        "serve", help="search an index folder over HTTP and in a web page",
        description="Serve GET /search?q=...&k=10&mode=dense|bm25|hybrid (JSON), GET /health, and a "
                    "search page at / showing the three modes side by side. A new build of the folder "
                    "(`twotower index --force`) is loaded in the background and swapped in whole; "
                    "SIGHUP reloads it at once.")
    serve.add_argument("--index", required=True, help="an index folder from `twotower index`")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000)")
    serve.add_argument("--model", default=None, help="the model file, if it moved since the index was built")
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes (1); more answer more requests/s on more cores. They are "
                            "forked after the index is loaded, so they share one copy of it (CPU only)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true",
                       help="log a line per request (off: formatting it cost ~8%% of a busy server's time)")
    serve.set_defaults(handler=run_serve)

    validate = commands.add_parser(
        "validate", help="check params and raw data in seconds, before a long run",
        description="Check every params section, the rules across sections, and the raw data's schema (and a "
                    "sample of its rows). Prints one line per problem and exits 1 if there is any.")
    validate.add_argument("--params", default="params.yaml", help="params file (params.yaml)")
    validate.add_argument("--data", default=None,
                          help="raw data folder (default: data.raw_dir from the params file)")
    validate.set_defaults(handler=run_validate)

    args = parser.parse_args(argv)
    if args.command == "index":
        args.params_given = args.params is not None
        args.params = args.params or "params.yaml"
    args.handler(args)


if __name__ == "__main__":
    main()

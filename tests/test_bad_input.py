"""Bad input through the real stage scripts: one `error:` line and exit 2 for what cannot be
used, no output folder left behind; dirty but usable rows dropped with a count in the log."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from tiny_data import make_tiny_msmarco, msmarco_table

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_stage(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def run_stages(jobs: dict) -> dict:
    """{key: (module, args)} -> {key: CompletedProcess}, a few at a time: each run spends
    most of its second importing pandas and pyarrow, so they overlap well."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run_stage, module, *args) for key, (module, args) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def write_params(folder: Path, **sections) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.fixture(scope="module")
def good_raw(tmp_path_factory):
    return make_tiny_msmarco(tmp_path_factory.mktemp("good"), n_train=16, n_validation=6, n_test=6)


def train_rows(raw: Path) -> list[dict]:
    return pq.read_table(raw / "train.parquet").to_pylist()


def write_train(raw: Path, table_or_rows) -> None:
    table = table_or_rows if isinstance(table_or_rows, pa.Table) else msmarco_table(table_or_rows, graded=True)
    pq.write_table(table, raw / "train.parquet")


VAL_QUERIES = 2  # held out of the tiny train split by the default data.validation: trec


def subsample_job(raw: Path, folder: Path, **data) -> tuple:
    """The subsample stage on `raw`, writing into `folder`/work/prepared (default data params
    but for a validation split small enough for the tiny train split, then `data`)."""
    (folder / "work").mkdir()
    params = write_params(folder, data={"raw_dir": str(raw), "val_queries": VAL_QUERIES, **data})
    return "stages.subsample", ["--params", str(params), "--out", str(folder / "work" / "prepared")]


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def replace_column(table: pa.Table, name: str, array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def _missing_folder(raw):
    shutil.rmtree(raw)
    return ["raw data folder not found:", str(raw)]


def _missing_split(raw):
    (raw / "validation.parquet").unlink()
    return ["no 'validation' split in", "validation.parquet or validation-*.parquet"]


def _without(column):
    def make(raw):
        write_train(raw, pq.read_table(raw / "train.parquet").drop_columns([column]))
        return ["train.parquet", f"missing column(s) {column};"]
    return make


def _passages_list_of_structs(raw):
    rows = [{"query_id": 1, "query": "lake", "passages": [{"is_selected": 1, "passage_text": "lake water"}]}]
    write_train(raw, pa.Table.from_pylist(rows))
    return ["train.parquet", "column 'passages' is list<", "expected a struct of lists"]


def _passage_text_not_a_list(raw):
    passages = pa.array([{"is_selected": [1], "passage_text": "lake water"}],
                        pa.struct([("is_selected", pa.list_(pa.int32())), ("passage_text", pa.string())]))
    write_train(raw, pa.table({"query_id": [1], "query": ["lake"], "passages": passages}))
    return ["passages.passage_text is string, expected a list"]


def _passage_text_numbers(raw):
    passages = pa.array([{"is_selected": [1], "passage_text": [3]}],
                        pa.struct([("is_selected", pa.list_(pa.int32())), ("passage_text", pa.list_(pa.int64()))]))
    write_train(raw, pa.table({"query_id": [1], "query": ["lake"], "passages": passages}))
    return ["passages.passage_text is list<element: int64>, expected a list of strings"]


def _query_numbers(raw):
    table = pq.read_table(raw / "train.parquet")
    write_train(raw, replace_column(table, "query", pa.array(range(table.num_rows), pa.int64())))
    return ["column 'query' is int64, expected strings"]


def _duplicate_qid(raw):
    rows = train_rows(raw)
    rows[3]["query_id"] = rows[0]["query_id"]
    write_train(raw, rows)
    return [f"query id {rows[0]['query_id']} appears with different texts", repr(rows[0]["query"])]


def _nothing_selected(raw):
    rows = train_rows(raw)
    for row in rows:
        row["passages"]["is_selected"] = [0] * len(row["passages"]["is_selected"])
    write_train(raw, rows)
    return ["train: no query has a selected passage"]


def _every_query_blank(raw):
    rows = train_rows(raw)
    for row in rows:
        row["query"] = " \t "
    write_train(raw, rows)
    return ["train: no usable query rows", f"{len(rows)} rows with an empty or missing query"]


def _every_query_not_utf8(raw):
    table = pq.read_table(raw / "train.parquet")
    write_train(raw, replace_column(table, "query", pa.array([b"caf\xe9"] * table.num_rows, pa.binary())))
    return ["train: no usable query rows", "rows whose query is not valid UTF-8"]


def _not_parquet(raw):
    (raw / "test.parquet").write_text("query_id,query\n1,lake\n")
    return ["test.parquet: not a readable parquet file"]


ERRORS = {
    "missing raw folder": _missing_folder,
    "missing split": _missing_split,
    "no query column": _without("query"),
    "no passages column": _without("passages"),
    "passages a list of structs": _passages_list_of_structs,
    "passage_text not a list": _passage_text_not_a_list,
    "passage_text numbers": _passage_text_numbers,
    "query numbers": _query_numbers,
    "duplicate query id, different text": _duplicate_qid,
    "no selected passage at all": _nothing_selected,
    "every query blank": _every_query_blank,
    "every query not UTF-8": _every_query_not_utf8,
    "not parquet": _not_parquet,
}


@pytest.fixture(scope="module")
def error_runs(good_raw, tmp_path_factory):
    """Each ERRORS case broken in its own copy of the data, all run through subsample."""
    jobs, expected = {}, {}
    for case, breaker in ERRORS.items():
        folder = tmp_path_factory.mktemp("error")
        raw = Path(shutil.copytree(good_raw, folder / "raw"))
        expected[case] = breaker(raw)
        jobs[case] = subsample_job(raw, folder)
    results = run_stages(jobs)
    return {case: (results[case], expected[case], Path(jobs[case][1][-1])) for case in ERRORS}


@pytest.mark.parametrize("case", list(ERRORS))
def test_unusable_raw_data_is_one_line_error_and_no_output(error_runs, case):
    result, fragments, out = error_runs[case]
    assert_one_line_error(result, *fragments)
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary


def edit_rows(edit):
    """A table edit from an edit of row i as a dict."""
    def apply(table, i):
        rows = table.to_pylist()
        edit(rows[i])
        return msmarco_table(rows, graded=True)
    return apply


def _set_query(value):
    def edit(row):
        row["query"] = value
    return edit


def _set_first_passage(value):
    def edit(row):
        row["passages"]["passage_text"][0] = value
    return edit


def _extra_flag(row):
    row["passages"]["is_selected"].append(0)


def _no_passages(row):
    row["passages"] = None


def _no_query_id(row):
    row["query_id"] = None


def _none_selected(row):
    row["passages"]["is_selected"] = [0] * len(row["passages"]["is_selected"])


def _nan_query(table, i):
    frame = table.to_pandas()
    frame.loc[i, "query"] = float("nan")
    return pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)


def _query_not_utf8(table, i):
    """A binary `query` column (as some writers store text) with one value that is not UTF-8."""
    queries = [None if q is None else q.encode() for q in table.column("query").to_pylist()]
    queries[i] = b"lake \xff\xfe water"
    return replace_column(table, "query", pa.array(queries, pa.binary()))


def _passage_not_utf8(table, i):
    """A string column holding bytes that are not UTF-8, as a careless writer can produce."""
    passages = table.column("passages").combine_chunks()
    texts = passages.field("passage_text")
    flat = [None if t is None else t.encode() for t in texts.values.to_pylist()]
    flat[texts.offsets[i].as_py()] = b"lake \xff water"
    as_bytes = pa.array(flat, pa.binary())
    bad_texts = pa.ListArray.from_arrays(texts.offsets, pa.Array.from_buffers(pa.string(), len(flat),
                                                                              as_bytes.buffers()))
    fields = [bad_texts if f.name == "passage_text" else passages.field(f.name) for f in passages.type]
    rebuilt = pa.StructArray.from_arrays(fields, fields=list(passages.type), mask=passages.is_null())
    return replace_column(table, "passages", rebuilt)


# case: (edit of row i, the reason the stage logs, whether row i's query survives). Every
# case breaks its own row of one train file, in this order: the last two edits leave
# columns that only the reader can take apart again.
DIRTY = {
    "empty passage": (edit_rows(_set_first_passage("")), "dropped {} empty or missing passage texts", True),
    "None passage": (edit_rows(_set_first_passage(None)), "dropped {} empty or missing passage texts", True),
    "whitespace query": (edit_rows(_set_query("  \t\n ")), "dropped {} rows with an empty or missing query",
                         False),
    "None query": (edit_rows(_set_query(None)), "dropped {} rows with an empty or missing query", False),
    "control-character query": (edit_rows(_set_query("\x00\x07\x1b")),
                                "dropped {} rows with an empty or missing query", False),
    "control characters in a passage": (edit_rows(_set_first_passage("lake\x00water\x1b[31m fish")),
                                        "cleaned {} passage texts with control characters (replaced by spaces)",
                                        True),
    "passage lists of different lengths": (edit_rows(_extra_flag),
                                           "dropped {} rows whose passage lists differ in length", False),
    "no passages": (edit_rows(_no_passages), "dropped {} rows without passages", False),
    "no query id": (edit_rows(_no_query_id), "dropped {} rows without a query id", False),
    "no selected passage for one query": (edit_rows(_none_selected), "dropped {} queries with no selected passage",
                                          False),
    "NaN query": (_nan_query, "dropped {} rows with an empty or missing query", False),
    "query not UTF-8": (_query_not_utf8, "dropped {} rows whose query is not valid UTF-8", False),
    "passage not UTF-8": (_passage_not_utf8, "dropped {} passage texts that are not valid UTF-8", True),
}


@pytest.fixture(scope="module")
def dirty_run(good_raw, tmp_path_factory):
    """One train file with every DIRTY case in its own row, run through subsample once."""
    folder = tmp_path_factory.mktemp("dirty")
    raw = Path(shutil.copytree(good_raw, folder / "raw"))
    table = pq.read_table(raw / "train.parquet")
    assert table.num_rows >= len(DIRTY) + 1
    qids = table.column("query_id").to_pylist()
    for i, (edit, _, _) in enumerate(DIRTY.values()):
        table = edit(table, i)
    write_train(raw, table)
    module, args = subsample_job(raw, folder)
    result = run_stage(module, *args)
    rows = {case: str(qids[i]) for i, case in enumerate(DIRTY)}
    return result, Path(args[-1]), rows, len(qids)


@pytest.mark.parametrize("case", list(DIRTY))
def test_dirty_rows_are_dropped_and_counted(dirty_run, case):
    result, out, rows, n_rows = dirty_run
    _, log_line, query_kept = DIRTY[case]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    same_reason = sum(line == log_line for _, line, _ in DIRTY.values())
    assert f"train: {log_line.format(same_reason)}" in result.stdout.splitlines(), result.stdout
    # data.validation: trec holds some of the cleaned train queries out as the validation split.
    train, validation = (pd.read_parquet(out / split / "queries.parquet") for split in ("train", "validation"))
    assert len(validation) == VAL_QUERIES and not set(train["qid"]) & set(validation["qid"])
    queries = pd.concat([train, validation])
    assert (rows[case] in set(queries["qid"])) == query_kept
    assert len(queries) == n_rows - sum(not kept for _, _, kept in DIRTY.values())
    passages = pd.read_parquet(out / "train" / "passages.parquet")
    assert passages["text"].str.len().gt(0).all()
    assert not passages["text"].str.contains(r"[\x00-\x08\x0b-\x1f\x7f]").any()
    assert [p.name for p in out.parent.iterdir()] == ["prepared"]


PARAM_CASES = [
    # (stage, section, key, bad value, what is accepted)
    ("stages.subsample", "data", "subsample", 0, "a number in (0, 1]"),
    ("stages.subsample", "data", "subsample", 1.5, "a number in (0, 1]"),
    ("stages.subsample", "data", "subsample", -0.5, "a number in (0, 1]"),
    ("stages.tokenize", "tokenize", "max_len_query", 0, "an integer >= 1"),
    ("stages.tokenize", "tokenize", "max_len_passage", 0, "an integer >= 1"),
    ("stages.build_triplets", "triplets", "negatives", "semi-hard", "one of random, hard, bm25, mixed"),
    ("stages.train", "model", "rnn_type", "GRUU", "one of GRU, LSTM, RNN"),
    ("stages.tokenize", "tokenize", "vectors", "word2vec", "one of glove, teacher"),
    ("stages.teacher", "teacher", "batch_size", 0, "an integer >= 1"),
    ("stages.teacher", "teacher", "device", "tpu", "one of auto, cpu, cuda, mps"),
]
# The train stage imports torch before it reads params (3-4 s a run), so these run its
# `main` in this process; the subprocess case above proves the script wiring.
IN_PROCESS_CASES = [
    ("stages.train", "model", "loss", "hinge", "one of triplet, cosine, infonce"),
    ("stages.train", "train", "lr", -0.001, "a number in (0, inf)"),
    ("stages.train", "train", "lr", 0, "a number in (0, inf)"),
    ("stages.train", "train", "batch_size", 0, "an integer >= 1"),
    ("stages.train", "model", "hidden_dim", "128", "an integer"),
    ("stages.train", "model", "distill_loss", "kl+mse",
     "one of kl, margin_mse, cosine or several joined by + (kl+cosine)"),
    ("stages.train", "model", "output", "both", "one of student, teacher"),
    ("stages.train", "train", "distill_weight", 1.5, "a number in [0, 1]"),
]


def stage_args(stage: str, tmp_path: Path) -> list[str]:
    """Data paths that do not exist: a stage that reached its data would fail differently."""
    absent = str(tmp_path / "absent")
    return {"stages.subsample": ["--out", absent], "stages.tokenize": ["--prepared", absent, "--out", absent],
            "stages.build_triplets": ["--prepared", absent, "--out", absent],
            "stages.teacher": ["--prepared", absent, "--triplets", absent, "--out", absent, "--metrics", absent],
            "stages.train": ["--prepared", absent, "--tokens", absent, "--triplets", absent,
                             "--model", absent, "--metrics", absent, "--plots", absent]}[stage]


@pytest.fixture(scope="module")
def param_runs(tmp_path_factory):
    jobs = {}
    for case in PARAM_CASES:
        stage, section, key, value, _ = case
        folder = tmp_path_factory.mktemp("params")
        params = write_params(folder, **{section: {key: value}})
        jobs[case] = (stage, ["--params", str(params), *stage_args(stage, folder)])
    results = run_stages(jobs)
    return {case: (results[case], Path(jobs[case][1][1]).parent) for case in PARAM_CASES}


@pytest.mark.parametrize("case", PARAM_CASES, ids=lambda c: f"{c[1]}.{c[2]}={c[3]!r}")
def test_invalid_param_stops_the_stage_before_any_data(param_runs, case):
    stage, section, key, value, accepted = case
    result, folder = param_runs[case]
    line = assert_one_line_error(result)
    assert line == f"error: {section}.{key}: {value!r} is not {accepted}"
    assert not (folder / "absent").exists()


@pytest.mark.parametrize("stage,section,key,value,accepted", IN_PROCESS_CASES)
def test_invalid_train_param_message(tmp_path, capsys, stage, section, key, value, accepted):
    params = write_params(tmp_path, **{section: {key: value}})
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(stage).main(["--params", str(params), *stage_args(stage, tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {section}.{key}: {value!r} is not {accepted}\n"
    assert not (tmp_path / "absent").exists()


CROSS_SECTION_CASES = {
    "stages.subsample": ({"data": {"ict_passages": 0}, "train": {"ict_epochs": 3}},
                         "error: train.ict_epochs: 3 needs data.ict_passages > 0"),
    "stages.tokenize": ({"tokenize": {"dim": 1000}}, "error: tokenize.dim: 1000 is not an integer in [1, 384] "),
    "stages.build_triplets": ({"model": {"output": "teacher"}, "train": {"distill_weight": 0, "query_epochs": 0}},
                              "error: model.output: teacher needs train.distill_weight > 0 or "
                              "train.query_epochs > 0, got 0 and 0 "),
    "stages.teacher": ({"data": {"real_queries": 0}},
                       "error: train.query_epochs: 6 needs data.real_queries > 0, got 0 "),
}


@pytest.fixture(scope="module")
def cross_section_runs(tmp_path_factory):
    jobs = {}
    for stage, (sections, _) in CROSS_SECTION_CASES.items():
        folder = tmp_path_factory.mktemp("rules")
        jobs[stage] = (stage, ["--params", str(write_params(folder, **sections)), *stage_args(stage, folder)])
    return {stage: (result, Path(jobs[stage][1][1]).parent) for stage, result in run_stages(jobs).items()}


@pytest.mark.parametrize("stage", list(CROSS_SECTION_CASES))
def test_params_that_break_a_rule_across_sections_stop_any_stage_before_its_data(cross_section_runs, stage):
    """A stage checks the rules even where they concern other stages' sections: the first
    stage `dvc repro` runs stops, not the one that would fail an hour later."""
    result, folder = cross_section_runs[stage]
    assert assert_one_line_error(result).startswith(CROSS_SECTION_CASES[stage][1])
    assert not (folder / "absent").exists()


def test_train_stops_on_teacher_output_without_distillation_before_its_data(tmp_path, capsys):
    params = write_params(tmp_path, model={"output": "teacher"}, train={"distill_weight": 0, "query_epochs": 0})
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("stages.train").main(["--params", str(params), *stage_args("stages.train", tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: model.output: teacher needs train.distill_weight > 0 or "
                                       "train.query_epochs > 0, got 0 and 0 (the towers learn the teacher's space "
                                       "from the teacher)\n")


def test_unknown_param_names_the_typo_and_the_accepted_keys(tmp_path):
    params = write_params(tmp_path, data={"subsampel": 0.5})
    line = assert_one_line_error(run_stage("stages.subsample", "--params", str(params),
                                           *stage_args("stages.subsample", tmp_path)))
    assert line.startswith("error: data.subsampel: unknown param; accepted: ")
    assert "subsample_test" in line and line.endswith("(did you mean subsample?)")


def test_params_file_that_is_not_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data: [unclosed\n")
    assert_one_line_error(run_stage("stages.subsample", "--params", str(params),
                                    *stage_args("stages.subsample", tmp_path)), "not valid YAML")


@pytest.fixture(scope="module")
def prepared_and_tokens(good_raw, tmp_path_factory):
    """Tiny prepared splits (subsample asked for inverse-cloze pairs, which the single-sentence
    passages do not make) and GloVe word tokens, as subsample and tokenize write them."""
    folder = tmp_path_factory.mktemp("teacherless")
    module, args = subsample_job(good_raw, folder, ict_passages=4000)
    result = run_stage(module, *args)
    assert result.returncode == 0, result.stderr
    assert "note: no inverse-cloze pairs" in result.stdout
    prepared, tokens = folder / "work" / "prepared", folder / "work" / "tokens"
    params = write_params(folder, tokenize={"tokenizer": "word", "max_vocab": 500, "vectors": "glove"})
    result = run_stage("stages.tokenize", "--params", str(params),
                       "--prepared", str(prepared), "--teacher", str(folder / "absent"), "--out", str(tokens))
    assert result.returncode == 0, result.stderr
    return folder, prepared, tokens


def fake_teacher_stage(prepared: Path, out: Path, splits=("train", "validation"), dim: int = 8) -> Path:
    """What the teacher stage writes for `splits`, with seeded random unit vectors in place of
    the teacher's (the stage encodes its 30k word pieces for a minute): enough for training."""
    rng = np.random.default_rng(0)
    for split in splits:
        for table, key in (("queries", "qid"), ("passages", "pid")):
            ids = pd.read_parquet(prepared / split / f"{table}.parquet", columns=[key])
            vectors = rng.standard_normal((len(ids), dim))
            (out / split).mkdir(parents=True, exist_ok=True)
            np.save(out / split / f"{table}.npy", (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
                    .astype(np.float16))
            ids.to_parquet(out / split / f"{table}_ids.parquet", index=False)
    (out / "manifest.json").write_text(json.dumps({"model": "fake", "dim": dim, "space": f"fake:{dim}", "rows": {}}))
    return out


@pytest.mark.parametrize("tokenize,missing", [({}, "teacher word pieces missing"),
                                              ({"tokenizer": "word", "vectors": "teacher"},
                                               "teacher word vectors missing")],
                         ids=["wordpiece", "word"])
def test_teacher_word_vectors_without_the_teacher_stage_say_which_stage_to_run(prepared_and_tokens, tmp_path,
                                                                               tokenize, missing):
    folder, prepared, _ = prepared_and_tokens
    params = write_params(tmp_path, tokenize={**tokenize, "max_vocab": 500})
    line = assert_one_line_error(run_stage("stages.tokenize", "--params", str(params), "--prepared", str(prepared),
                                           "--teacher", str(folder / "absent"), "--out", str(tmp_path / "tokens2")),
                                 missing, "dvc repro teacher")
    assert str(folder / "absent") in line and not (tmp_path / "tokens2").exists()


@pytest.mark.parametrize("model,train", [({}, {}), ({"output": "student", "passage_encoder": "student"},
                                                    {"distill_weight": 0.5, "query_epochs": 0})],
                         ids=["teacher passages", "distillation"])
def test_distillation_without_the_teacher_stage_says_which_stage_to_run(prepared_and_tokens, tmp_path, model,
                                                                        train):
    _, prepared, tokens = prepared_and_tokens
    params = write_params(tmp_path, model=model, train={**train, "device": "cpu"})
    assert_one_line_error(run_stage("stages.train", "--params", str(params), "--prepared", str(prepared),
                                    "--tokens", str(tokens), "--triplets", str(tmp_path / "absent"),
                                    "--teacher", str(tmp_path / "no-teacher"), "--model", str(tmp_path / "m.pt"),
                                    "--metrics", str(tmp_path / "m.json"), "--plots", str(tmp_path / "plots")),
                          "teacher vectors missing", "dvc repro teacher")
    assert not (tmp_path / "m.pt").exists()


def test_missing_tokens_are_one_line_naming_the_stage(tmp_path):
    params = write_params(tmp_path, train={"device": "cpu"})
    assert_one_line_error(run_stage("stages.train", "--params", str(params), *stage_args("stages.train", tmp_path)),
                          "run the tokenize stage")


def test_train_without_inverse_cloze_pairs_skips_that_phase_with_a_note(prepared_and_tokens, tmp_path, capsys):
    """The tiny passages are single sentences, so subsample made no ict split: train.ict_epochs
    has nothing to pretrain on, and training goes on without it (nor without real queries)."""
    _, prepared, tokens = prepared_and_tokens
    assert not (prepared / "ict").exists()
    teacher = fake_teacher_stage(prepared, tmp_path / "teacher")
    params = write_params(tmp_path, data={"ict_passages": 4000}, triplets={"per_query": 2}, model={"hidden_dim": 8},
                          train={"epochs": 1, "batch_size": 16, "device": "cpu", "ict_epochs": 2})
    triplets = tmp_path / "triplets"
    result = run_stage("stages.build_triplets", "--params", str(params), "--prepared", str(prepared),
                       "--out", str(triplets))
    assert result.returncode == 0, result.stderr
    assert not (triplets / "ict.parquet").exists()
    importlib.import_module("stages.train").main([
        "--params", str(params), "--prepared", str(prepared), "--tokens", str(tokens), "--triplets", str(triplets),
        "--teacher", str(teacher), "--model", str(tmp_path / "model.pt"),
        "--metrics", str(tmp_path / "train.json"), "--plots", str(tmp_path / "plots"),
        "--checkpoints", str(tmp_path / "checkpoints")])
    out = capsys.readouterr().out.splitlines()
    assert f"note: no inverse-cloze pairs in {prepared / 'ict'}: skipping the train.ict_epochs pretraining" in out
    assert "note: train.query_epochs > 0 but there is no real split (no queries.parquet, or data.real_queries: 0): " \
        "phase skipped" in out
    assert [line.split(",")[0] for line in out if line.startswith("phase ")] == ["phase 1: labelled triplets"]
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "train.json").is_file()


def test_teacher_folder_without_tokenizer_json_stops_before_loading_the_model(tmp_path, capsys, monkeypatch):
    """The stage copies tokenizer.json for tokenize only after minutes of encoding."""
    folder = tmp_path / "teacher-model"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    (folder / "config.json").write_text('{"hidden_size": 8}')
    stage = importlib.import_module("stages.teacher")
    monkeypatch.setattr(stage, "load_teacher", lambda *args: pytest.fail("the model was loaded"))
    params = write_params(tmp_path, teacher={"model": str(folder), "device": "cpu"}, tokenize={"dim": 8})
    with pytest.raises(SystemExit) as exit_info:
        stage.main(["--params", str(params), *stage_args("stages.teacher", tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: teacher model directory has no tokenizer.json: {folder} (") and err.count("\n") == 1
    assert not (tmp_path / "absent").exists()

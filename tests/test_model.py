import itertools

import pytest
import torch
import torch.nn.functional as F

from twotower.errors import TwoTowerError
from twotower.model.towers import ModelConfig, TwoTower, load_model, save_model

VOCAB, DIM = 30, 8
VOCAB_WORDS = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]


def make_model(seed=0, random_projection=True, **overrides) -> TwoTower:
    """A small model; the projection is randomised (it starts at zero) so the RNN matters."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=VOCAB, embed_dim=DIM, hidden_dim=6, **overrides)
    model = TwoTower(cfg, embeddings=torch.randn(VOCAB, DIM))
    if random_projection:
        with torch.no_grad():
            for encoder in {model.query_encoder, model.passage_encoder}:
                encoder.project.weight.normal_()
                encoder.project.bias.normal_()
    return model.eval()


def padded(rows, width):
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(r) for r in rows])


ROWS = [[3, 4, 5, 6, 7], [8, 9], [10], [11, 12, 13]]

ARCHITECTURES = list(itertools.product(["GRU", "LSTM", "RNN"], [True, False], ["mean", "max", "last"]))


@pytest.mark.parametrize("rnn_type,bidirectional,pooling", ARCHITECTURES)
def test_shapes_unit_norm_and_padding_is_ignored(rnn_type, bidirectional, pooling):
    model = make_model(rnn_type=rnn_type, bidirectional=bidirectional, pooling=pooling)
    with torch.no_grad():
        narrow = model.encode_queries(*padded(ROWS, 5))
        wide = model.encode_passages(*padded(ROWS, 20))
        wide_q = model.encode_queries(*padded(ROWS, 20))
        alone = model.encode_queries(*padded(ROWS[1:2], 2))
    assert narrow.shape == wide.shape == (len(ROWS), DIM)
    torch.testing.assert_close(narrow.norm(dim=-1), torch.ones(len(ROWS)))
    torch.testing.assert_close(wide.norm(dim=-1), torch.ones(len(ROWS)))
    # The same texts padded to width 5 or 20, or without a longer neighbour, give the same vectors.
    torch.testing.assert_close(narrow, wide_q)
    torch.testing.assert_close(narrow[1:2], alone)


def packed_reference(encoder, ids, lengths):
    """What the encoder computes, written the textbook way: one packed (bi)directional
    torch RNN carrying the encoder's weights, pooled over real tokens only."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    cfg = encoder.cfg
    rnn = {"GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM, "RNN": torch.nn.RNN}[cfg.rnn_type](
        DIM, cfg.hidden_dim, num_layers=cfg.num_layers, batch_first=True, bidirectional=cfg.bidirectional)
    with torch.no_grad():
        for layer in range(cfg.num_layers):
            for suffix, rnns in (("", encoder.forward_rnns), ("_reverse", encoder.backward_rnns)):
                if rnns:
                    for name, value in rnns[layer].named_parameters():
                        getattr(rnn, name.replace("l0", f"l{layer}") + suffix).copy_(value)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
    vectors = encoder.embedding(ids)
    bag = (vectors * encoder.term_weight(ids) * mask).sum(1) / lengths[:, None]
    packed, hidden = rnn(pack_padded_sequence(vectors, lengths, batch_first=True, enforce_sorted=False))
    outputs, _ = pad_packed_sequence(packed, batch_first=True, total_length=ids.shape[1])
    if cfg.pooling == "last":
        h = hidden[0] if isinstance(hidden, tuple) else hidden
        pooled = torch.cat([h[-2], h[-1]], dim=-1) if cfg.bidirectional else h[-1]
    elif cfg.pooling == "mean":
        pooled = (outputs * mask).sum(1) / lengths[:, None]
    else:
        pooled = outputs.masked_fill(~mask, float("-inf")).max(1).values
    return F.normalize(bag + encoder.project(pooled), dim=-1)


@pytest.mark.parametrize("rnn_type,bidirectional,pooling", ARCHITECTURES)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padded_two_way_rnn_equals_packed_bidirectional_rnn(rnn_type, bidirectional, pooling, num_layers):
    model = make_model(rnn_type=rnn_type, bidirectional=bidirectional, pooling=pooling, num_layers=num_layers)
    rows = [[3, 4, 5, 6, 7, 2, 9], [8, 9], [10], [11, 12, 13], [5, 5, 5, 5, 5, 5]]
    ids, lengths = padded(rows, 9)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_passages(ids, lengths),
                                   packed_reference(model.passage_encoder, ids, lengths))


def test_random_projection_makes_the_rnn_matter():
    """Guards the padding test above: with a nonzero projection, pooling changes the output."""
    ids, lengths = padded(ROWS, 5)
    with torch.no_grad():
        mean = make_model(pooling="mean").encode_queries(ids, lengths)
        last = make_model(pooling="last").encode_queries(ids, lengths)
    assert not torch.allclose(mean, last)


def test_untrained_model_is_normalised_mean_of_word_vectors():
    embeddings = torch.randn(VOCAB, DIM)
    model = TwoTower(ModelConfig(vocab_size=VOCAB, embed_dim=DIM, hidden_dim=6), embeddings).eval()
    ids, lengths = padded(ROWS, 6)
    expected = torch.stack([F.normalize(embeddings[row].mean(0), dim=0) for row in ROWS])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_queries(ids, lengths), expected)
        torch.testing.assert_close(model.encode_passages(ids, lengths), expected)


def test_untrained_model_with_term_weights_is_weighted_mean():
    embeddings, weights = torch.randn(VOCAB, DIM), torch.rand(VOCAB) + 0.5
    model = TwoTower(ModelConfig(vocab_size=VOCAB, embed_dim=DIM, hidden_dim=6), embeddings, weights).eval()
    ids, lengths = padded(ROWS, 6)
    expected = torch.stack([F.normalize((weights[row, None] * embeddings[row]).sum(0), dim=0) for row in ROWS])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_queries(ids, lengths), expected)


def test_wrong_embedding_shape_is_rejected():
    with pytest.raises(ValueError):
        TwoTower(ModelConfig(vocab_size=VOCAB, embed_dim=DIM), torch.zeros(VOCAB, DIM + 1))


def test_shared_encoder_shares_the_tower():
    model = make_model(shared_encoder=True)
    assert model.query_encoder is model.passage_encoder
    ids, lengths = padded(ROWS, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_queries(ids, lengths), model.encode_passages(ids, lengths))


def test_separate_encoders_share_only_the_embedding_table():
    model = make_model(shared_encoder=False, shared_embeddings=True)
    assert model.query_encoder is not model.passage_encoder
    assert model.query_encoder.forward_rnns is not model.passage_encoder.forward_rnns
    assert model.query_encoder.embedding is model.passage_encoder.embedding is model.embedding
    ids, lengths = padded(ROWS, 5)
    with torch.no_grad():
        assert not torch.allclose(model.encode_queries(ids, lengths), model.encode_passages(ids, lengths))
    # One table, counted once among the parameters.
    assert sum(p is model.embedding.weight for p in model.parameters()) == 1


def test_passage_tower_gets_its_own_copies_of_the_tables_by_default():
    model = make_model(shared_encoder=False)
    passage, query = model.passage_encoder, model.query_encoder
    assert passage.embedding is not query.embedding and passage.term_weight is not query.term_weight
    torch.testing.assert_close(passage.embedding.weight, query.embedding.weight)  # they start equal
    with torch.no_grad():
        passage.embedding.weight[1:] += 1.0
    assert not torch.allclose(passage.embedding.weight, query.embedding.weight)
    # The copies are saved and loaded under the passage tower's own keys.
    state = model.state_dict()
    twin = make_model(seed=1, shared_encoder=False)
    twin.load_state_dict(state)
    torch.testing.assert_close(twin.passage_encoder.embedding.weight, passage.embedding.weight)
    torch.testing.assert_close(twin.query_encoder.embedding.weight, query.embedding.weight)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings(freeze):
    model = make_model(freeze_embeddings=freeze).train()
    ids, lengths = padded(ROWS, 5)
    model.encode_queries(ids, lengths).sum().backward()
    assert model.embedding.weight.requires_grad is not freeze
    assert (model.embedding.weight.grad is None) is freeze
    assert model.query_encoder.forward_rnns[0].weight_ih_l0.grad is not None


def test_save_load_round_trip_without_params_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    model = make_model(rnn_type="LSTM", pooling="max", shared_encoder=False, freeze_embeddings=True)
    path = tmp_path / "models" / "model.pt"
    save_model(model, VOCAB_WORDS, max_len_query=7, max_len_passage=21, path=path)
    loaded, ckpt = load_model(path)
    assert not loaded.training
    assert loaded.cfg == model.cfg
    assert ckpt["vocab"] == VOCAB_WORDS
    assert (ckpt["max_len_query"], ckpt["max_len_passage"]) == (7, 21)
    ids, lengths = padded(ROWS, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_queries(ids, lengths), model.encode_queries(ids, lengths),
                                   rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_passages(ids, lengths), model.encode_passages(ids, lengths),
                                   rtol=0, atol=0)
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind


def test_shared_tables_are_saved_once(tmp_path):
    """The word table is named by three keys; the file holds it once (a copy per key, as
    `.cpu()` of CUDA tensors made, tripled model.pt)."""
    vocab, dim = 20_000, 16
    model = TwoTower(ModelConfig(vocab_size=vocab, embed_dim=dim, hidden_dim=4, shared_embeddings=True),
                     torch.randn(vocab, dim))
    path = tmp_path / "model.pt"
    save_model(model, [f"w{i}" for i in range(vocab)], max_len_query=7, max_len_passage=21, path=path)
    state = torch.load(path, weights_only=True)["state_dict"]
    keys = ["embedding.weight", "query_encoder.embedding.weight", "passage_encoder.embedding.weight"]
    assert len({state[k].untyped_storage().data_ptr() for k in keys}) == 1
    table_bytes = vocab * dim * 4
    assert path.stat().st_size < 1.5 * table_bytes
    loaded, _ = load_model(path)
    assert loaded.query_encoder.embedding is loaded.embedding is loaded.passage_encoder.embedding
    torch.testing.assert_close(loaded.embedding.weight, model.embedding.weight, rtol=0, atol=0)


def test_load_model_missing_path(tmp_path):
    with pytest.raises(TwoTowerError, match="model not found"):
        load_model(tmp_path / "nope.pt")


def test_load_model_rejects_other_checkpoints(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(TwoTowerError, match="not a twotower model checkpoint"):
        load_model(path)


def test_load_model_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(TwoTowerError):
        load_model(path)


def test_teacher_output_ends_both_towers_in_the_projection_and_survives_a_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=20, embed_dim=4, hidden_dim=3, teacher_dim=6, output="teacher")
    model = TwoTower(cfg, torch.randn(20, 4)).eval()
    ids, lengths = torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2])
    queries, passages = model.encode_queries(ids, lengths), model.encode_passages(ids, lengths)
    assert model.output_dim == 6 and queries.shape == passages.shape == (2, 6)
    assert torch.allclose(queries.norm(dim=-1), torch.ones(2))
    expected = F.normalize(model.to_teacher(model.query_encoder(ids, lengths)), dim=-1)
    assert torch.allclose(queries, expected)
    save_model(model, ["<pad>", "<unk>"] + [f"w{i}" for i in range(18)], 8, 8, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert torch.allclose(loaded.encode_queries(ids, lengths), queries)
    assert TwoTower(ModelConfig(vocab_size=20, embed_dim=4)).output_dim == 4
    with pytest.raises(ValueError, match="teacher_dim"):
        TwoTower(ModelConfig(vocab_size=20, embed_dim=4, output="teacher"))


@pytest.mark.parametrize("rnn_type,bidirectional,pooling", ARCHITECTURES)
@pytest.mark.parametrize("num_layers,output", [(1, "student"), (2, "teacher")])
def test_one_query_path_matches_the_batched_path(rnn_type, bidirectional, pooling, num_layers, output):
    model = make_model(rnn_type=rnn_type, bidirectional=bidirectional, pooling=pooling, num_layers=num_layers,
                       output=output, teacher_dim=5 if output == "teacher" else 0, shared_encoder=False)
    with torch.no_grad():
        batched = model.encode_queries(*padded(ROWS, 7))
        for row, expected in zip(ROWS, batched):
            torch.testing.assert_close(model.encode_query(torch.tensor(row)), expected)

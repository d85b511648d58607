"""The fused passage tower gives the vectors of the ordinary one, for every form it fuses,
and refuses the forms it cannot fuse."""

import pytest
import torch

from tests.test_model import VOCAB, make_model, padded
from twotower.model.fused import FusedEncoder, fuse
from twotower.model.towers import ModelConfig, TwoTower

ROWS = [[3, 4, 5, 6, 7, 2, 9], [8, 9], [10], [11, 12, 13], [14] * 7, [29, 28, 27, 26]]


def random_term_weights(model):
    """Term weights start at 1; make them differ so the bag's weighting is checked too."""
    with torch.no_grad():
        model.term_weight.weight.uniform_(0.1, 2.0)
        model.term_weight.weight[0] = 0.0
    return model


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
@pytest.mark.parametrize("output", ["student", "teacher"])
def test_the_fused_tower_gives_the_towers_vectors(bidirectional, pooling, output):
    model = random_term_weights(make_model(rnn_type="RNN", bidirectional=bidirectional, pooling=pooling,
                                           output=output, teacher_dim=5 if output == "teacher" else 0))
    ids, lengths = padded(ROWS, 9)  # two columns of padding past the longest row
    with torch.no_grad():
        expected = model.encode_passages(ids, lengths)
        fused = model.fused_passage_path()(ids, lengths)
    assert isinstance(fuse(model.passage_encoder), FusedEncoder)
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-6)


def test_a_row_alone_gets_the_vector_it_gets_in_a_batch():
    model = random_term_weights(make_model(rnn_type="RNN"))
    path = model.fused_passage_path()
    with torch.no_grad():
        batched = path(*padded(ROWS, 9))
        for row, vector in zip(ROWS, batched):
            torch.testing.assert_close(path(*padded([row], len(row))), vector[None], rtol=0, atol=1e-6)


def test_the_fused_copy_keeps_the_weights_of_when_it_was_made():
    model = make_model(rnn_type="RNN")
    path = model.fused_passage_path()
    ids, lengths = padded(ROWS, 9)
    before = path(ids, lengths)
    with torch.no_grad():
        model.passage_encoder.project.weight.mul_(-1)
    torch.testing.assert_close(path(ids, lengths), before)
    torch.testing.assert_close(model.fused_passage_path()(ids, lengths), model.encode_passages(ids, lengths),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("overrides", [{"rnn_type": "GRU"}, {"rnn_type": "LSTM"}, {"rnn_type": "RNN", "num_layers": 2}])
def test_other_towers_are_not_fused_and_keep_their_own_path(overrides):
    model = make_model(**overrides)
    assert fuse(model.passage_encoder) is None
    assert model.fused_passage_path() == model.encode_passages


def test_a_model_without_a_passage_tower_has_nothing_to_fuse():
    model = TwoTower(ModelConfig(vocab_size=VOCAB, embed_dim=4, teacher_dim=5, output="teacher",
                                 passage_encoder="teacher"))
    assert model.passage_encoder is None and fuse(model.passage_encoder) is None

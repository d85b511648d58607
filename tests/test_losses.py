import math

import pytest
import torch
import torch.nn.functional as F

from twotower.model.losses import (DISTILL_LOSSES, LOSSES, LossInputs, build_loss, cosine_loss, infonce_loss,
                             kl_distill_loss, margin_mse_loss, needs_projection, triplet_loss,
                             vector_cosine_loss)
from twotower.param_checks import LOSSES as LOSS_NAMES
from twotower.params import ModelParams


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


Q = unit([1.0, 0.0], [0.0, 1.0])
SAME = unit([1.0, 0.0], [0.0, 1.0])
OPPOSITE = unit([-1.0, 0.0], [0.0, -1.0])
ORTHOGONAL = unit([0.0, 1.0], [1.0, 0.0])


def test_triplet_loss_zero_when_positive_much_closer():
    assert triplet_loss(Q, SAME, OPPOSITE, margin=0.5).item() == 0.0


def test_triplet_loss_equals_margin_when_positive_and_negative_coincide():
    assert triplet_loss(Q, ORTHOGONAL, ORTHOGONAL, margin=0.3).item() == pytest.approx(0.3)


def test_triplet_loss_hinge_value():
    # Cosine distance to the positive 1, to the negative 0: 1 - 0 + 0.2 = 1.2 for each row.
    assert triplet_loss(Q, ORTHOGONAL, SAME, margin=0.2).item() == pytest.approx(1.2)


def test_cosine_loss_basics():
    # Positive identical, negative opposite: nothing to pull, negative already below margin.
    assert cosine_loss(Q, SAME, OPPOSITE, margin=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # Positive orthogonal (1 - 0 = 1) and negative identical (relu(1 - 0.5) = 0.5).
    assert cosine_loss(Q, ORTHOGONAL, SAME, margin=0.5).item() == pytest.approx(1.5)
    # Negative at cosine 0 with margin 0.1 is already below: only the positive term remains.
    assert cosine_loss(Q, SAME, ORTHOGONAL, margin=0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_infonce_hand_value():
    # q = e1; passages: pos e1 (cos 1), other row's pos e2 (0), negs -e1 (-1), -e2 (0).
    q, pos, neg = unit([1.0, 0.0]), unit([1.0, 0.0]), unit([-1.0, 0.0])
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(-1 / t)))
    assert infonce_loss(q, pos, neg, temperature=t).item() == pytest.approx(expected, rel=1e-5)


def test_infonce_masks_same_query_in_batch_positives():
    # Rows 0 and 1 are two positives of the same query; row 1's positive is as close to
    # query 0 as its own, so unmasked it acts as a strong false negative.
    q = unit([1.0, 0.0], [1.0, 0.1], [0.0, 1.0])
    pos = unit([1.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    neg = unit([-1.0, 0.0], [-1.0, 0.0], [0.0, -1.0])
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    t = 0.5
    unmasked = infonce_loss(q, pos, neg, t)
    masked = infonce_loss(q, pos, neg, t, same_query=same)
    assert masked < unmasked

    # By hand: with the mask, query i's logits over [pos_0, pos_1, pos_2, neg_0, neg_1, neg_2]
    # lose the other same-query positive; the diagonal (its own positive) stays.
    logits = q @ torch.cat([pos, neg]).T / t
    keep = ~same.clone().fill_diagonal_(False)
    expected = sum(
        -(logits[i, i] - torch.logsumexp(torch.cat([logits[i, :3][keep[i]], logits[i, 3:]]), 0))
        for i in range(3)
    ) / 3
    assert masked.item() == pytest.approx(expected.item(), rel=1e-5)


def test_infonce_mask_is_not_modified():
    same = torch.ones(2, 2, dtype=torch.bool)
    infonce_loss(Q, SAME, OPPOSITE, 0.1, same_query=same)
    assert same.all()


def test_build_loss_takes_the_settings_from_the_params():
    triplet = build_loss(ModelParams(loss="triplet", margin=0.3))
    assert triplet(LossInputs(Q, ORTHOGONAL, ORTHOGONAL)).item() == pytest.approx(0.3)
    cosine = build_loss(ModelParams(loss="cosine", margin=0.5))
    assert cosine(LossInputs(Q, ORTHOGONAL, SAME)).item() == pytest.approx(1.5)
    infonce = build_loss(ModelParams(loss="infonce", margin=0.2, temperature=0.1))
    assert infonce(LossInputs(Q, SAME, OPPOSITE)).item() == pytest.approx(infonce_loss(Q, SAME, OPPOSITE, 0.1).item())
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss(ModelParams(loss="hinge"))


def test_every_loss_name_params_accept_has_a_loss():
    assert sorted(LOSSES) == sorted(LOSS_NAMES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_batch_split_in_shares_weighted_by_size_gives_the_whole_batch_loss(name):
    """What each process sees under torchrun: its own queries, and every process's passages
    with its own first (`distributed.gather_rows`). Its loss weighted by its share of the
    batch, summed over the processes, is the loss of the whole batch in one process."""
    torch.manual_seed(0)
    q, pos, neg = (F.normalize(torch.randn(5, 4), dim=-1) for _ in range(3))
    qids = torch.tensor([0, 1, 1, 2, 3])
    loss = build_loss(ModelParams(loss=name))
    whole = loss(LossInputs(q, pos, neg, qids[:, None] == qids[None, :]))
    total = 0.0
    for mine in (torch.tensor([0, 2, 4]), torch.tensor([1, 3])):  # rows[rank::2]
        order = torch.cat([mine, torch.tensor([r for r in range(5) if r not in mine])])
        same = qids[mine][:, None] == qids[order][None, :]
        total += loss(LossInputs(q[mine], pos[order], neg[order], same)) * len(mine) / 5
    assert total.item() == pytest.approx(whole.item(), rel=1e-6)


def test_kl_distillation_is_zero_when_student_scores_equal_the_teachers():
    torch.manual_seed(1)
    q, passages = F.normalize(torch.randn(3, 4), dim=-1), F.normalize(torch.randn(6, 4), dim=-1)
    assert kl_distill_loss(q, passages, q, passages, temperature=0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_distill_loss(q, passages, q.flip(0), passages, temperature=0.1).item() > 0.01


def test_kl_distillation_by_hand():
    # One query, two passages. Student scores (1, 0), teacher scores (0, 0) at temperature 1:
    # p_teacher = (1/2, 1/2), p_student = softmax(1, 0) = (e/(e+1), 1/(e+1)).
    q, passages = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher_q, teacher_passages = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    e = math.e
    expected = 0.5 * math.log(0.5 / (e / (e + 1))) + 0.5 * math.log(0.5 / (1 / (e + 1)))
    assert kl_distill_loss(q, passages, teacher_q, teacher_passages, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_margin_mse_is_zero_for_equal_margins_whatever_the_scores():
    # Student scores 1 and 0 (margin 1) ; teacher scores 0.5 and -0.5 (margin 1).
    q, pos, neg = unit([1.0, 0.0]), unit([1.0, 0.0]), unit([0.0, 1.0])
    tq, tpos, tneg = unit([1.0, 0.0]), unit([0.5, math.sqrt(0.75)]), unit([-0.5, math.sqrt(0.75)])
    assert margin_mse_loss(q, pos, neg, tq, tpos, tneg).item() == pytest.approx(0.0, abs=1e-6)
    # Teacher margin 0 against the student's 1: squared error 1.
    assert margin_mse_loss(q, pos, neg, tq, tpos, tpos).item() == pytest.approx(1.0)


def test_vector_cosine_loss_by_hand():
    assert vector_cosine_loss(unit([1.0, 0.0]), unit([2.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert vector_cosine_loss(unit([1.0, 0.0], [1.0, 0.0]), unit([0.0, 1.0], [-1.0, 0.0])).item() == pytest.approx(1.5)


def _distill_inputs(q, pos, neg, labelled=True):
    return LossInputs(q, pos, neg, teacher_q=q.flip(1), teacher_pos=pos.flip(1), teacher_neg=neg.flip(1),
                      to_teacher=lambda x: x.flip(1) * 2, labelled=labelled)


def test_distillation_mixes_labels_and_teacher_by_weight_and_pseudo_pairs_take_the_teacher_alone():
    torch.manual_seed(2)
    q, pos, neg = (F.normalize(torch.randn(4, 3), dim=-1) for _ in range(3))
    params = ModelParams(loss="infonce", temperature=0.1, distill_loss="kl+margin_mse")
    labels = build_loss(params)(LossInputs(q, pos, neg))
    inputs = _distill_inputs(q, pos, neg)
    teacher = (kl_distill_loss(q, torch.cat([pos, neg]), q.flip(1), torch.cat([pos, neg]).flip(1), 0.1)
               + margin_mse_loss(q, pos, neg, q.flip(1), pos.flip(1), neg.flip(1)))
    mixed = build_loss(params, distill_weight=0.25)
    assert mixed(inputs).item() == pytest.approx((0.75 * labels + 0.25 * teacher).item(), rel=1e-6)
    assert mixed(_distill_inputs(q, pos, neg, labelled=False)).item() == pytest.approx(teacher.item(), rel=1e-6)
    # The projection maps each vector onto its teacher (flip, scaled): the cosine loss is 0.
    cosine_only = build_loss(ModelParams(distill_loss="cosine", vector_weight=10.0), distill_weight=1.0)
    assert cosine_only(inputs).item() == pytest.approx(0.0, abs=1e-6)


def test_only_the_cosine_teacher_loss_or_the_teacher_space_needs_a_projection():
    student = {"output": "student", "passage_encoder": "student"}
    assert needs_projection(ModelParams(distill_loss="kl+cosine", **student), True)
    assert not needs_projection(ModelParams(distill_loss="kl+cosine", **student), False)
    assert not needs_projection(ModelParams(distill_loss="kl+margin_mse", **student), True)
    assert needs_projection(ModelParams(distill_loss="kl+margin_mse"), False)  # output: teacher


@pytest.mark.parametrize("name", sorted(DISTILL_LOSSES))
def test_a_distillation_batch_split_in_shares_gives_the_whole_batch_loss(name):
    """As above, for each teacher loss with the teacher's vectors laid out like the student's."""
    torch.manual_seed(3)
    q, pos, neg = (F.normalize(torch.randn(5, 4), dim=-1) for _ in range(3))
    head = torch.nn.Linear(4, 6)
    tq, tpos, tneg = (F.normalize(torch.randn(5, 6), dim=-1) for _ in range(3))
    loss = build_loss(ModelParams(distill_loss=name), distill_weight=1.0)
    whole = loss(LossInputs(q, pos, neg, None, tq, tpos, tneg, head))
    total = 0.0
    for mine in (torch.tensor([0, 2, 4]), torch.tensor([1, 3])):
        order = torch.cat([mine, torch.tensor([r for r in range(5) if r not in mine])])
        total += loss(LossInputs(q[mine], pos[order], neg[order], None, tq[mine], tpos[order], tneg[order],
                                 head)) * len(mine) / 5
    assert total.item() == pytest.approx(whole.item(), rel=1e-5)

import math

import pytest
import torch
import torch.nn.functional as F

from twotower.losses import compute_loss, cosine_loss, infonce_loss, triplet_loss


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


def test_compute_loss_dispatch():
    assert compute_loss("triplet", Q, ORTHOGONAL, ORTHOGONAL, 0.3, 0.05).item() == pytest.approx(0.3)
    assert compute_loss("cosine", Q, ORTHOGONAL, SAME, 0.5, 0.05).item() == pytest.approx(1.5)
    assert compute_loss("infonce", Q, SAME, OPPOSITE, 0.2, 0.1).item() == pytest.approx(
        infonce_loss(Q, SAME, OPPOSITE, 0.1).item())
    with pytest.raises(ValueError, match="unknown loss"):
        compute_loss("hinge", Q, SAME, OPPOSITE, 0.2, 0.1)

"""A trained one-layer RNN tower rewritten for fast batched inference: the same vectors
(to float rounding), about half the sequential steps and none of the input projection.

Where `Encoder.forward` spends a passage batch's time on CPU: the RNN's per-step work
(two directions, one after the other, a small matrix product and a tanh per token), the
input projection of every 384-d token vector, and gathering the vectors twice more to flip
them for the backward direction. Three rewrites remove most of it, each exact in real
arithmetic:

1. The input projection of a token depends on the token alone, so it is done once per
   vocabulary row (`W_ih @ e + b_ih` for every row of the table) and looked up.
2. Both directions run as one RNN of twice the width: the input is the forward
   direction's projected tokens beside the backward one's (read in reversed order within
   each length), and the recurrent matrix is block-diagonal, so the halves never mix. The
   RNN's own input matrix is the identity.
3. Mean and max pooling do not care about order, and the backward half's last step is
   where "last" pooling reads it, so its outputs are never flipped back.

The bag of token vectors is one `embedding_bag` call (no [batch, length, dim] tensor).
Only the plain tanh RNN with one layer has this form (the default); `fuse` returns None for
any other tower, and callers keep its ordinary `forward`. Weights are copied at fuse time:
fuse again after training changes them.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn


class FusedEncoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        cfg = encoder.cfg
        self.pooling, self.hidden = cfg.pooling, cfg.hidden_dim
        rnns = [encoder.forward_rnns[0], *encoder.backward_rnns[:1]]
        width = cfg.hidden_dim * len(rnns)
        with torch.no_grad():
            table = encoder.embedding.weight.detach()
            self.register_buffer("table", table.clone())
            self.register_buffer("term_weight", encoder.term_weight.weight.detach()[:, 0].clone())
            self.register_buffer("inputs", torch.stack([table @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 for rnn in rnns]))
            self.rnn = nn.RNN(width, width, batch_first=True)
            self.rnn.weight_ih_l0.copy_(torch.eye(width))
            self.rnn.bias_ih_l0.zero_()
            self.rnn.weight_hh_l0.copy_(torch.block_diag(*(rnn.weight_hh_l0 for rnn in rnns)))
            self.rnn.bias_hh_l0.copy_(torch.cat([rnn.bias_hh_l0 for rnn in rnns]))
        self.project = copy.deepcopy(encoder.project)
        self.bidirectional = len(rnns) == 2
        self.eval()

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] (0 = padding), lengths [B] -> what `Encoder.forward` gives them."""
        lengths = lengths.clamp(min=1)
        ids = ids[:, : int(lengths.max())]
        steps = torch.arange(ids.shape[1], device=ids.device)[None, :]
        valid = steps < lengths[:, None]
        x = F.embedding(ids, self.inputs[0])
        if self.bidirectional:
            reverse = torch.where(valid, lengths[:, None] - 1 - steps, steps)
            x = torch.cat([x, F.embedding(ids.gather(1, reverse), self.inputs[1])], dim=-1)
        outputs = self.rnn(x)[0]
        if self.pooling == "last":
            pooled = outputs[torch.arange(len(ids), device=ids.device), lengths - 1]
        elif self.pooling == "mean":
            pooled = (outputs * valid[:, :, None]).sum(1) / lengths[:, None].to(outputs.dtype)
        else:
            pooled = outputs.masked_fill(~valid[:, :, None], float("-inf")).max(1).values
        weights = self.term_weight[ids] * valid
        bag = F.embedding_bag(ids, self.table, per_sample_weights=weights, mode="sum")
        bag = bag / lengths[:, None].to(bag.dtype)
        return F.normalize(bag + self.project(pooled), dim=-1)


def fuse(encoder) -> FusedEncoder | None:
    """The fused copy of a trained tower, or None where the rewrite does not hold (GRU,
    LSTM, more than one layer)."""
    if encoder is None or encoder.cfg.rnn_type != "RNN" or encoder.cfg.num_layers != 1:
        return None
    return FusedEncoder(encoder)

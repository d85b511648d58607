"""A trained one-layer RNN tower rewritten for fast batched inference: the same vectors
(to float rounding), half the sequential steps and no input projection.

Where `Encoder.forward` spends a passage batch's time on CPU: the RNN's per-step work (two
directions one after the other, a small matrix product and a tanh per token), the input
projection of every 384-d token vector, and gathering the vectors twice more to flip them
for the backward direction. Rewrites that are exact in real arithmetic remove most of it:

1. The input side of a step depends on the token alone (`W_ih @ e + b_ih + b_hh`), so it is
   computed once per vocabulary row and looked up.
2. Both directions run as one recurrence of twice the width: the forward direction's
   looked-up inputs beside the backward one's (read in reversed order within each length),
   and a block-diagonal recurrent matrix, so the halves never mix. The loop is one `addmm`
   and one `tanh` a step.
3. Mean and max pooling do not care about order, and the backward half's last step is
   where "last" pooling reads it, so its outputs are never flipped back.
4. The bag of token vectors is one `embedding_bag` (no [batch, length, dim] tensor).

On 2 cores the passage tower goes from ~3,000 to ~11,000 passages/s at batch 128
(`benchmarks/README.md`). Only the plain tanh RNN with one layer has this form (the
default); `fuse` returns None for any other tower, whose callers keep its `forward`.
Weights are copied when fusing: fuse again after training changes them.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn


class FusedEncoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.pooling = encoder.cfg.pooling
        rnns = [encoder.forward_rnns[0], *encoder.backward_rnns[:1]]
        with torch.no_grad():
            table = encoder.embedding.weight.detach()
            self.register_buffer("table", table.clone())
            self.register_buffer("term_weight", encoder.term_weight.weight.detach()[:, 0].clone())
            # Row v of direction d's part: W_ih(d) @ e_v + b_ih(d) + b_hh(d), the whole input side of a step.
            inputs = [table @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0 for rnn in rnns]
            self.register_buffer("inputs", torch.cat(inputs))  # [directions * vocab, hidden]
            self.register_buffer("recurrent", torch.block_diag(*(rnn.weight_hh_l0 for rnn in rnns)).T.contiguous())
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
        rows = ids[:, :, None]
        if self.bidirectional:  # the backward part reads each sequence reversed within its length
            reverse = torch.where(valid, lengths[:, None] - 1 - steps, steps)
            rows = torch.stack([ids, ids.gather(1, reverse) + len(self.table)], dim=-1)
        x = F.embedding(rows, self.inputs).flatten(2).transpose(0, 1).contiguous()  # [T, B, width]
        outputs = _recurrence(x, self.recurrent).transpose(0, 1)  # [B, T, width]
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


def _recurrence(x: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
    """h_t = tanh(x_t + h_(t-1) @ recurrent) over time-major x [T, B, width]: what nn.RNN
    does after its input projection, which here is already inside x (so none is run).
    A plain loop: TorchScript compiled it no faster (10.7-12.0k against 10.8-11.0k
    passages/s in alternated runs)."""
    outputs = torch.empty_like(x)
    h = torch.tanh(x[0])
    outputs[0] = h
    for t in range(1, x.shape[0]):
        h = torch.tanh(torch.addmm(x[t], h, recurrent))
        outputs[t] = h
    return outputs


def fuse(encoder) -> FusedEncoder | None:
    """The fused copy of a trained tower, or None where the rewrite does not hold (GRU,
    LSTM, more than one layer)."""
    if encoder is None or encoder.cfg.rnn_type != "RNN" or encoder.cfg.num_layers != 1:
        return None
    return FusedEncoder(encoder)

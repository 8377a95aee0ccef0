"""torch modules with the named outputs the ONNX graph exposes (imports torch)."""

from __future__ import annotations

import torch


class HiddenStates(torch.nn.Module):
    """``last_hidden_state`` [batch, sequence, hidden]."""

    output_names = ("last_hidden_state",)

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)[0]


class MaskedLMLogits(HiddenStates):
    """``logits`` [batch, sequence, vocab] of a masked-LM head (SPLADE)."""

    output_names = ("logits",)


class SequenceLogits(HiddenStates):
    """``logits`` [batch, 1] of a one-label sequence classifier (a cross-encoder reranker)."""

    output_names = ("logits",)


class M3Outputs(torch.nn.Module):
    """BGE-M3 with FlagEmbedding's heads computed in-graph.

    - ``dense`` [batch, hidden] = H[:, 0] (the Encoder L2-normalises),
    - ``sparse`` [batch, sequence] = relu(sparse_linear(H)).squeeze(-1),
    - ``colbert`` [batch, sequence - 1, d] = colbert_linear(H[:, 1:]) * mask[:, 1:, None]
      (the Encoder normalises rows and keeps the first sum(mask) - 1),
    - ``last_hidden_state`` [batch, sequence, hidden] = H (late chunking, token vectors).
    """

    output_names = ("dense", "sparse", "colbert", "last_hidden_state")

    def __init__(self, model, sparse_linear, colbert_linear) -> None:
        super().__init__()
        self.model = model
        self.sparse_linear = sparse_linear
        self.colbert_linear = colbert_linear

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        dense = h[:, 0]
        sparse = torch.relu(self.sparse_linear(h)).squeeze(-1)
        colbert = self.colbert_linear(h[:, 1:]) * attention_mask[:, 1:, None].to(h.dtype)
        return dense, sparse, colbert, h


def dynamic_axes(output_names, inputs, per_text=("dense",)) -> dict:
    """Dynamic batch / sequence axes for every input and output (``per_text`` outputs have
    no sequence axis)."""
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    for name in output_names:
        if name in per_text:
            axes[name] = {0: "batch"}
        elif name == "colbert":
            axes[name] = {0: "batch", 1: "sequence_minus_1"}
        else:
            axes[name] = {0: "batch", 1: "sequence"}
    return axes

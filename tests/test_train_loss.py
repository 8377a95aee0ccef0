"""densparse.train.info_nce against FlagEmbedding's in-batch loss and hand-computed values;
group_cross_entropy (the reranker loss) against hand-computed values and torch's cross_entropy."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training loss needs torch (densparse[train])")

from densparse.train.loss import group_cross_entropy, info_nce  # noqa: E402


def _embeddings(b: int, g: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=-1)
    p = torch.nn.functional.normalize(
        torch.randn(b * g, d, generator=gen, dtype=torch.float64), dim=-1
    )
    return q, p


def flag_in_batch_loss(q, p, temperature):
    """FlagEmbedding's AbsEmbedderModel._compute_in_batch_neg_loss, written out."""
    scores = torch.matmul(q, p.transpose(0, 1)) / temperature
    group_size = p.size(0) // q.size(0)
    target = torch.arange(scores.size(0), device=scores.device, dtype=torch.long) * group_size
    return torch.nn.CrossEntropyLoss(reduction="mean")(scores, target)


def flag_no_in_batch_loss(q, p, temperature):
    """FlagEmbedding's _compute_no_in_batch_neg_loss (local scores per group)."""
    group_size = p.size(0) // q.size(0)
    local = torch.matmul(q.unsqueeze(1), p.view(q.size(0), group_size, -1).transpose(-2, -1))
    scores = local.squeeze(1) / temperature
    target = torch.zeros(q.size(0), device=scores.device, dtype=torch.long)
    return torch.nn.CrossEntropyLoss(reduction="mean")(scores, target)


@pytest.mark.parametrize(("b", "g", "tau"), [(4, 8, 0.02), (3, 1, 0.05), (7, 3, 0.02), (1, 5, 1.0)])
def test_equals_flagembedding_in_batch(b, g, tau):
    q, p = _embeddings(b, g, 16, seed=b * 10 + g)
    ours = info_nce(q, p, temperature=tau, group_size=g)
    ref = flag_in_batch_loss(q, p, tau)
    assert abs(float(ours) - float(ref)) <= 1e-6
    # float32 too, same tolerance (relative to the loss size)
    ours32 = info_nce(q.float(), p.float(), temperature=tau, group_size=g)
    assert abs(float(ours32) - float(ref)) <= 1e-6 * max(1.0, float(ref))
    # group_size inferred from the shapes
    assert float(info_nce(q, p, temperature=tau)) == pytest.approx(float(ref), abs=1e-12)


@pytest.mark.parametrize(("b", "g"), [(4, 8), (5, 2)])
def test_equals_flagembedding_no_in_batch(b, g):
    q, p = _embeddings(b, g, 12, seed=3)
    ours = info_nce(q, p, temperature=0.02, group_size=g, in_batch=False)
    assert abs(float(ours) - float(flag_no_in_batch_loss(q, p, 0.02))) <= 1e-6


def test_hand_computed_tiny_case():
    # B = 2 queries, G = 2: passages [pos0, neg0, pos1, neg1], 2-D unit vectors.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]], dtype=torch.float64)
    tau = 0.5
    # query 0 scores: [1, .6, 0, .8] / .5 = [2, 1.2, 0, 1.6], target column 0
    # query 1 scores: [0, .8, 1, .6] / .5 = [0, 1.6, 2, 1.2], target column 2
    l0 = -2 + math.log(math.exp(2) + math.exp(1.2) + math.exp(0) + math.exp(1.6))
    l1 = -2 + math.log(math.exp(0) + math.exp(1.6) + math.exp(2) + math.exp(1.2))
    got = float(info_nce(q, p, temperature=tau, group_size=2))
    assert got == pytest.approx((l0 + l1) / 2, abs=1e-12)
    # own group only: query 0 sees [2, 1.2], query 1 sees [2, 1.2]
    own = -2 + math.log(math.exp(2) + math.exp(1.2))
    got = float(info_nce(q, p, temperature=tau, group_size=2, in_batch=False))
    assert got == pytest.approx(own, abs=1e-12)


def test_normalize_flag_and_gradient():
    q, p = _embeddings(3, 4, 8)
    q_raw = (q * torch.tensor([[2.0], [0.5], [3.0]], dtype=torch.float64)).requires_grad_(True)
    p_raw = p * 7.0
    a = info_nce(q_raw, p_raw, 0.02, 4, normalize=True)
    b = info_nce(q, p, 0.02, 4)
    assert float(a.detach()) == pytest.approx(float(b), abs=1e-10)
    a.backward()
    assert q_raw.grad is not None and torch.isfinite(q_raw.grad).all()


def test_bad_shapes():
    q, p = _embeddings(2, 3, 4)
    with pytest.raises(ValueError, match="rows"):
        info_nce(q, p, group_size=2)
    with pytest.raises(ValueError, match="multiple"):
        info_nce(q, p[:5])
    with pytest.raises(ValueError, match="dim"):
        info_nce(q, p[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, temperature=0.0)
    with pytest.raises(ValueError, match="no negative"):
        info_nce(q, p[:2], group_size=1, in_batch=False)
    with pytest.raises(TypeError):
        info_nce(np.zeros((2, 4)), p)


def test_group_cross_entropy_hand_computed():
    # 2 groups of 3 logits, the positive first: [2, 1, 0] and [0.5, 1.5, -1]
    logits = torch.tensor([2.0, 1.0, 0.0, 0.5, 1.5, -1.0], dtype=torch.float64)
    l0 = -2 + math.log(math.exp(2) + math.exp(1) + math.exp(0))
    l1 = -0.5 + math.log(math.exp(0.5) + math.exp(1.5) + math.exp(-1))
    want = (l0 + l1) / 2
    assert float(group_cross_entropy(logits, 3)) == pytest.approx(want, abs=1e-12)
    # [B*G, 1] (a sequence classifier's logits) and [B, G] give the same value
    assert float(group_cross_entropy(logits[:, None], 3)) == pytest.approx(want, abs=1e-12)
    assert float(group_cross_entropy(logits.reshape(2, 3), 3)) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("b", "g"), [(1, 2), (4, 8), (5, 3)])
def test_group_cross_entropy_equals_torch(b, g):
    gen = torch.Generator().manual_seed(b * 100 + g)
    logits = (torch.randn(b * g, 1, generator=gen) * 3).requires_grad_(True)
    ours = group_cross_entropy(logits, g)
    ref = torch.nn.functional.cross_entropy(
        logits.detach().reshape(b, g), torch.zeros(b, dtype=torch.long)
    )
    assert abs(float(ours) - float(ref)) <= 1e-6
    ours.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # raising the positive's logit lowers the loss: its gradient is negative
    assert (logits.grad.reshape(b, g)[:, 0] < 0).all()
    # fp16 logits are scored in float32
    half = group_cross_entropy(logits.detach().half(), g)
    assert half.dtype == torch.float32


def test_group_cross_entropy_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        group_cross_entropy(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="whole groups"):
        group_cross_entropy(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="shape"):
        group_cross_entropy(torch.zeros(2, 4), 3)
    with pytest.raises(ValueError, match="whole groups"):
        group_cross_entropy(torch.zeros(0), 2)
    with pytest.raises(TypeError):
        group_cross_entropy(np.zeros(4), 2)


def test_import_densparse_train_is_torch_free():
    code = (
        "import sys, densparse.train; assert 'torch' not in sys.modules, 'torch imported'; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

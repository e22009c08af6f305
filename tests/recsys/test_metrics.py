"""Top-K metrics on hand-made rankings (spec 1.4) and the masking rule."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from polymodal.recsys.metrics import evaluate_full_ranking, topk_metrics


def test_single_user_hand_computed():
    # ranking hits at ranks 1 and 3 of top-5, |T_u| = 4
    hits = np.array([[1, 0, 1, 0, 0]])
    m = topk_metrics(hits, np.array([4]), ks=[3, 5])
    assert m["recall@3"][0] == pytest.approx(2 / 4)
    assert m["precision@3"][0] == pytest.approx(2 / 3)
    assert m["hit@3"][0] == 1.0
    assert m["mrr@3"][0] == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg3 = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"][0] == pytest.approx(dcg / idcg3)
    idcg5 = idcg3 + 1 / math.log2(5)  # min(|T|=4, K=5) = 4 ideal positions
    assert m["ndcg@5"][0] == pytest.approx(dcg / idcg5)
    assert m["map@5"][0] == pytest.approx((1 / 1 + 2 / 3) / 4)
    assert m["map@3"][0] == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_recall_denominator_is_truth_size_not_min_k():
    hits = np.array([[1, 1, 0]])
    m = topk_metrics(hits, np.array([10]), ks=[3])
    assert m["recall@3"][0] == pytest.approx(2 / 10)  # not 2/3


def test_mrr_first_hit_rank_and_zero_without_hits():
    hits = np.array([[0, 0, 1, 1], [0, 0, 0, 0]])
    m = topk_metrics(hits, np.array([2, 1]), ks=[2, 4])
    assert m["mrr@4"].tolist() == pytest.approx([1 / 3, 0.0])
    assert m["mrr@2"].tolist() == [0.0, 0.0]
    assert m["hit@2"].tolist() == [0.0, 0.0]


def test_users_without_truth_are_rejected():
    with pytest.raises(ValueError, match="ground-truth"):
        topk_metrics(np.zeros((1, 3)), np.array([0]), ks=[3])


def _csr(pairs, shape):
    r, c = zip(*pairs, strict=True) if pairs else ((), ())
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=shape)


def test_full_ranking_masks_and_averages_over_users_with_truth():
    # 3 users x 6 items; scores rank item k with score k (highest last item first)
    scores = torch.tensor([[0.0, 1, 2, 3, 4, 5]] * 3)
    train = _csr([(0, 5), (1, 4)], (3, 6))
    truth = _csr([(0, 4), (1, 5)], (3, 6))  # user 2 has no truth -> not counted
    res = evaluate_full_ranking(lambda u: scores[u], truth, [train], ks=[1], metrics=["recall", "hit"])
    # user 0: item 5 masked, top-1 = item 4 (hit); user 1: top-1 = item 5 (hit)
    assert res["recall@1"] == 1.0 and res["hit@1"] == 1.0
    res_unmasked = evaluate_full_ranking(lambda u: scores[u], truth, [], ks=[1], metrics=["hit"])
    assert res_unmasked["hit@1"] == pytest.approx(0.5)  # user 0's top-1 is its train item 5


def test_chunking_does_not_change_values():
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.normal(size=(50, 30)), dtype=torch.float32)
    truth = sp.random(50, 30, density=0.1, random_state=1, format="csr")
    truth.data[:] = 1
    mask = sp.random(50, 30, density=0.2, random_state=2, format="csr")
    mask = mask - mask.multiply(truth)
    mask.eliminate_zeros()
    a = evaluate_full_ranking(lambda u: scores[u], truth, [mask], ks=[5, 10], chunk_users=7)
    b = evaluate_full_ranking(lambda u: scores[u], truth, [mask], ks=[5, 10], chunk_users=512)
    for k in a:
        assert a[k] == pytest.approx(b[k])


def test_score_fn_returning_a_shared_view_is_not_corrupted_by_masking():
    base = torch.arange(6, dtype=torch.float32)
    truth = _csr([(0, 4), (1, 3)], (2, 6))
    train = _csr([(0, 5)], (2, 6))
    # an expanded view shares one row: in-place masking of user 0 must not leak to user 1
    res = evaluate_full_ranking(lambda u: base.expand(len(u), -1), truth, [train], ks=[1], metrics=["hit"])
    assert res["hit@1"] == pytest.approx(0.5)  # user 0 hits item 4; user 1's top-1 is item 5, a miss
    assert torch.equal(base, torch.arange(6, dtype=torch.float32))

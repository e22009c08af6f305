"""Every multimodal backbone: learns on synthetic data, survives a checkpoint round trip, and takes SG-URInit on
exactly its user tables."""

import io

import numpy as np
import pytest
import torch

from polymodal.recsys.metrics import evaluate_full_ranking
from polymodal.recsys.models import FREEDOM, MMGCN, VBPR, LGMRec
from polymodal.recsys.synthetic import make_synthetic
from polymodal.recsys.train import TrainSettings, train
from polymodal.recsys.urinit import SGURInit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILDERS = {
    "vbpr": lambda d: VBPR(d.n_users, d.n_items, d.item_features),
    "freedom": lambda d: FREEDOM(d.n_users, d.n_items, d.train[:, 0], d.train[:, 1], d.item_features),
    "mmgcn": lambda d: MMGCN(d.n_users, d.n_items, d.item_features, d.train[:, 0], d.train[:, 1]),
    "lgmrec": lambda d: LGMRec(d.n_users, d.n_items, d.item_features, d.train[:, 0], d.train[:, 1]),
}
#: the state-dict entries SG-URInit may write, per backbone
USER_TABLES = {"vbpr": {"user_embedding.weight"}, "freedom": {"user_embedding.weight"},
               "mmgcn": {"gcn.image.preference", "gcn.text.preference"}, "lgmrec": {"user_embedding.weight"}}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=120, n_items=150, seed=0)


def _random_ndcg(data, seeds=3):
    gen = torch.Generator().manual_seed(0)
    vals = [evaluate_full_ranking(lambda u: torch.rand(len(u), data.n_items, generator=gen), data.valid_csr,
                                  [data.train_csr], (10,), ("ndcg",))["ndcg@10"] for _ in range(seeds)]
    return float(np.mean(vals))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_trains_beats_random_and_checkpoint_round_trip(name, data):
    torch.manual_seed(0)
    m = BUILDERS[name](data)
    res = train(m, data, TrainSettings(epochs=5, batch_size=512, lr=5e-3, quiet=True))
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert res.best_valid["ndcg@10"] > 1.5 * _random_ndcg(data)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    m2 = BUILDERS[name](data)
    m2.load_state_dict(torch.load(buf))
    users = torch.arange(data.n_users)
    assert torch.equal(m.eval().full_sort_scores(users), m2.eval().full_sort_scores(users))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sg_urinit_overwrites_only_the_user_tables(name, data):
    torch.manual_seed(0)
    m = BUILDERS[name](data)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    SGURInit(n_clusters=4, seed=0).apply(m, data)
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == USER_TABLES[name]
    assert all(torch.isfinite(v).all() for v in after.values())

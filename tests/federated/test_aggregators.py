"""Robust aggregators (spec federated.md 5.3 / 5.5 checks): hand-computed cases, GeoMed vs a brute-force minimiser,
robustness to outliers, the registry, and clear errors."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from polymodal.core.errors import ConfigError
from polymodal.federated.aggregators import (
    AGGREGATORS,
    CenteredClipping,
    bulyan,
    centered_clipping,
    coordinate_median,
    geometric_median,
    krum,
    krum_scores,
    make_aggregator,
    mean,
    multi_krum,
    trimmed_mean,
)

# five 2-d vectors; the last is an obvious outlier
G = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [10.0, -10.0]], dtype=torch.float64)


def close(actual, expected, atol=1e-12):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def test_mean_and_weighted_mean():
    close(mean(G), [13 / 5, -7 / 5])  # x: 0+1+0+2+10 = 13; y: 0+0+1+2-10 = -7
    # weights 1,1,2,0,0: x = (0 + 1 + 0) / 4, y = (0 + 0 + 2*1) / 4
    close(mean(G, weights=torch.tensor([1.0, 1.0, 2.0, 0.0, 0.0])), [0.25, 0.5])


def test_coordinate_median_odd_and_even():
    # x sorted: 0 0 1 2 10 -> 1;  y sorted: -10 0 0 1 2 -> 0
    close(coordinate_median(G), [1.0, 0.0])
    # first four: x sorted 0 0 1 2 -> (0 + 1)/2;  y sorted 0 0 1 2 -> (0 + 1)/2
    close(coordinate_median(G[:4]), [0.5, 0.5])


def test_trimmed_mean_hand_case():
    # f=1: x drops 0 and 10 -> (0 + 1 + 2)/3 = 1;  y drops -10 and 2 -> (0 + 0 + 1)/3
    close(trimmed_mean(G, 1), [1.0, 1 / 3])
    # f=2 keeps only the middle value: the median
    close(trimmed_mean(G, 2), coordinate_median(G))


def test_trimmed_mean_with_f_zero_is_the_mean():
    x = torch.randn(9, 13, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(trimmed_mean(x, 0), mean(x))


def test_krum_and_multi_krum_hand_case():
    # squared distances: d12=1 d13=1 d14=8 d15=200 | d23=2 d24=5 d25=181 | d34=5 d35=221 | d45=208
    # f=1 -> each score sums the n - f - 2 = 2 smallest distances to the others:
    #   g1: 1+1 = 2   g2: 1+2 = 3   g3: 1+2 = 3   g4: 5+5 = 10   g5: 181+200 = 381
    close(krum_scores(G, 1), [2.0, 3.0, 3.0, 10.0, 381.0])
    close(krum(G, 1), [0.0, 0.0])  # g1
    # m = n - f = 4 lowest scores: g1..g4 -> ((0+1+0+2)/4, (0+0+1+2)/4)
    close(multi_krum(G, 1), [0.75, 0.75])
    # m = 3: g1, g2, g3 -> (1/3, 1/3)
    close(multi_krum(G, 1, m=3), [1 / 3, 1 / 3])
    close(multi_krum(G, 1, m=1), krum(G, 1))


def test_bulyan_hand_case():
    x = torch.tensor(
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [4.0, 0.0], [30.0, 30.0], [-30.0, 30.0]],
        dtype=torch.float64,
    )
    # n=7, f=1: Krum scores sum the 4 smallest squared distances to others:
    #   p1: 1+1+2+16 = 20  p2: 1+1+2+9 = 13  p3: 1+1+2+17 = 21  p4: 1+1+2+10 = 14  p5: 9+10+16+17 = 52
    #   p6: 1576+1682+1741+1741 = 6740       p7: 1741+1800+1802+1861 = 7204
    close(krum_scores(x, 1), [20.0, 13.0, 21.0, 14.0, 52.0, 6740.0, 7204.0])
    # theta = n - 2f = 5 selected: p1..p5.  beta = theta - 2f = 3 values closest to the median, per coordinate:
    #   x: 0 1 0 1 4, median 1 -> closest 1, 1, 0 -> 2/3
    #   y: 0 0 1 1 0, median 0 -> closest 0, 0, 0 -> 0
    close(bulyan(x, 1), [2 / 3, 0.0])


def test_bulyan_with_f_zero_is_the_mean():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    close(bulyan(x, 0), mean(x))


def _brute_force_geometric_median(points: np.ndarray) -> np.ndarray:
    def objective(z):
        return np.linalg.norm(points - z, axis=1).sum()

    best = minimize(objective, points.mean(0), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
    return best.x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometric_median_matches_a_brute_force_minimiser(seed):
    points = np.random.default_rng(seed).normal(size=(7, 2)) * [3.0, 1.0]
    expected = _brute_force_geometric_median(points)
    got = geometric_median(torch.tensor(points)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_geometric_median_of_an_equilateral_triangle_is_its_centre():
    # the Fermat point of an equilateral triangle is its centroid (1, 1/sqrt(3))
    tri = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3)]], dtype=torch.float64)
    close(geometric_median(tri), [1.0, 1 / math.sqrt(3)], atol=1e-6)


def test_geometric_median_at_a_data_point_stays_finite():
    # with a majority at one point, the median is that point (Weiszfeld's 1/0 is smoothed by eps)
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [5.0, 0.0], [0.0, 7.0]], dtype=torch.float64)
    close(geometric_median(x), [1.0, 1.0], atol=1e-5)


def test_centered_clipping_huge_tau_is_the_mean():
    # one iteration from 0 with nothing clipped: v = 0 + mean(g_i - 0)
    close(centered_clipping(G, tau=1e9, iters=1), mean(G))


def test_centered_clipping_hand_case_and_state():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.5]], dtype=torch.float64)
    # tau=1 from 0: (3,4) has norm 5 -> (0.6, 0.8); (0, 0.5) is kept. mean = (0.3, 0.65)
    close(centered_clipping(x, tau=1.0), [0.3, 0.65])
    # from init (3, 4): diffs (0, 0) and (-3, -3.5) (norm > 1, scaled by 1/sqrt(21.25)); v = (3,4) + mean
    s = 1 / math.sqrt(21.25)
    close(centered_clipping(x, tau=1.0, init=torch.tensor([3.0, 4.0])), [3 - 1.5 * s, 4 - 1.75 * s])
    cc = CenteredClipping(tau=1.0)
    first = cc(x)
    close(first, [0.3, 0.65])
    # the second call starts at the previous aggregate (0.3, 0.65)
    close(cc(x), centered_clipping(x, tau=1.0, init=first))
    cc.reset()
    close(cc(x), [0.3, 0.65])


def test_rules_keep_dtype_device_and_shape():
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(3))
    for name in AGGREGATORS:
        out = make_aggregator(name, f=2)(x)
        assert out.shape == (5,) and out.dtype == torch.float32, name


def test_robust_rules_ignore_three_huge_outliers_out_of_ten():
    gen = torch.Generator().manual_seed(4)
    honest = 1.0 + 0.1 * torch.randn(7, 20, generator=gen, dtype=torch.float64)
    x = torch.cat([honest, torch.full((3, 20), 1e6, dtype=torch.float64)])
    honest_mean = honest.mean(0)

    def gap(v):
        return float(torch.linalg.vector_norm(v - honest_mean))

    assert gap(mean(x)) > 1e5
    for name in ("coordinate_median", "trimmed_mean", "krum", "multi_krum", "geometric_median"):
        assert gap(make_aggregator(name, f=3)(x)) < 1.0, name
    # Bulyan needs n >= 4f + 3: 15 vectors, 3 outliers
    honest15 = 1.0 + 0.1 * torch.randn(12, 20, generator=gen, dtype=torch.float64)
    x15 = torch.cat([honest15, torch.full((3, 20), -1e6, dtype=torch.float64)])
    assert float(torch.linalg.vector_norm(bulyan(x15, 3) - honest15.mean(0))) < 1.0


def test_make_aggregator_binds_f_and_options():
    close(make_aggregator("krum", f=1)(G), krum(G, 1))
    close(make_aggregator("multi_krum", f=1, m=3)(G), [1 / 3, 1 / 3])
    close(make_aggregator("coordinate_median", f=1)(G), [1.0, 0.0])  # f ignored
    close(make_aggregator("mean", f=0)(G, weights=torch.tensor([1.0, 1.0, 2.0, 0.0, 0.0])), [0.25, 0.5])
    cc = make_aggregator("centered_clipping", f=0, tau=2.0, iters=2)
    assert isinstance(cc, CenteredClipping) and cc.tau == 2.0 and cc.iters == 2


def test_make_aggregator_errors():
    with pytest.raises(ConfigError, match=r"unknown aggregator 'krumm'.*bulyan.*geometric_median"):
        make_aggregator("krumm", f=1)
    with pytest.raises(ConfigError, match=r"no option\(s\) tau.*options are: m"):
        make_aggregator("multi_krum", f=1, tau=1.0)
    with pytest.raises(ConfigError, match="f must be >= 0"):
        make_aggregator("krum", f=-1)


def test_error_messages_name_the_argument():
    with pytest.raises(ConfigError, match=r"Krum needs n > 2f \+ 2, got n=5, f=2"):
        krum(G, 2)
    with pytest.raises(ConfigError, match=r"Krum needs n > 2f \+ 2"):
        multi_krum(G, 2)
    with pytest.raises(ConfigError, match=r"m must be <= n"):
        multi_krum(G, 1, m=6)
    with pytest.raises(ConfigError, match=r"Bulyan needs n >= 4f \+ 3, got n=5, f=1"):
        bulyan(G, 1)
    with pytest.raises(ConfigError, match=r"trimmed_mean needs n > 2f"):
        trimmed_mean(G, 3)
    with pytest.raises(ConfigError, match="f must be an integer"):
        trimmed_mean(G, 1.5)
    with pytest.raises(ConfigError, match=r"vectors must have shape \(n, d\)"):
        mean(torch.zeros(3))
    with pytest.raises(ConfigError, match="floating-point"):
        coordinate_median(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match="at least 1 row"):
        geometric_median(torch.zeros(0, 2))
    with pytest.raises(ConfigError, match="torch.Tensor"):
        mean([[1.0, 2.0]])
    with pytest.raises(ConfigError, match=r"weights must have shape \(5,\)"):
        mean(G, weights=torch.ones(4))
    with pytest.raises(ConfigError, match="weights must be finite and >= 0"):
        mean(G, weights=torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ConfigError, match="tau must be a finite number > 0"):
        centered_clipping(G, tau=0.0)
    with pytest.raises(ConfigError, match=r"init must have shape \(2,\)"):
        centered_clipping(G, init=torch.zeros(3))
    with pytest.raises(ConfigError, match="eps must be a finite number > 0"):
        geometric_median(G, eps=0)


def test_speed_sanity_n20_d100k():
    # no timing assert: Krum (pairwise distances) and GeoMed (100 Weiszfeld steps at most) must simply run
    x = torch.randn(20, 100_000, generator=torch.Generator().manual_seed(5))
    assert krum(x, 4).shape == (100_000,)
    assert torch.isfinite(geometric_median(x)).all()
    assert bulyan(x, 4).shape == (100_000,)

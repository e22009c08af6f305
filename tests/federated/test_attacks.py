"""Byzantine attacks (spec federated.md 5.4 / 5.5 checks): each attack on a hand case, the uniform apply_attack
interface, label flipping, and clear errors."""

import math

import numpy as np
import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.federated.attacks import (
    ATTACKS,
    alie,
    alie_z,
    apply_attack,
    gaussian,
    ipm,
    label_flip,
    sign_flip,
    zero_gradient,
)

HONEST = torch.tensor([[1.0, 2.0], [3.0, -4.0], [0.5, 0.25]], dtype=torch.float64)
BYZ_OWN = torch.tensor([[1.0, -2.0], [0.0, 3.0]], dtype=torch.float64)


def close(actual, expected, atol=1e-12):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def std_normal_cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_zero_gradient_makes_the_sum_of_all_vectors_exactly_zero():
    # honest sum = (1 + 3 + 0.5, 2 - 4 + 0.25) = (4.5, -1.75); each of 2 Byzantine sends -(4.5, -1.75)/2
    byz = zero_gradient(HONEST, 2)
    close(byz, [[-2.25, 0.875], [-2.25, 0.875]])
    assert torch.equal(torch.cat([HONEST, byz]).sum(0), torch.zeros(2, dtype=torch.float64))
    # random vectors: zero up to rounding
    x = torch.randn(16, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    close(torch.cat([x, zero_gradient(x, 4)]).sum(0), torch.zeros(50), atol=1e-12)


def test_sign_flip_sends_minus_c_times_own_gradient():
    close(sign_flip(BYZ_OWN), [[-4.0, 8.0], [0.0, -12.0]])  # c = 4
    close(sign_flip(BYZ_OWN, c=1.0), -BYZ_OWN)


def test_ipm_sends_minus_eps_times_honest_mean():
    # honest mean = (4.5/3, -1.75/3) = (1.5, -7/12)
    close(ipm(HONEST, 2), [[-0.15, 0.7 / 12]] * 2)
    close(ipm(HONEST, 1, eps=100.0), [[-150.0, 175 / 3]])


def test_alie_z_for_n20_f4_is_the_hand_computed_quantile():
    # s = floor(20/2 + 1) - 4 = 11 - 4 = 7;  (n - s)/n = 13/20 = 0.65;  z = Phi^{-1}(0.65) = 0.3853204664
    # (tables: Phi(0.38) = 0.6480, Phi(0.39) = 0.6517 -> 0.38 + 0.01 * 0.0020/0.0037 = 0.3854)
    z = alie_z(20, 4)
    assert z == pytest.approx(0.3853204664, abs=1e-9)
    assert std_normal_cdf(z) == pytest.approx(0.65, abs=1e-12)


def test_alie_hand_case():
    honest = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    # mu = (2, 1); unbiased std: x var = (4 + 0 + 4)/2 = 4 -> 2, y -> 0
    # n = 5, f = 2: s = floor(5/2 + 1) - 2 = 1; (5 - 1)/5 = 0.8; z = Phi^{-1}(0.8) = 0.8416212336
    z = 0.8416212336
    assert alie_z(5, 2) == pytest.approx(z, abs=1e-9)
    close(alie(honest, 5, 2), [[2 - 2 * z, 1.0]] * 2, atol=1e-9)


def test_gaussian_is_seeded_and_has_variance_sigma2():
    x = torch.zeros(3, 100_000)
    a = gaussian(x, 2, generator=torch.Generator().manual_seed(7))
    b = gaussian(x, 2, generator=torch.Generator().manual_seed(7))
    c = gaussian(x, 2, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, 100_000) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # 200k draws: sample variance within ~1.5% of 30, mean within ~0.05
    assert float(a.var()) == pytest.approx(30.0, rel=0.02)
    assert abs(float(a.mean())) < 0.05
    assert float(
        gaussian(x, 1, sigma2=4.0, generator=torch.Generator().manual_seed(7)).var()
    ) == pytest.approx(4.0, rel=0.02)


def test_label_flip_torch_and_numpy():
    # C = 10: y -> 9 - y
    assert torch.equal(label_flip(torch.tensor([0, 1, 2, 9]), 10), torch.tensor([9, 8, 7, 0]))
    out = label_flip(np.array([0, 1, 2]), 3)
    assert isinstance(out, np.ndarray) and out.tolist() == [2, 1, 0]
    y = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(label_flip(label_flip(y, 7), 7), y)  # an involution
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 2\] for n_classes=3"):
        label_flip(np.array([0, 3]), 3)
    with pytest.raises(ConfigError, match="integer class ids"):
        label_flip(torch.tensor([0.0, 1.0]), 3)


def test_apply_attack_dispatches_every_name():
    assert ATTACKS == ("none", "gaussian", "sign_flip", "zero_gradient", "alie", "ipm", "label_flip")
    n = 5
    close(apply_attack("none", HONEST, BYZ_OWN, n), BYZ_OWN)
    close(apply_attack("label_flip", HONEST, BYZ_OWN, n), BYZ_OWN)  # the flip happened in the data
    close(apply_attack("sign_flip", HONEST, BYZ_OWN, n, c=2.0), -2 * BYZ_OWN)
    close(apply_attack("zero_gradient", HONEST, BYZ_OWN, n), zero_gradient(HONEST, 2))
    close(apply_attack("alie", HONEST, BYZ_OWN, n), alie(HONEST, 5, 2))
    close(apply_attack("ipm", HONEST, BYZ_OWN, n, eps=100.0), ipm(HONEST, 2, eps=100.0))
    g = apply_attack("gaussian", HONEST, BYZ_OWN, n, generator=torch.Generator().manual_seed(1), sigma2=2.0)
    close(g, gaussian(HONEST, 2, sigma2=2.0, generator=torch.Generator().manual_seed(1)))
    for name in ATTACKS:
        out = apply_attack(name, HONEST, BYZ_OWN, n, generator=torch.Generator().manual_seed(0))
        assert out.shape == BYZ_OWN.shape and out.dtype == torch.float64, name
        assert out.data_ptr() != BYZ_OWN.data_ptr(), name  # never the caller's tensor itself


def test_apply_attack_with_no_byzantine_clients_returns_an_empty_tensor():
    empty = torch.zeros(0, 2, dtype=torch.float64)
    for name in ATTACKS:
        out = apply_attack(name, HONEST, empty, 3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (0, 2), name


def test_attack_errors():
    with pytest.raises(
        ConfigError, match=r"unknown attack 'signflip'; valid names: none, gaussian, sign_flip"
    ):
        apply_attack("signflip", HONEST, BYZ_OWN, 5)
    with pytest.raises(ConfigError, match=r"attack 'sign_flip' has no option\(s\) eps; its options are: c"):
        apply_attack("sign_flip", HONEST, BYZ_OWN, 5, eps=1.0)
    with pytest.raises(ConfigError, match=r"n_total must equal n_honest \+ n_byz = 3 \+ 2, got 6"):
        apply_attack("ipm", HONEST, BYZ_OWN, 6)
    with pytest.raises(ConfigError, match="byz_own has d=3 columns but honest has d=2"):
        apply_attack("ipm", HONEST, torch.zeros(2, 3, dtype=torch.float64), 5)
    with pytest.raises(ConfigError, match="ALIE needs 0 < s < n"):
        alie_z(10, 6)  # Byzantine majority: s = 6 - 6 = 0
    with pytest.raises(ConfigError, match="at least 2 honest vectors"):
        alie(HONEST[:1], 10, 2)
    with pytest.raises(ConfigError, match="sigma2 must be >= 0"):
        gaussian(HONEST, 2, sigma2=-1.0)
    with pytest.raises(ConfigError, match="n_byz must be >= 0"):
        zero_gradient(HONEST, -1)
    with pytest.raises(ConfigError, match=r"honest must have shape \(n, d\)"):
        ipm(torch.zeros(4), 1)

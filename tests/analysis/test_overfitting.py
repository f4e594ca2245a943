"""DSR and PBO against hand-worked examples, pure noise and a planted edge."""

import math

import numpy as np
import pytest

from engine.analysis.overfitting import (
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe,
    probability_of_overfitting,
    sharpe,
)


def test_expected_max_sharpe_by_hand():
    # SR0 = sd * ((1 - g) * z(1 - 1/N) + g * z(1 - 1/(N e))), N = 10, sd = 0.05,
    # z(0.9) = 1.2815516, z(1 - 1/(10 e)) = z(0.9632121) = 1.7892418, g = 0.5772157:
    # 0.05 * (0.4227843 * 1.2815516 + 0.5772157 * 1.7892418) = 0.05 * 1.5745962 = 0.0787298
    assert expected_max_sharpe(10, 0.05) == pytest.approx(0.0787298, abs=1e-6)
    assert expected_max_sharpe(1, 0.05) == 0.0


def test_probabilistic_sharpe_by_hand():
    # normal returns: z = (0.1 - 0.0787298) * sqrt(999) / sqrt(1 + 0.5 * 0.01) = 0.670372
    # Phi(0.670372) = 0.748765
    assert probabilistic_sharpe(0.1, 0.0787298, 1000, 0.0, 3.0) == pytest.approx(0.748765, abs=1e-5)
    # skew -0.5, kurtosis 6: spread = 1 + 0.05 + 5/4 * 0.01 = 1.0625;
    # z = 0.05 * sqrt(499) / sqrt(1.0625) = 1.083564, Phi = 0.860722
    assert probabilistic_sharpe(0.1, 0.05, 500, -0.5, 6.0) == pytest.approx(0.860722, abs=1e-5)


def test_deflated_sharpe_of_a_small_series_by_hand():
    r = np.array([0.02, -0.01, 0.03, 0.0, 0.01, -0.02, 0.04, 0.01])
    # mean 0.01, sample sd sqrt(0.0028 / 7) = 0.02, SR = 0.5
    assert sharpe(r) == pytest.approx(0.5)
    # deviations 1, -2, 2, -1, 0, -3, 3, 0 (x0.01): m2 = 28/8, m3 = 0/8, m4 = 196/8
    skew, kurt = moments(r)
    assert skew == pytest.approx(0.0, abs=1e-12)
    assert kurt == pytest.approx((196 / 8) / (28 / 8) ** 2)  # 2.0
    # three trials with SR 0.5, 0.3, 0.1: sd 0.2; SR0 = 0.2 * (0.4227843 * z(2/3) + 0.5772157 *
    # z(1 - 1/(3e))) = 0.2 * (0.4227843 * 0.4307273 + 0.5772157 * 1.1619569) = 0.170561
    # z = (0.5 - 0.170561) * sqrt(7) / sqrt(1 - 0 + (2 - 1) / 4 * 0.25) = 0.845590, Phi = 0.801109
    out = deflated_sharpe(r, [0.5, 0.3, 0.1])
    assert out.benchmark == pytest.approx(0.170561, abs=1e-5)
    assert out.dsr == pytest.approx(0.801109, abs=1e-5)
    assert out.n_trials == 3 and out.n_returns == 8


def _block_returns(means: list[float]) -> list[float]:
    """Two returns per block: mean - 0.001 and mean + 0.001 (sd equal in every block)."""
    return [v for m in means for v in (m + 0.001, m - 0.001)]


def test_pbo_of_a_worked_example():
    # Four blocks of two returns, three trials. A is good in blocks 1-2 and bad in 3-4, B the
    # reverse, C steady. Halves {1,2} and {3,4} pick A (resp. B) in sample, which is the worst
    # out of sample: rank 1 of 3, w = 1/4, logit ln(1/3). The four mixed halves give A and B
    # mean 0.001 with sd 0.00258 (SR 0.387) and C the same mean with sd 0.00115 (SR 0.866):
    # C wins in sample and is best out of sample too: rank 3, w = 3/4, logit ln 3.
    # PBO = 2 / 6.
    m = np.column_stack([
        _block_returns([0.003, 0.003, -0.001, -0.001]),
        _block_returns([-0.001, -0.001, 0.003, 0.003]),
        _block_returns([0.001, 0.001, 0.001, 0.001]),
    ])
    out = probability_of_overfitting(m, n_blocks=4)
    assert out.n_splits == 6 and out.rows_per_block == 2
    assert out.pbo == pytest.approx(2 / 6)
    assert sorted(out.logits) == pytest.approx([math.log(1 / 3)] * 2 + [math.log(3)] * 4)


def test_pbo_rejects_what_it_cannot_split():
    with pytest.raises(ValueError, match="even number"):
        probability_of_overfitting(np.zeros((100, 3)), n_blocks=5)
    with pytest.raises(ValueError, match="at least two trials"):
        probability_of_overfitting(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="at least 32 periods"):
        probability_of_overfitting(np.zeros((20, 3)))


def _noise(seed: int, periods: int = 2000, trials: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(periods, trials))


def test_pure_noise_overfits_and_its_best_is_not_significant():
    pbos, dsrs = [], []
    for seed in range(5):
        m = _noise(seed)
        srs = [sharpe(m[:, j]) for j in range(m.shape[1])]
        best = int(np.argmax(srs))
        pbos.append(probability_of_overfitting(m, n_blocks=10).pbo)
        dsrs.append(deflated_sharpe(m[:, best], srs).dsr)
        # the best of 30 looks good on its own (undeflated PSR against 0) ...
        assert probabilistic_sharpe(srs[best], 0.0, m.shape[0], *moments(m[:, best])) > 0.9
    assert np.mean(pbos) > 0.35  # about one half in expectation
    assert max(dsrs) < 0.95      # ... but not once deflated for the 30 trials


def test_a_planted_edge_is_significant_and_not_overfit():
    m = _noise(7)
    m[:, 4] += 0.002  # SR 0.2 a period over 2000 periods, far above the best of 30 noise trials
    srs = [sharpe(m[:, j]) for j in range(m.shape[1])]
    assert int(np.argmax(srs)) == 4
    out = deflated_sharpe(m[:, 4], srs)
    assert out.dsr > 0.99
    assert probability_of_overfitting(m, n_blocks=10).pbo < 0.05

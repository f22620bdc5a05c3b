"""Known-answer tests for rlkit.attacks.stealth."""

from __future__ import annotations

import inspect
import itertools
import json

import numpy as np
import pytest

from rlkit.attacks.stealth import (
    PAPER_STEALTH,
    PROCEDURES,
    FeatureKS,
    FirstDiffResult,
    MMDResult,
    SplitNullResult,
    first_difference_check,
    first_difference_mmd,
    hour_split_null,
    ks_per_feature,
    median_heuristic,
    mmd_test,
    null_splits,
    paper_mmd_test,
    split_by_day_null,
    stealth_report,
)


# --------------------------------------------------------------------------- #
# brute-force references
# --------------------------------------------------------------------------- #
def _ref_kernel(z: np.ndarray, sigma: float) -> np.ndarray:
    n = z.shape[0]
    k = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            k[i, j] = np.exp(-np.sum((z[i] - z[j]) ** 2) / (2 * sigma**2))
    return k


def _ref_sigma(z: np.ndarray) -> float:
    n = z.shape[0]
    d = [np.linalg.norm(z[i] - z[j]) for i in range(n) for j in range(i + 1, n)]
    return float(np.median(d))


def _ref_mmd2(k: np.ndarray, xi: np.ndarray, yi: np.ndarray) -> float:
    return k[np.ix_(xi, xi)].mean() + k[np.ix_(yi, yi)].mean() - 2 * k[np.ix_(xi, yi)].mean()


# --------------------------------------------------------------------------- #
# MMD
# --------------------------------------------------------------------------- #
def test_mmd_matches_bruteforce_same_permutations() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 2))
    y = rng.normal(size=(5, 2)) + 0.7
    perms, seed = 300, 11
    res = mmd_test(x, y, permutations=perms, seed=seed)

    z = np.concatenate([x, y])
    sigma = _ref_sigma(z)
    k = _ref_kernel(z, sigma)
    n, big_n = 6, 11
    obs = _ref_mmd2(k, np.arange(n), np.arange(n, big_n))
    # documented permutation scheme: X = the n smallest of rng.random(N), one draw per perm
    prng = np.random.default_rng(seed)
    count = 0
    for _ in range(perms):
        order = np.argsort(prng.random(big_n))
        if _ref_mmd2(k, order[:n], order[n:]) >= obs - 1e-12:
            count += 1
    assert res.bandwidth == pytest.approx(sigma, rel=1e-12)
    assert res.mmd2 == pytest.approx(obs, rel=1e-10, abs=1e-14)
    assert res.p_value == pytest.approx((count + 1) / (perms + 1), abs=1e-15)
    assert (res.n_x, res.n_y, res.permutations) == (6, 5, perms)


def test_mmd_p_value_close_to_exhaustive_enumeration() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3))
    y = rng.normal(size=(4, 3)) + 0.8
    z = np.concatenate([x, y])
    k = _ref_kernel(z, _ref_sigma(z))
    obs = _ref_mmd2(k, np.arange(4), np.arange(4, 8))
    splits = list(itertools.combinations(range(8), 4))
    stats = [_ref_mmd2(k, np.array(s), np.array(sorted(set(range(8)) - set(s)))) for s in splits]
    exact = np.mean(np.asarray(stats) >= obs - 1e-12)  # 70 equally likely splits
    res = mmd_test(x, y, permutations=20_000, seed=1)
    assert res.p_value == pytest.approx(exact, abs=0.015)


def test_mmd_identical_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    same = mmd_test(x, x.copy(), permutations=200)
    assert same.mmd2 == 0.0
    assert same.p_value == 1.0

    y = rng.normal(size=(30, 4)) + 0.3
    a = mmd_test(x, y, permutations=500, seed=2)
    b = mmd_test(y, x, permutations=500, seed=2)
    assert a.mmd2 == pytest.approx(b.mmd2, rel=1e-12)
    assert a.bandwidth == pytest.approx(b.bandwidth, rel=1e-12)
    assert a.mmd2 > 0


def test_mmd_detects_one_sd_shift() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = rng.normal(size=(200, 5))
    y[:, 0] += 1.0
    res = mmd_test(x, y, permutations=500)
    assert res.p_value < 0.01
    assert res.p_value >= 1 / 501  # +1 correction: never 0


def test_mmd_p_values_uniform_under_null() -> None:
    rng = np.random.default_rng(2024)
    p = np.array(
        [
            mmd_test(
                rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), permutations=200, seed=i
            ).p_value
            for i in range(200)
        ]
    )
    assert 0.01 <= np.mean(p < 0.05) <= 0.12
    assert 0.4 <= p.mean() <= 0.6
    assert np.all((p > 0) & (p <= 1))


def test_mmd_options() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2))
    y = rng.normal(size=(60, 2))
    fixed = mmd_test(x, y, permutations=50, bandwidth=2.5)
    assert fixed.bandwidth == 2.5
    sub = mmd_test(x, y, permutations=50, max_samples=20)
    assert (sub.n_x, sub.n_y) == (20, 20)
    # deterministic subsample: evenly spaced rows floor(k * n / max_samples)
    ref = mmd_test(x[(np.arange(20) * 50) // 20], y[(np.arange(20) * 60) // 20], permutations=50)
    assert sub.mmd2 == ref.mmd2 and sub.p_value == ref.p_value
    assert mmd_test(x, y, permutations=50, seed=7) == mmd_test(x, y, permutations=50, seed=7)
    unb = mmd_test(x, x, permutations=50, estimator="unbiased")
    assert unb.mmd2 < 0 and unb.estimator == "unbiased"
    assert isinstance(fixed, MMDResult)
    json.dumps(fixed.to_dict())
    with pytest.raises(ValueError):
        mmd_test(x, y[:, :1])
    with pytest.raises(ValueError):
        mmd_test(x, y, permutations=0)
    with pytest.raises(ValueError):
        mmd_test(x, y, bandwidth=0.0)


def test_median_heuristic_definition() -> None:
    z = np.array([[0.0], [0.0], [0.0], [1.0]])  # pair distances 0,0,0,1,1,1
    assert median_heuristic(z) == pytest.approx(0.5)
    z = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0]])  # distances 5, 8, 5
    assert median_heuristic(z) == pytest.approx(5.0)
    assert median_heuristic(np.zeros((4, 2))) == 1.0  # degenerate fallback


# --------------------------------------------------------------------------- #
# split-by-day null
# --------------------------------------------------------------------------- #
def test_split_by_day_null_iid_days() -> None:
    rng = np.random.default_rng(8)
    obs = rng.normal(size=(30 * 24, 3))
    res = split_by_day_null(obs, 24, repeats=40, permutations=200, seed=3)
    assert isinstance(res, SplitNullResult)
    assert len(res.p_values) == 40 and len(res.mmd2) == 40
    assert all(0.0 < p <= 1.0 for p in res.p_values)
    assert res.mean_p > 0.2
    assert res.n_days == 30 and res.n_samples == 720
    assert 0.0 <= res.fraction_below(0.05) <= 1.0
    again = split_by_day_null(obs, 24, repeats=40, permutations=200, seed=3)
    assert again.p_values == res.p_values
    json.dumps(res.to_dict())


def test_split_by_day_null_matches_mmd_test_on_one_split() -> None:
    """The observed statistic of a split equals mmd_test on the same two halves."""
    rng = np.random.default_rng(9)
    obs = rng.normal(size=(4 * 6, 2))
    res = split_by_day_null(obs, 6, repeats=1, permutations=20, seed=0)
    days = np.split(obs, 4)
    cands = []
    for pair in itertools.combinations(range(4), 2):
        rest = [d for d in range(4) if d not in pair]
        x = np.concatenate([days[d] for d in pair])
        y = np.concatenate([days[d] for d in rest])
        cands.append(mmd_test(x, y, permutations=1, bandwidth=res.bandwidth).mmd2)
    assert min(abs(c - res.mmd2[0]) for c in cands) < 1e-12


def test_split_by_day_null_partial_day_subsample_and_errors() -> None:
    rng = np.random.default_rng(10)
    obs = rng.normal(size=(10 * 24 + 7, 2))  # trailing partial day
    res = split_by_day_null(obs, 24, repeats=10, permutations=50)
    assert res.n_days == 11
    sub = split_by_day_null(obs, 24, repeats=10, permutations=50, max_samples=50)
    assert sub.n_samples <= 2 * 50 + 11
    with pytest.raises(ValueError):
        split_by_day_null(obs[:20], 24)


# --------------------------------------------------------------------------- #
# KS
# --------------------------------------------------------------------------- #
def test_ks_per_feature() -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(size=(300, 3))
    x[:, 2] = 5.0
    same = ks_per_feature(x, x.copy(), feature_names=["a", "b", "c"])
    assert [r.feature for r in same] == ["a", "b", "c"]
    assert all(isinstance(r, FeatureKS) for r in same)
    assert all(r.p_value == 1.0 and r.statistic == 0.0 for r in same)

    y = rng.normal(size=(300, 3))
    y[:, 0] += 1.0
    y[:, 2] = 5.0
    res = ks_per_feature(x, y)
    assert [r.feature for r in res] == ["f0", "f1", "f2"]
    assert res[0].p_value < 1e-6
    assert res[1].p_value > 1e-3
    assert (res[2].statistic, res[2].p_value) == (0.0, 1.0)  # constant in both
    y[:, 2] = 6.0  # constant but different: a real difference
    assert ks_per_feature(x, y)[2].p_value < 1e-6


# --------------------------------------------------------------------------- #
# first differences
# --------------------------------------------------------------------------- #
def test_first_difference_known_counts() -> None:
    clean = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 2.0]])  # max |diff| = [1, 2]
    attacked = np.array(
        [[0.0, 0.0], [1.5, 0.0], [1.5, 1.0], [1.5, 4.0], [0.5, 2.0], [2.0, 6.0]]
    )  # |diff| = [1.5,0] [0,1] [0,3] [1,2] [1.5,4]
    res = first_difference_check(clean, attacked, feature_names=["p", "q"])
    assert isinstance(res, FirstDiffResult)
    assert res.n_steps == 5
    assert res.exceedances == [2, 2]
    assert res.n_steps_exceeding == 3
    assert res.fraction_within == pytest.approx(2 / 5)
    assert res.steps_by_n_exceeded == [2, 2, 1]
    assert res.clean_max == [1.0, 2.0]
    assert res.attacked_max == [1.5, 4.0]
    assert res.exceedances_by_feature() == {"p": 2, "q": 2}
    assert first_difference_check(clean, clean).fraction_within == 1.0
    loose = first_difference_check(clean, attacked, atol=0.5)
    assert loose.exceedances == [0, 2]


def test_first_difference_episode_boundaries() -> None:
    ep1 = np.array([[0.0], [0.5], [1.0]])
    ep2 = np.array([[10.0], [10.5], [11.0]])  # the 1.0 -> 10.0 jump is a reset, not a step
    joined = np.concatenate([ep1, ep2])
    res = first_difference_check([ep1, ep2], [ep1, ep2])
    assert res.clean_max == [0.5]
    assert res.n_steps == 4 and res.fraction_within == 1.0
    # the clean reference must not pick up the boundary jump either
    res2 = first_difference_check([ep1, ep2], joined)
    assert res2.n_steps == 5 and res2.exceedances == [1]
    # (E, T, F) arrays are episodes too
    res3 = first_difference_check(np.stack([ep1, ep2]), np.stack([ep1, ep2]))
    assert res3.n_steps == 4 and res3.clean_max == [0.5]


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #
def test_stealth_report_json() -> None:
    rng = np.random.default_rng(13)
    clean = rng.normal(size=(10 * 24, 3))
    attacked = clean + rng.uniform(-0.03, 0.03, size=clean.shape)
    rep = stealth_report(
        clean,
        attacked,
        feature_names=["load", "solar", "price"],
        steps_per_day=24,
        permutations=200,
        null_repeats=20,
    )
    text = json.dumps(rep, allow_nan=False)
    back = json.loads(text)
    assert back["detected"] is False and back["mmd"]["detected"] is False
    assert back["mmd_p_value"] > 0.05
    assert back["ks"]["n_significant"] == 0
    assert len(back["ks"]["features"]) == 3
    assert 0.0 <= back["first_difference"]["fraction_within"] <= 1.0
    assert len(back["null"]["p_values"]) == 20

    shifted = stealth_report(clean, clean + 1.0, permutations=200)
    json.dumps(shifted, allow_nan=False)
    assert shifted["detected"] is True
    assert shifted["null"] is None
    assert shifted["ks"]["n_significant"] == 3
    assert shifted["first_difference"]["fraction_within"] == 1.0  # a constant offset keeps diffs


# --------------------------------------------------------------------------- #
# block (day) permutations
# --------------------------------------------------------------------------- #
def _correlated_days(n_days: int, seed: int, shift: float = 0.0) -> list[np.ndarray]:
    """Days whose steps share a random day-level offset: rows within a day are dependent."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 1, (1, 4)) + 0.2 * rng.normal(0, 1, (24, 4)) + shift for _ in range(n_days)
    ]


def test_block_permutation_keeps_the_test_calibrated_on_dependent_rows():
    x, y = np.concatenate(_correlated_days(16, 1)), np.concatenate(_correlated_days(16, 2))
    days = np.repeat(np.arange(16), 24)
    rowwise = mmd_test(x, y, permutations=400, seed=0)
    blockwise = mmd_test(x, y, permutations=400, seed=0, x_blocks=days, y_blocks=days)
    assert rowwise.p_value < 0.01  # same distribution, yet rows are not exchangeable
    assert blockwise.p_value > 0.05
    assert blockwise.mmd2 == pytest.approx(rowwise.mmd2)


def test_block_permutation_still_detects_a_shift():
    x, y = (
        np.concatenate(_correlated_days(16, 1)),
        np.concatenate(_correlated_days(16, 3, shift=2.0)),
    )
    days = np.repeat(np.arange(16), 24)
    assert mmd_test(x, y, permutations=400, x_blocks=days, y_blocks=days).p_value < 0.01


def test_one_row_blocks_equal_row_permutations_in_distribution():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 3)), rng.normal(0.3, 1, size=(30, 3))
    rows = mmd_test(x, y, permutations=2000, seed=1).p_value
    blocks = mmd_test(
        x, y, permutations=2000, seed=1, x_blocks=np.arange(30), y_blocks=np.arange(30)
    ).p_value
    assert abs(rows - blocks) < 0.05


def test_block_labels_are_checked():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="both"):
        mmd_test(x, x + 1, x_blocks=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="one label per row"):
        mmd_test(x, x + 1, x_blocks=[0, 1], y_blocks=[0, 0, 1, 1])


def test_blockwise_null_is_calibrated_where_the_rowwise_one_is_not():
    days = _correlated_days(24, 7)
    rowwise = split_by_day_null(days, 24, repeats=20, permutations=200, seed=0)
    blockwise = split_by_day_null(days, 24, repeats=20, permutations=200, seed=0, blockwise=True)
    assert rowwise.mean_p < 0.05
    assert blockwise.mean_p > 0.2


def test_stealth_report_with_day_blocks():
    clean = _correlated_days(12, 1)
    report = stealth_report(
        clean,
        [d + 0.01 for d in clean],
        steps_per_day=24,
        permutations=200,
        block_steps=24,
        null_repeats=10,
    )
    assert report["mmd_p_value"] > 0.05 and report["null"]["mean_p"] > 0.2
    json.dumps(report, allow_nan=False)


def _day_pairs(
    n_days: int, seed: int, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean and 'attacked' copies of the same days: same day offset, fresh within-day noise."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 1, (n_days, 1, 4))
    clean = offsets + 0.2 * rng.normal(0, 1, (n_days, 24, 4))
    other = offsets + 0.2 * rng.normal(0, 1, (n_days, 24, 4)) + shift
    return clean.reshape(-1, 4), other.reshape(-1, 4), np.repeat(np.arange(n_days), 24)


def test_paired_days_are_calibrated_under_the_null():
    p_values = []
    for seed in range(20):
        x, y, days = _day_pairs(12, seed)
        p_values.append(
            mmd_test(
                x, y, permutations=200, seed=seed, x_blocks=days, y_blocks=days, paired=True
            ).p_value
        )
    assert np.mean(np.asarray(p_values) < 0.05) <= 0.2
    assert np.mean(p_values) > 0.3


def test_paired_days_detect_a_shift_that_unpaired_days_miss():
    x, y, days = _day_pairs(16, 1, shift=0.15)
    unpaired = mmd_test(x, y, permutations=400, x_blocks=days, y_blocks=days).p_value
    paired = mmd_test(x, y, permutations=400, x_blocks=days, y_blocks=days, paired=True).p_value
    assert paired < 0.01 < unpaired


def test_paired_blocks_need_matching_labels():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="same block labels"):
        mmd_test(x, x + 1, x_blocks=[0, 0, 1, 1], y_blocks=[0, 0, 2, 2], paired=True)


# --------------------------------------------------------------------------- #
# the authors' procedure (torchdrift 0.1.0.post1 kernel_mmd, MMD baseline.py)
# --------------------------------------------------------------------------- #
def _torchdrift_kernel_mmd(
    x: np.ndarray, y: np.ndarray, n_perm: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """torchdrift's ``kernel_mmd(x, y, n_perm, kernel=GaussianKernel())`` line by line in numpy
    (``torch.randperm`` -> ``rng.permutation``); returns (mmd, p_val, lengthscale)."""
    n, d = x.shape
    m, d2 = y.shape
    assert d == d2, "feature dimension mismatch"
    xy = np.concatenate([x, y], axis=0)
    dists = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))  # torch.cdist, p=2
    # GaussianKernel()(dists): lengthscale = dists.median(), torch's lower median
    lengthscale = np.sort(dists.ravel())[(dists.size - 1) // 2]
    k = np.exp((-0.5 / lengthscale**2) * dists**2)
    k_x = k[:n, :n]
    k_y = k[n:, n:]
    k_xy = k[:n, n:]
    mmd = k_x.sum() / (n * (n - 1)) + k_y.sum() / (m * (m - 1)) - 2 * k_xy.sum() / (n * m)
    count = 0
    for _ in range(n_perm):
        pi = rng.permutation(n + m)
        k = k[pi][:, pi]
        k_x = k[:n, :n]
        k_y = k[n:, n:]
        k_xy = k[:n, n:]
        mmd_0 = k_x.sum() / (n * (n - 1)) + k_y.sum() / (m * (m - 1)) - 2 * k_xy.sum() / (n * m)
        count = count + (mmd_0 > mmd)
    p_val = count / n_perm
    return float(mmd), float(p_val), float(lengthscale)


@pytest.mark.parametrize(("n", "m", "shift", "seed"), [(12, 10, 0.0, 0), (15, 18, 0.6, 5)])
def test_paper_mmd_test_equals_a_transcription_of_torchdrift(n, m, shift, seed) -> None:
    rng = np.random.default_rng(100 + seed)
    x = rng.normal(size=(n, 3))
    y = rng.normal(size=(m, 3)) + shift
    mmd, p, lengthscale = _torchdrift_kernel_mmd(x, y, 300, np.random.default_rng(seed))
    res = paper_mmd_test(x, y, permutations=300, seed=seed)
    assert res.p_value == p
    assert res.mmd2 == pytest.approx(mmd, rel=1e-10)
    assert res.bandwidth == pytest.approx(lengthscale, rel=1e-12)
    assert (res.estimator, res.bandwidth_rule, res.p_value_rule) == (
        "torchdrift",
        "torchdrift",
        "torchdrift",
    )
    assert res == mmd_test(x, y, permutations=300, seed=seed, **PROCEDURES["paper"])


def test_paper_defaults() -> None:
    assert inspect.signature(paper_mmd_test).parameters["permutations"].default == 10_000
    null = inspect.signature(hour_split_null).parameters
    assert (null["steps_per_day"].default, null["repeats"].default) == (24, 80)
    assert null["permutations"].default == 10_000
    assert inspect.signature(first_difference_mmd).parameters["procedure"].default == "paper"
    assert PAPER_STEALTH["null_split"] == "hours" and PAPER_STEALTH["max_samples"] is None


def test_torchdrift_p_value_can_be_zero_and_counts_strictly() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 2.0
    assert paper_mmd_test(x, y, permutations=200).p_value == 0.0
    assert mmd_test(x, y, permutations=200).p_value == 1 / 201


def test_torchdrift_median_is_the_lower_median_of_the_whole_matrix() -> None:
    z = np.array([[0.0], [1.0], [3.0]])  # matrix entries 0,0,0,1,1,2,2,3,3; pairs 1,2,3
    assert median_heuristic(z, "torchdrift") == pytest.approx(1.0)
    assert median_heuristic(z) == pytest.approx(2.0)
    z = np.array([[0.0], [1.0]])  # entries 0,0,1,1: lower median 0 -> positive-mean fallback
    assert median_heuristic(z, "torchdrift") == pytest.approx(1.0)


def test_hour_split_null_equals_a_transcription_of_mmd_baseline() -> None:
    rng = np.random.default_rng(21)
    obs = rng.normal(size=(3 * 24 + 17, 2))  # three days and a partial one (17 hours)
    repeats, perms, seed = 3, 100, 4
    res = hour_split_null(
        obs, repeats=repeats, permutations=perms, seed=seed, share_reference=False
    )
    # MMD baseline.py, with numpy generators for pandas' and torch's
    split_ss, perm_ss = np.random.SeedSequence(seed).spawn(2)
    split_rng, perm_rng = np.random.default_rng(split_ss), np.random.default_rng(perm_ss)
    samples_per_day = 24
    mmds, p_values = [], []
    for _ in range(repeats):
        df1, df2 = [], []
        for i in range(0, len(obs), samples_per_day):
            daily_samples = obs[i : i + samples_per_day]
            daily_samples = daily_samples[
                split_rng.permutation(len(daily_samples))
            ]  # sample(frac=1)
            df1.append(daily_samples[: samples_per_day // 2])
            df2.append(daily_samples[samples_per_day // 2 :])
        mmd, p, lengthscale = _torchdrift_kernel_mmd(
            np.concatenate(df1), np.concatenate(df2), perms, perm_rng
        )
        mmds.append(mmd)
        p_values.append(p)
    assert res.p_values == p_values
    assert res.mmd2 == pytest.approx(mmds, rel=1e-10)
    assert res.bandwidth == pytest.approx(lengthscale, rel=1e-12)
    assert (res.split, res.n_days, res.n_samples, res.permutations) == ("hours", 4, 89, perms)


def test_hour_split_puts_half_of_every_day_in_each_half() -> None:
    obs = np.random.default_rng(0).normal(size=(5 * 24 + 7, 3))  # five days and 7 hours
    splits = null_splits(obs, 24, split="hours", repeats=4, seed=2)
    assert len(splits) == 4
    for x_rows, y_rows in splits:
        assert np.array_equal(np.sort(np.concatenate([x_rows, y_rows])), np.arange(len(obs)))
        x_days = np.bincount(x_rows // 24, minlength=6)
        y_days = np.bincount(y_rows // 24, minlength=6)
        assert list(x_days) == [12] * 5 + [7] and list(y_days) == [12] * 5 + [0]
    assert not np.array_equal(splits[0][0], splits[1][0])
    # the same seed draws the same halves that split_by_day_null tests
    assert all(
        np.array_equal(a, b)
        for s, t in zip(splits, null_splits(obs, 24, repeats=4, seed=2), strict=True)
        for a, b in zip(s, t, strict=True)
    )
    for x_rows, y_rows in null_splits(obs, 24, split="days", repeats=4, seed=2):
        x_days, y_days = set(x_rows // 24), set(y_rows // 24)
        assert not x_days & y_days and len(x_days) == 3 and len(y_days) == 3
        assert all(
            np.count_nonzero(x_rows // 24 == d) == min(24, len(obs) - 24 * d) for d in x_days
        )


def test_hour_split_null_with_shared_reference_and_subsampling() -> None:
    days = _correlated_days(24, 7)  # rows within a day are dependent
    by_days = split_by_day_null(days, 24, repeats=20, permutations=200, seed=0)
    by_hours = split_by_day_null(days, 24, repeats=20, permutations=200, seed=0, split="hours")
    assert by_days.mean_p < 0.05  # whole days to each half: the row test rejects
    assert by_hours.mean_p > 0.3 and by_hours.split == "hours"  # every day in both halves
    paper = hour_split_null(days, repeats=5, permutations=100, max_samples=120)
    assert paper.n_samples == 24 * 10 and paper.split == "hours"
    assert len(paper.p_values) == 5 and all(0.0 <= p <= 1.0 for p in paper.p_values)
    with pytest.raises(ValueError, match="blockwise"):
        split_by_day_null(days, 24, split="hours", blockwise=True)
    with pytest.raises(ValueError, match="split"):
        split_by_day_null(days, 24, split="weeks")  # type: ignore[arg-type]


@pytest.mark.parametrize("perturbation", ["shuffle", "alternating"])
def test_first_difference_mmd_detects_broken_smoothness(perturbation) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(10 * 24)
    clean = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], axis=1)
    clean += 0.02 * rng.normal(size=clean.shape)
    if perturbation == "shuffle":  # exactly the same rows, in a random order
        attacked = clean[rng.permutation(len(clean))]
    else:  # +-0.1 on alternate steps: marginals barely move, every step jumps
        attacked = clean + 0.1 * ((-1.0) ** t)[:, None]
    plain = paper_mmd_test(clean, attacked, permutations=500)
    diff = first_difference_mmd(clean, attacked, permutations=500)
    assert plain.p_value > 0.05
    assert diff.p_value < 0.05
    assert (diff.n_x, diff.n_y) == (len(t) - 1, len(t) - 1)
    rlkit = first_difference_mmd(clean, attacked, permutations=500, procedure="rlkit")
    assert rlkit.p_value < 0.05 and rlkit.estimator == "biased"
    # differences are taken within episodes
    halves = first_difference_mmd(
        [clean[:120], clean[120:]], [attacked[:120], attacked[120:]], permutations=10
    )
    assert (halves.n_x, halves.n_y) == (len(t) - 2, len(t) - 2)


def test_stealth_report_with_the_paper_procedure() -> None:
    rng = np.random.default_rng(13)
    t = np.arange(8 * 24)
    clean = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], axis=1)
    clean += 0.02 * rng.normal(size=clean.shape)
    attacked = clean + 0.1 * ((-1.0) ** t)[:, None]
    options = {**PAPER_STEALTH, "permutations": 200, "null_repeats": 4}
    rep = stealth_report(clean, attacked, steps_per_day=24, **options)
    back = json.loads(json.dumps(rep, allow_nan=False))
    assert back["procedure"] == "paper" and back["mmd"]["estimator"] == "torchdrift"
    assert back["mmd"]["n_x"] == 8 * 24  # all rows
    assert back["null"]["split"] == "hours" and len(back["null"]["p_values"]) == 4
    assert back["first_difference_mmd"]["detected"] is True
    assert back["mmd_p_value"] == paper_mmd_test(clean, attacked, permutations=200).p_value
    default = stealth_report(clean, attacked, permutations=50)
    assert default["first_difference_mmd"] is None and default["procedure"] == "rlkit"
    with pytest.raises(ValueError, match="procedure"):
        stealth_report(clean, attacked, procedure="authors")  # type: ignore[arg-type]

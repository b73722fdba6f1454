"""Estimators from full logits (COT, MaNo, nuclear norm, agreement-on-the-line), each against a
transcription of its authors' formulation on synthetic logits, to 1e-6."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.stats import linregress, norm

from iqa_lib.analysis.prior import logit_estimators as le
from iqa_lib.analysis.prior.estimators import cot_exact_error, label_marginal


def synthetic_logits(n: int, k: int, seed: int, scale: float = 2.0, signal: float = 6.0) -> np.ndarray:
    """float16 logits (the contract's dtype) with a true class boosted in most rows."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    z[np.arange(n), rng.integers(0, k, n)] += signal * rng.random(n)
    return z.astype(np.float16)


def torch64():
    return pytest.importorskip("torch")


def pot():
    """POT without its torch/jax/tf/cupy backends (importing torch alone takes seconds)."""
    for backend in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{backend}", "1")
    return pytest.importorskip("ot", reason="POT (pip install POT) is needed to check exact COT")


# --------------------------------------------------------------------------- MaNo


def official_mano(logits: np.ndarray, delta: float, norm_type: int = 4) -> float:
    """Transcription of MaNo's official ``algs/mano.py`` (evaluate + scaling_method) on one
    batch holding every row, in float64."""
    torch = torch64()
    outputs = torch.as_tensor(logits.astype(np.float64))
    if delta > 5:
        outputs = torch.softmax(outputs, dim=1)
    else:
        outputs = outputs + 1 + outputs ** 2 / 2
        min_value = torch.min(outputs, 1, keepdim=True)[0].expand_as(outputs)
        outputs = torch.nn.functional.normalize(outputs - min_value, dim=1, p=1)
    score = torch.norm(outputs, p=norm_type) / ((outputs.shape[0] * outputs.shape[1]) ** (1 / norm_type))
    return float(score)


def official_criterion(logits: np.ndarray) -> float:
    """MaNo's ``uniform_cross_entropy``: cross-entropy of the logits to a uniform target."""
    torch = torch64()
    z = torch.as_tensor(logits.astype(np.float64))
    target = torch.ones_like(z) / z.shape[1]
    return float(torch.nn.functional.cross_entropy(z, target))


@pytest.mark.parametrize(("k", "scale"), [(1000, 2.0), (10, 0.3), (10, 3.0)])
def test_mano_matches_the_official_code_in_both_regimes(monkeypatch, k, scale):
    monkeypatch.setattr(le, "CHUNK", 37)  # many chunks, a ragged last one
    z = synthetic_logits(300, k, seed=k, scale=scale)
    stats = le.group_stats(z, [np.arange(300)])
    delta = official_criterion(z)
    assert stats.criterion_sum[0] / 300 == pytest.approx(delta, abs=1e-9)
    score, use_softmax = stats.mano(np.array([True]))
    assert use_softmax == (delta > 5)
    assert score[0] == pytest.approx(official_mano(z, delta), abs=1e-9)
    assert stats.mano_taylor[0] == pytest.approx(official_mano(z, 0.0), abs=1e-9)
    assert stats.mano_softmax[0] == pytest.approx(official_mano(z, 10.0), abs=1e-9)


def test_mano_criterion_never_picks_taylor_for_1000_classes():
    """-(1/K) sum log softmax >= log K (Jensen): with ImageNet's 1000 classes MaNo is always softmax."""
    z = synthetic_logits(50, 1000, seed=1, scale=0.0, signal=0.0)
    assert le.mano_criterion(z.astype(np.float64)).min() == pytest.approx(math.log(1000))


# --------------------------------------------------------------------------- nuclear norm


@pytest.mark.parametrize(("n", "k"), [(500, 40), (25, 60)])
def test_nuclear_norm_matches_the_formula_on_the_whole_matrix(monkeypatch, n, k):
    monkeypatch.setattr(le, "CHUNK", 64)
    z = synthetic_logits(n, k, seed=n)
    p = np.exp(z.astype(np.float64) - z.astype(np.float64).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = np.linalg.svd(p, compute_uv=False).sum() / math.sqrt(n * min(n, k))  # Deng et al.
    assert le.group_stats(z, [np.arange(n)]).nuclear[0] == pytest.approx(expected, abs=1e-9)


def test_nuclear_norm_bounds():
    """One-hot rows spread over every class reach the bound (1); N >= K identical uniform rows,
    a rank-one sqrt(N) sqrt(1/K) matrix, fall to 1/K."""
    k = 8
    hot = np.full((4 * k, k), -30.0, np.float16)
    hot[np.arange(4 * k), np.arange(4 * k) % k] = 30
    assert le.nuclear_norm_score(le.chunks(hot), k) == pytest.approx(1.0, abs=1e-6)
    same = np.zeros((4 * k, k), np.float16)
    assert le.nuclear_norm_score(le.chunks(same), k) == pytest.approx(1 / k, abs=1e-9)


# --------------------------------------------------------------------------- COT


def official_cot(probs: np.ndarray, labels: np.ndarray) -> float:
    """Transcription of COT's official ``run_estimation.py`` (one batch): one-hot labels drawn
    from the label distribution, cost cdist(one-hot, softmax, p=1) / 2, uniform weights,
    ``ot.emd``; the estimate is the mean per-row cost of the plan."""
    ot = pot()
    onehot = np.eye(probs.shape[1])[labels]
    m = np.abs(onehot[:, None, :] - probs[None, :, :]).sum(-1) / 2
    plan = ot.emd(np.array([]), np.array([]), m, numItermax=10**8)
    return float((plan * m.shape[0] * m).sum(1).mean())


def softmax64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_cot_matches_the_official_code():
    """With labels whose counts are n times the marginal, the authors' n x n assignment equals the
    n x K transport to the marginal."""
    pot()
    rng = np.random.default_rng(3)
    for n, k in ((60, 6), (120, 30)):
        p = softmax64(synthetic_logits(n, k, seed=n))
        labels = rng.permutation(np.repeat(rng.integers(0, k, n // 4), 4))
        assert le.cot_error(p, label_marginal(labels, k)) == pytest.approx(official_cot(p, labels), abs=1e-6)


def test_cot_matches_the_scipy_linear_programme():
    pot()
    p = softmax64(synthetic_logits(40, 9, seed=9))
    marg = label_marginal(np.random.default_rng(9).integers(0, 7, 90), 9)  # two classes without mass
    assert le.cot_error(p, marg) == pytest.approx(cot_exact_error(p, marg), abs=1e-6)


def test_cot_batches_large_groups_and_weights_them(monkeypatch):
    pot()
    monkeypatch.setattr(le, "COT_BATCH", 40)
    z = synthetic_logits(100, 7, seed=2)
    marg = label_marginal(np.arange(70) % 7, 7)
    parts = np.array_split(np.random.default_rng(5).permutation(np.arange(100)), 3)
    expected = 1 - sum(p.size * le.cot_error(softmax64(z[np.sort(p)]), marg) for p in parts) / 100
    assert le.cot_accuracy(z, np.arange(100), marg, seed=5) == pytest.approx(expected, abs=1e-12)


def test_cot_without_pot_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(le, "_pot", lambda: (_ for _ in ()).throw(ImportError("no ot")))
    assert not le.pot_available()


# --------------------------------------------------------------------------- score line and ALine


def test_score_line_is_ordinary_least_squares():
    rng = np.random.default_rng(1)
    x, y = rng.random(20), rng.random(20)
    fit, ref = le.fit_score_line(x, y), linregress(x, y)
    assert (fit.slope, fit.intercept) == pytest.approx((ref.slope, ref.intercept), abs=1e-12)
    assert fit.predict([1e6]) == pytest.approx([1.0 if ref.slope > 0 else 0.0])  # clipped
    flat = le.fit_score_line([0.3, 0.3], [0.2, 0.4])
    assert flat.predict([0.9]) == pytest.approx([0.3])


def paper_aline(acc_id, agr_id, agr_ood):
    """Baek et al. 2022, Algorithm 1, written out pair by pair."""
    q = norm.ppf
    m = len(acc_id)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    line = linregress([q(agr_id[i][j]) for i, j in pairs], [q(agr_ood[i][j]) for i, j in pairs])
    a, b = line.slope, line.intercept
    s = [norm.cdf(a * q(acc) + b) for acc in acc_id]
    rows, rhs = [], []
    for i, j in pairs:
        row = [0.0] * m
        row[i] = row[j] = 0.5
        rows.append(row)
        rhs.append(q(agr_ood[i][j]) + a * ((q(acc_id[i]) + q(acc_id[j])) / 2 - q(agr_id[i][j])))
    d = norm.cdf(np.linalg.pinv(np.array(rows)) @ np.array(rhs))
    return np.array(s), d


def test_aline_matches_the_paper_and_recovers_accuracies_on_the_line():
    rng = np.random.default_rng(7)
    m, a, b = 5, 0.8, -0.6
    acc_id = rng.uniform(0.6, 0.9, m)
    agr_id = rng.uniform(0.7, 0.95, (m, m))
    agr_id = (agr_id + agr_id.T) / 2
    agr_ood = norm.cdf(a * norm.ppf(agr_id) + b)  # agreement on the line
    got = le.aline(acc_id, agr_id, agr_ood)
    truth = norm.cdf(a * norm.ppf(acc_id) + b)  # accuracy on the same line
    np.testing.assert_allclose(got["aline_s"], truth, atol=1e-9)
    np.testing.assert_allclose(got["aline_d"], truth, atol=1e-9)
    noisy = np.clip(agr_ood + rng.normal(0, 0.02, (m, m)), 0.01, 0.99)
    noisy = (noisy + noisy.T) / 2
    s, d = paper_aline(acc_id, agr_id, noisy)
    got = le.aline(acc_id, agr_id, noisy)
    np.testing.assert_allclose(got["aline_s"], s, atol=1e-6)
    np.testing.assert_allclose(got["aline_d"], d, atol=1e-6)


def test_aline_needs_three_models_and_agreement_is_symmetric():
    preds = np.array([[0, 1, 2, 3], [0, 1, 0, 3], [1, 1, 2, 3]])
    agr = le.agreement(preds)
    np.testing.assert_allclose(agr, agr.T)
    assert agr[0, 1] == 0.75 and agr[0, 2] == 0.75 and np.all(np.diag(agr) == 1)
    with pytest.raises(ValueError, match="at least 3 task models"):
        le.aline([0.8, 0.7], agr[:2, :2], agr[:2, :2])


def test_cot_costs_are_each_rows_share_of_the_transport():
    ot = pot()
    p = softmax64(synthetic_logits(50, 8, seed=4))
    marg = label_marginal(np.random.default_rng(4).integers(0, 8, 100), 8)
    costs = le.cot_costs(p, marg)
    assert costs.shape == (50,) and ((costs >= -1e-12) & (costs <= 1 + 1e-12)).all()
    assert costs.mean() == pytest.approx(ot.emd2(np.full(50, 1 / 50), marg, 1 - p), abs=1e-9)
    assert np.all(costs >= 1 - p.max(1) - 1e-9)  # a row pays at least 1 - its top probability


def test_temperature_minimises_the_likelihood_of_the_whole_matrix(monkeypatch):
    """Chunked, bounded fit against a direct minimisation of the NLL over the whole matrix."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    monkeypatch.setattr(le, "CHUNK", 33)
    z = synthetic_logits(200, 12, seed=12, scale=1.0, signal=9.0)  # over-confident: T > 1
    labels = np.random.default_rng(12).integers(0, 12, 200)
    labels[:120] = z[:120].astype(np.float64).argmax(1)
    rows = np.random.default_rng(1).permutation(200)  # any order of rows and labels
    z64 = z.astype(np.float64)

    def nll(t):
        return -log_softmax(z64 / t, axis=1)[np.arange(200), labels].sum()

    best = minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-9}).x
    assert le.fit_temperature(z, rows, labels[rows]) == pytest.approx(best, rel=1e-4)
    pot()
    marg = label_marginal(labels, 12)
    assert le.cot_accuracy(z, np.arange(200), marg, temperature=best) == pytest.approx(
        1 - le.cot_error(softmax64(z64 / best), marg), abs=1e-6)


def test_audit_nuclear_norm_is_size_matched_to_the_audited_set():
    import pandas as pd

    from iqa_lib.analysis.prior.logit_estimators import SIZE_MATCH_DRAWS, SIZE_MATCH_SEED
    from iqa_lib.audit.logit_accuracy import ReferenceGroups

    rng = np.random.default_rng(3)
    k, sizes = 400, {("clean", 0): 120, ("fog", 1): 80, ("fog", 2): 30}  # fewer rows than classes, as on ImageNet
    keys = [key for key, n in sizes.items() for _ in range(n)]
    data = pd.DataFrame({"corruption": [c for c, _ in keys], "severity": [s for _, s in keys],
                         "correct": rng.random(len(keys)) < 0.6})
    logits = (rng.normal(size=(len(keys), k)) * 4).astype(np.float16)
    whole = ReferenceGroups(data, logits)
    matched = ReferenceGroups(data, logits, size=40)
    # the nuclear norm's normalisation still leaves it a function of the row count: smaller sets score higher
    assert (matched.matched.nuclear[:2] > whole.stats.nuclear[:2]).all()
    assert np.array_equal(matched.stats.nuclear, whole.stats.nuclear)  # the validation's: whole groups
    # by hand: each group larger than 40 rows, the mean over the seeded draws of 40 of its rows
    draw = np.random.default_rng(SIZE_MATCH_SEED)
    members = [np.flatnonzero((data["corruption"] == c) & (data["severity"] == s)) for c, s in sorted(sizes)]
    for g, rows in enumerate(members):
        if rows.size <= 40:
            assert matched.matched.nuclear[g] == whole.stats.nuclear[g]
            continue
        subsets = [np.sort(draw.choice(rows, size=40, replace=False)) for _ in range(SIZE_MATCH_DRAWS)]
        want = np.mean([le.nuclear_norm_score([logits[s].astype(np.float64)], k) for s in subsets])
        assert matched.matched.nuclear[g] == pytest.approx(want, rel=1e-12)
    # MaNo and the accuracies are untouched
    assert np.array_equal(matched.matched.mano_softmax, whole.stats.mano_softmax)
    assert np.array_equal(matched.accuracy, whole.accuracy)


def test_audit_scores_a_set_larger_than_every_group_at_the_groups_size():
    import pandas as pd

    from iqa_lib.analysis.prior.logit_estimators import SIZE_MATCH_SEED
    from iqa_lib.audit.logit_accuracy import LogitFit, ReferenceGroups

    rng = np.random.default_rng(4)
    k, per_group = 400, 40  # fewer rows than classes, as on ImageNet

    def draw(n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Logits whose confidence and accuracy rise with ``level``; labels spread over k classes."""
        labels = rng.integers(0, k, n)
        z = rng.normal(size=(n, k))
        right = rng.random(n) < level
        top = np.where(right, labels, (labels + 1 + rng.integers(0, k - 1, n)) % k)
        z[np.arange(n), top] += 2 + 6 * level
        return z.astype(np.float16), right

    keys, logits, correct = [], [], []
    for sev, level in enumerate((0.9, 0.75, 0.6, 0.45, 0.3)):
        z, right = draw(per_group, level)
        keys += [("fog" if sev else "clean", sev)] * per_group
        logits.append(z)
        correct.append(right)
    data = pd.DataFrame({"corruption": [c for c, _ in keys], "severity": [s for _, s in keys],
                         "correct": np.concatenate(correct)})
    ref_logits = np.concatenate(logits)
    target, right = draw(400, 0.6)  # ten times a group: the third group's shift
    everything = np.ones(5, dtype=bool)
    matched = LogitFit(ReferenceGroups(data, ref_logits, size=400), everything, k, matched=True)
    whole = LogitFit(ReferenceGroups(data, ref_logits, size=None), everything, k, matched=True)
    assert matched.target_size == per_group and whole.target_size is None
    rows = np.arange(400)
    # by hand: the mean score over the 10 blocks of 40 of one seeded permutation, through the line
    order = np.random.default_rng(SIZE_MATCH_SEED).permutation(rows)
    blocks = [np.sort(order[i * 40:(i + 1) * 40]) for i in range(10)]
    scores = [le.nuclear_norm_score([target[b].astype(np.float64)], k) for b in blocks]
    np.testing.assert_allclose(matched.nuclear_scores(target, rows), scores, rtol=1e-12)
    line = matched.fitted.lines["nuclear"]
    assert matched.nuclear(target, rows) == pytest.approx(float(line.predict(np.mean(scores))))
    # the whole set's norm is far below a 40-image group's: read on their line it under-predicts
    assert whole.nuclear(target, rows) < matched.nuclear(target, rows) - 0.05
    assert abs(matched.nuclear(target, rows) - right.mean()) < abs(whole.nuclear(target, rows) - right.mean())
    lo, hi = matched.nuclear_interval(target, rows, 0.95, seed=0)
    assert lo <= matched.nuclear(target, rows) <= hi and hi - lo > 0


def test_audit_validation_pools_each_held_out_corruption_severities():
    import pandas as pd

    from iqa_lib.audit.accuracy import loco_validation, validation_bands
    from iqa_lib.audit.logit_accuracy import ReferenceGroups, logit_loco

    rng = np.random.default_rng(6)
    k, n = 50, 30
    keys = [("clean", 0)] + [(c, s) for c in ("fog", "snow", "blur") for s in (1, 2, 3)]
    level = {key: 0.9 - 0.2 * key[1] + (0.05 if key[0] == "snow" else 0) for key in keys}
    data = pd.DataFrame([(c, s) for c, s in keys for _ in range(n)], columns=["corruption", "severity"])
    z = rng.normal(size=(len(data), k))
    right = rng.random(len(data)) < data.apply(lambda r: level[(r.corruption, r.severity)], axis=1).to_numpy()
    z[np.arange(len(data)), np.where(right, 0, rng.integers(1, k, len(data)))] += 3
    data["correct"] = right.astype(float)
    data["q_p"] = le.softmax(z, axis=1).max(1)
    # the own-output estimators are means over images: a pooled set is predicted as its groups' mean
    loco = loco_validation(data, ["atc_mc", "ac"])
    for _, g in loco.groupby(["method", "corruption"]):
        pooled, groups = g[g["pooled"]], g[~g["pooled"]]
        assert len(pooled) == 1 and pooled["n"].iloc[0] == 3 * n
        assert pooled["predicted"].iloc[0] == pytest.approx(groups["predicted"].mean())
        assert pooled["actual"].iloc[0] == pytest.approx(groups["actual"].mean())
    band = validation_bands(loco)["atc_mc"]
    assert band["groups"] == 9 and band["pooled_sets"] == 3
    atc = loco[loco["method"] == "atc_mc"]
    err = 100 * (atc["predicted"] - atc["actual"]).abs()
    assert band["pooled_mean_abs_error_pts"] == pytest.approx(err[atc["pooled"]].mean())
    assert band["selection_error_pts"] == pytest.approx(max(err[~atc["pooled"]].mean(), err[atc["pooled"]].mean()))
    # MaNo and the nuclear norm of a pooled set, by hand from the union's rows
    groups = ReferenceGroups(data, z.astype(np.float16))
    rows = pd.DataFrame(logit_loco(groups, k))
    snow = np.flatnonzero((data["corruption"] == "snow").to_numpy())
    pooled = rows[rows["pooled"] & (rows["corruption"] == "snow")].set_index("method")
    zf = z.astype(np.float16).astype(np.float64)
    stats = le.group_stats(z.astype(np.float16), groups.members)
    fit = stats.line_fit(groups.accuracy, groups.corruption != "snow")
    soft = fit.mano_softmax
    power = (le.mano_rows(zf[snow], soft) ** le.MANO_P).sum()
    mano = le.mano_score(power, snow.size, k)
    assert pooled.loc["mano", "predicted"] == pytest.approx(float(fit.lines["mano"].predict(mano)), abs=1e-9)
    order = np.random.default_rng(le.SIZE_MATCH_SEED).permutation(snow)
    blocks = [np.sort(order[i * n:(i + 1) * n]) for i in range(3)]
    nuclear = np.mean([le.nuclear_norm_score([zf[b]], k) for b in blocks])
    assert pooled.loc["nuclear", "predicted"] == pytest.approx(float(fit.lines["nuclear"].predict(nuclear)), abs=1e-9)
    assert pooled.loc["mano", "actual"] == pytest.approx(data["correct"][snow].mean())


def test_audit_clean_check_fits_on_the_corrupted_groups_only():
    """The audit's clean check: each estimator fitted on the corrupted groups only, read on the
    clean images. ATC by hand (the k-th largest corrupted q_p, k the corrupted rows' correct
    count), AC and DoC by pandas, MaNo and the nuclear norm through a line fitted without the
    clean group (numpy's least squares on the group scores)."""
    import pandas as pd

    from iqa_lib.audit.accuracy import clean_check, validation_bands
    from iqa_lib.audit.logit_accuracy import ReferenceGroups, logit_clean_check

    rng = np.random.default_rng(9)
    k, n = 40, 50
    keys = [("clean", 0)] + [(c, s) for c in ("fog", "snow") for s in (1, 2, 3)]
    data = pd.DataFrame([(c, s) for c, s in keys for _ in range(n)], columns=["corruption", "severity"])
    z = rng.normal(size=(len(data), k))
    acc = np.where(data["severity"] == 0, 0.9, 0.9 - 0.2 * data["severity"])
    right = rng.random(len(data)) < acc
    z[np.arange(len(data)), np.where(right, 0, rng.integers(1, k, len(data)))] += 3
    data["correct"] = right.astype(float)
    data["q_p"] = le.softmax(z, axis=1).max(1)
    clean = (data["corruption"] == "clean").to_numpy()
    got = clean_check(data, ["atc_mc", "ac", "doc"]).set_index("method")
    ref, tgt = data[~clean], data[clean]
    t = np.sort(ref["q_p"].to_numpy())[::-1][int(ref["correct"].sum()) - 1]
    assert got.loc["atc_mc", "predicted"] == pytest.approx((tgt["q_p"] > t).mean())
    assert got.loc["ac", "predicted"] == pytest.approx(tgt["q_p"].mean())
    assert got.loc["doc", "predicted"] == pytest.approx(ref["correct"].mean() - ref["q_p"].mean() + tgt["q_p"].mean())
    assert (got["actual"] == tgt["correct"].mean()).all() and (got["n"] == n).all()

    groups = ReferenceGroups(data, z.astype(np.float16))
    rows = pd.DataFrame(logit_clean_check(groups, k)).set_index("method")
    stats = le.group_stats(z.astype(np.float16), groups.members)
    g = int(np.flatnonzero(groups.corruption == "clean")[0])
    other = groups.corruption != "clean"
    for method, scores in (("nuclear", stats.nuclear), ("mano", None)):
        if scores is None:  # MaNo's normalisation is chosen on the fitted groups: read it off the fit
            fit = stats.line_fit(groups.accuracy, other)
            scores = fit.scores["mano"]
        slope, intercept = np.polyfit(np.asarray(scores)[other], groups.accuracy[other], 1)
        assert rows.loc[method, "predicted"] == pytest.approx(np.clip(intercept + slope * scores[g], 0, 1), abs=1e-9)
    assert logit_clean_check(ReferenceGroups(data[~clean].reset_index(drop=True),
                                             z[~clean].astype(np.float16)), k) == []
    bands = validation_bands(pd.DataFrame({"method": ["ac"], "corruption": ["fog"], "severity": [1], "n": [n],
                                           "predicted": [0.5], "actual": [0.6], "var_d": [0.2], "pooled": [False]}),
                             got.reset_index())
    assert bands["ac"]["clean_error_pts"] == pytest.approx(100 * (got.loc["ac", "predicted"] - got.loc["ac", "actual"]))


def test_the_audit_passes_over_an_estimator_far_off_on_clean_images():
    """A candidate ranked first on the held-out corruptions but more than 5 points off on the
    reference's clean images held out is not stated, and the words say why; when every one is,
    the best is stated with that said."""
    import pandas as pd

    from iqa_lib.audit.accuracy import _stated_method

    rows = [{"method": m, "corruption": c, "severity": s, "n": 100, "predicted": 0.5 + e, "actual": 0.5,
             "var_d": 0.2, "pooled": False}
            for m, e in (("atc_ne", 0.01), ("atc_mc", 0.02)) for c in ("fog", "snow", "blur") for s in (1, 2)]
    loco = pd.DataFrame(rows)

    def band(sel: float, clean: float) -> dict:
        return {"selection_error_pts": sel, "mean_abs_error_pts": sel, "groups": 6, "corruptions": 3,
                "pooled_sets": 0, "clean_error_pts": clean}

    chosen, why, _ = _stated_method(["atc_mc", "atc_ne"], {"atc_ne": band(1.0, -6.0), "atc_mc": band(2.0, -0.5)}, loco)
    assert chosen == "atc_mc" and "ATC-NE reads them -6.0" in why
    chosen, why, _ = _stated_method(["atc_mc", "atc_ne"], {"atc_ne": band(1.0, 0.3), "atc_mc": band(2.0, -0.5)}, loco)
    assert chosen == "atc_ne" and "clean" not in why
    chosen, why, _ = _stated_method(["atc_mc", "atc_ne"], {"atc_ne": band(1.0, 7.0), "atc_mc": band(2.0, -8.0)}, loco)
    assert chosen == "atc_ne" and "every candidate reads" in why

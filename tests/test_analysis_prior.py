"""Accuracy estimators (Q-prior, AC, DoC, ATC, COT) and their leave-one-corruption-out check."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from iqa_lib.analysis.io import ScoreSet
from iqa_lib.analysis.prior.estimators import (
    average_confidence,
    cot_exact_error,
    cot_top1_error,
    doc_accuracy,
    estimate_accuracy,
    fit_atc,
    fit_q_prior,
    label_marginal,
    top1_probs,
)
from iqa_lib.analysis.prior.validation import (
    leave_one_corruption_out,
    run_prior,
    summarize,
    verdict,
)
from iqa_lib.cli import main
from iqa_lib.presentation.prior_report import verdict_text


def calibrated(n: int, a: float, b: float, rng: np.random.Generator):
    """Confidences q ~ Beta(a, b) and correctness ~ Bernoulli(q): true accuracy = E[q]."""
    q = rng.beta(a, b, n)
    return q, (rng.random(n) < q).astype(np.int8), a / (a + b)


def test_ac_is_the_mean_q_p_exactly():
    q = np.random.default_rng(0).random(1001).astype(np.float32)
    assert average_confidence(q) == float(np.mean(q.astype(np.float64)))


def test_ac_and_doc_recover_a_known_accuracy_under_shift():
    rng = np.random.default_rng(1)
    q_ref, m_ref, _ = calibrated(40_000, 6, 2, rng)  # calibrated: reference accuracy 0.75
    q_tgt, _, truth = calibrated(40_000, 2, 2, rng)  # shifted target: accuracy 0.5
    assert abs(average_confidence(q_tgt) - truth) < 0.01
    assert abs(doc_accuracy(m_ref.mean(), average_confidence(q_ref), average_confidence(q_tgt)) - truth) < 0.015


def test_atc_recovers_accuracy_when_the_score_ranks_correctness():
    """ATC's premise: M = 1 exactly above a score level; any shift of the score is then exact."""
    rng = np.random.default_rng(11)
    s_ref, s_tgt = rng.normal(1.0, 1.0, 40_000), rng.normal(0.0, 1.5, 40_000)
    m_ref = (s_ref + rng.normal(0, 0.05, s_ref.size) > 0.5).astype(np.int8)
    truth = float((s_tgt > 0.5).mean())
    assert abs(fit_atc(s_ref, m_ref).predict(s_tgt) - truth) < 0.01


def test_q_prior_recovers_accuracy_under_covariate_shift():
    """P(M | Q) logistic and unchanged, Q shifted: the mean of the fitted P is the accuracy."""
    from scipy.special import expit

    rng = np.random.default_rng(12)
    q_ref, q_tgt = rng.normal(0.5, 1.0, 40_000), rng.normal(-0.5, 0.8, 40_000)
    m_ref = (rng.random(q_ref.size) < expit(0.5 + 1.5 * q_ref)).astype(np.int8)
    truth = float(expit(0.5 + 1.5 * q_tgt).mean())
    assert abs(fit_q_prior(q_ref, m_ref).predict(q_tgt) - truth) < 0.01


def test_atc_threshold_reproduces_the_reference_accuracy_with_ties():
    rng = np.random.default_rng(2)
    q = np.round(rng.random(997), 1)  # heavy ties
    q[:300] = 1.0  # saturated confidences, as float32 q_p
    m = (rng.random(997) < q).astype(np.int8)
    atc = fit_atc(q, m)
    assert atc.predict(q) == pytest.approx(m.mean(), abs=1e-12)
    assert 0 <= atc.tie_weight <= 1
    assert fit_atc(q, np.zeros_like(m)).predict(q) == 0
    assert fit_atc(q, np.ones_like(m)).predict(q) == pytest.approx(1.0)
    neg_entropy = -rng.gamma(2, 1, 500)  # ATC-NE: the score is minus the entropy
    mm = (rng.random(500) < 0.6).astype(np.int8)
    assert fit_atc(neg_entropy, mm).predict(neg_entropy) == pytest.approx(mm.mean(), abs=1e-12)


def test_q_prior_without_information_predicts_the_reference_accuracy():
    rng = np.random.default_rng(3)
    m = (rng.random(5000) < 0.7).astype(np.int8)
    constant = fit_q_prior(np.full(5000, 0.3), m)
    assert constant.predict(rng.random(800)) == pytest.approx(m.mean(), abs=1e-9)
    noise = rng.normal(size=5000)  # independent of M
    fit = fit_q_prior(noise, m)
    assert fit.predict(noise) == pytest.approx(m.mean(), abs=1e-6)  # score equation of the MLE
    assert fit.predict(rng.normal(1.0, 1.0, 5000)) == pytest.approx(m.mean(), abs=0.02)
    assert fit_q_prior(noise, np.ones(5000)).predict(noise) == 1.0  # M constant: no fit


def softmax_data(n: int, k: int, rng: np.random.Generator, signal: float = 2.0):
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += signal
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


def pot():
    """POT without its torch/jax/tf/cupy backends (importing torch alone takes seconds)."""
    for backend in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{backend}", "1")
    return pytest.importorskip("ot")


def test_cot_exact_matches_pot():
    ot = pot()
    rng = np.random.default_rng(4)
    for n, k in ((30, 5), (57, 12)):
        p, _ = softmax_data(n, k, rng)
        marg = label_marginal(rng.integers(0, k, 3 * n), k)
        expected = ot.emd2(np.full(n, 1 / n), marg, 1 - p)
        assert cot_exact_error(p, marg) == pytest.approx(expected, abs=1e-9)


def test_cot_top1_shortcut_is_exact_for_its_cost():
    ot = pot()
    rng = np.random.default_rng(5)
    for n, k in ((40, 6), (80, 25), (50, 50)):
        p, labels = softmax_data(n, k, rng, signal=1.0)
        pred, q = p.argmax(1), p.max(1)
        marg = label_marginal(rng.choice(k, 2 * n, p=rng.dirichlet(np.ones(k))), k)
        expected = ot.emd2(np.full(n, 1 / n), marg, 1 - top1_probs(pred, q, k))
        assert cot_top1_error(pred, q, marg) == pytest.approx(expected, abs=1e-9)


def test_cot_predicts_error_of_a_calibrated_model_without_label_shift():
    rng = np.random.default_rng(6)
    n, k = 400, 10
    p, labels = softmax_data(n, k, rng, signal=2.5)
    sampled = np.array([rng.choice(k, p=row) for row in p])  # labels drawn from p: calibrated
    marg = label_marginal(sampled, k)
    err = 1 - (p.argmax(1) == sampled).mean()
    assert abs(cot_exact_error(p, marg) - err) < 0.06
    assert cot_top1_error(p.argmax(1), p.max(1), marg) >= 1 - p.max(1).mean() - 1e-12  # COT <= AC


def tiny_scores(n_images: int = 60, corruptions=("blur", "noise", "snow"), seed: int = 0) -> ScoreSet:
    """Clean + corruptions at severities 1-3; M ~ Bernoulli(q_p); NR-IQA q follows severity."""
    rng = np.random.default_rng(seed)
    names = pd.Index(sorted(["clean", *corruptions]))
    keys = [(i, names.get_loc(c), s) for i in range(n_images) for c in names
            for s in ((0,) if c == "clean" else (1, 2, 3))]
    img, cor, sev = (np.array(v) for v in zip(*keys, strict=True))
    q_p = np.clip(0.9 - 0.15 * sev + rng.normal(0, 0.1, sev.size), 0.05, 1)
    m = (rng.random(sev.size) < q_p).astype(np.int8)
    q_h = -np.log(q_p) + rng.normal(0, 0.05, sev.size)
    s = ScoreSet(img.astype(np.int32), pd.Index([f"im{i:03d}" for i in range(n_images)]),
                 cor.astype(np.int16), names, sev.astype(np.int16), rng.integers(0, 10, sev.size))
    s.q = {("tv", "q"): sev + rng.normal(0, 1, sev.size), ("cls", "q_p"): q_p,
           ("cls", "q_h"): q_h, ("cls", "q_l"): 5 * q_p}
    s.m = {"cls": m}
    s.kinds = {"tv": "nr_iqa", "cls": "classifier"}
    return s


def test_loco_table_shape_and_keys():
    s = tiny_scores()
    pred = np.where(s.m["cls"] == 1, s.label, (s.label + 1) % 10)
    table = leave_one_corruption_out(s, predictions={"cls": pred}, n_classes=10)
    methods = {"reference", "q_prior", "q_line", "ac", "doc", "atc_mc", "atc_ne", "cot_top1"}
    assert set(table["method"]) == methods
    # 4 Q variables for the Q-prior and the Q-line + 6 other methods, 3 corruptions x (3 severities + their pool)
    assert len(table) == (4 + 4 + 6) * (9 + 3)
    assert not table.duplicated(["method", "scorer", "q", "task_model", "corruption", "severity"]).any()
    groups, pools = table[~table["pooled"]], table[table["pooled"]]
    assert (groups["n"] == 60).all() and set(groups["severity"]) == {1, 2, 3}
    assert (pools["n"] == 180).all() and set(pools["severity"]) == {0}
    ac = groups[groups["method"] == "ac"].set_index(["corruption", "severity"])["predicted"]
    for (c, sev), v in ac.items():
        rows = (s.corruption == s.corruptions.get_loc(c)) & (s.severity == sev)
        assert v == pytest.approx(s.q[("cls", "q_p")][rows].mean(), abs=1e-12)
    assert set(table[table["method"] == "q_prior"]["kind"]) == {"own", "nr_iqa"}
    assert set(table[table["method"] == "q_line"]["kind"]) == {"own", "nr_iqa"}
    summary = summarize(table, n_bootstrap=50, seed=1)
    assert len(summary) == 14 and (summary["n_groups"] == 9).all() and (summary["n_corruptions"] == 3).all()
    assert (summary["n_pooled_sets"] == 3).all()
    # the severity groups' figures are what they were without the pooled rows
    alone = summarize(groups.drop(columns="pooled"), n_bootstrap=50, seed=1).set_index(["method", "scorer", "q"])
    got = summary.set_index(["method", "scorer", "q"]).loc[alone.index]
    for col in ("mean_abs_error_pts", "mean_ci_low", "mean_ci_high", "max_abs_error_pts", "bias_pts"):
        np.testing.assert_allclose(got[col], alone[col])
    # estimators that average per-image values: a pool's error is at most its groups' mean error
    assert (summary["pooled_mean_abs_error_pts"] <= summary["mean_abs_error_pts"] + 1e-9).all()
    np.testing.assert_allclose(summary["selection_error_pts"],
                               np.maximum(summary["mean_abs_error_pts"], summary["pooled_mean_abs_error_pts"]))
    assert (summary["mean_ci_low"] <= summary["mean_abs_error_pts"] + 1e-9).all()
    assert summary.equals(summarize(table, n_bootstrap=50, seed=1))  # seeded, deterministic
    v = verdict(summary, table, n_bootstrap=50, seed=1)
    tv = summary[summary["scorer"] == "tv"].sort_values("selection_error_pts", kind="stable")
    best_tv = tv.iloc[0]  # the better of the Q-prior and the Q-line on TV
    name = {"q_prior": "Q-prior(tv)", "q_line": "Q-line(tv)"}[best_tv["method"]]
    assert len(v) == 1 and v.loc[0, "best_task_agnostic"] == name
    best_own = summary[summary["kind"] == "own"].sort_values("selection_error_pts", kind="stable").iloc[0]
    assert v.loc[0, "gap_pts"] == pytest.approx(best_tv["mean_abs_error_pts"] - best_own["mean_abs_error_pts"])
    assert v.loc[0, "gap_ci_low"] <= v.loc[0, "gap_pts"] <= v.loc[0, "gap_ci_high"]


def test_q_line_is_a_least_squares_line_through_the_reference_groups():
    from scipy.stats import linregress

    s = tiny_scores(seed=3)
    table = leave_one_corruption_out(s)
    frame = pd.DataFrame({"corruption": np.asarray(s.corruptions)[s.corruption], "severity": s.severity,
                          "tv": s.q[("tv", "q")], "m": s.m["cls"]})
    line = table[(table["method"] == "q_line") & (table["scorer"] == "tv")]
    for held in ("blur", "noise", "snow"):
        ref = frame[frame["corruption"] != held].groupby(["corruption", "severity"])[["tv", "m"]].mean()
        fit = linregress(ref["tv"], ref["m"])  # one point per reference group, unweighted
        tgt = frame[frame["corruption"] == held]
        got = line[line["corruption"] == held].set_index("severity")["predicted"]
        for sev, g in tgt.groupby("severity"):
            assert got[sev] == pytest.approx(np.clip(fit.intercept + fit.slope * g["tv"].mean(), 0, 1), abs=1e-10)
        assert got[0] == pytest.approx(np.clip(fit.intercept + fit.slope * tgt["tv"].mean(), 0, 1), abs=1e-10)


def test_q_line_on_a_score_in_0_1_is_scipys_line_on_probit_axes():
    """A Q in [0, 1] (a confidence, learned_q) gets the line of probit accuracy on probit mean Q
    over the groups (scipy's least squares, norm.ppf/cdf), any other Q a straight one clipped to
    [0, 1]; each image's share averages to the set's reading, the probit one as the curve's
    tangent at the set's mean (its slope the curve's numerical derivative)."""
    from scipy.stats import linregress, norm

    from iqa_lib.analysis.prior.estimators import fit_q_line, q_line_scale

    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 200)
    level = rng.uniform(0.2, 0.9, 12)[groups]
    q = np.clip(level + rng.normal(0, 0.1, groups.size), 0, 1)
    correct = (rng.random(groups.size) < norm.cdf(2.5 * norm.ppf(level) + 0.8)).astype(np.int8)
    line = fit_q_line(q, correct, groups)
    assert line.scale == "probit" == q_line_scale(q) and q_line_scale(q * 100) == "linear"
    frame = pd.DataFrame({"g": groups, "q": q, "m": correct}).groupby("g").mean()
    ref = linregress(norm.ppf(frame["q"]), norm.ppf(np.clip(frame["m"], 1e-4, 1 - 1e-4)))  # the kit's clip
    assert (line.slope, line.intercept) == pytest.approx((ref.slope, ref.intercept), abs=1e-12)
    target = np.clip(rng.normal(0.5, 0.15, 300), 0, 1)
    want = norm.cdf(ref.intercept + ref.slope * norm.ppf(target.mean()))
    assert line.predict(target.mean()) == pytest.approx(want, abs=1e-12)
    shares = line.contributions(target)
    assert shares.mean() == pytest.approx(want, abs=1e-12)
    h = 1e-6
    derivative = (line.predict(target.mean() + h) - line.predict(target.mean() - h)) / (2 * h)
    slope = np.polyfit(target, shares, 1)[0]
    assert slope == pytest.approx(derivative, rel=1e-6)

    straight = fit_q_line(q * 100, correct, groups)
    ref = linregress(frame["q"] * 100, frame["m"])
    assert straight.scale == "linear" and straight.slope == pytest.approx(ref.slope, abs=1e-12)
    assert straight.predict(1e6) == 1.0 and straight.contributions(q * 100).mean() == pytest.approx(
        ref.intercept + ref.slope * 100 * q.mean(), abs=1e-9)
    with pytest.raises(ValueError, match="scale"):
        fit_q_line(q, correct, groups, scale="log")


def test_q_line_follows_groups_that_a_weak_per_image_q_orders():
    """A Q whose group means track accuracy exactly but which barely separates right from wrong
    image by image: the Q-prior's logistic curve is nearly flat and stays near the reference
    accuracy, the line through the groups recovers each held-out group's accuracy."""
    rng = np.random.default_rng(8)
    s = tiny_scores(n_images=3000, seed=8)
    acc = np.where(s.severity == 0, 0.9, 0.9 - 0.2 * s.severity)
    s.m = {"cls": (rng.random(acc.size) < acc).astype(np.int8)}
    s.q[("tv", "q")] = acc + rng.normal(0, 1.5, acc.size)
    table = leave_one_corruption_out(s, q_names=[("tv", "q")])
    groups = table[~table["pooled"]]
    err = groups.groupby("method")["abs_error_pts"].mean()
    assert err["q_line"] < 3.0  # sampling noise of 3,000-image group means only
    assert err["q_prior"] > 8.0 and err["reference"] > 8.0


def test_clean_check_fits_on_the_corrupted_groups_and_reads_the_clean_images():
    """The clean check (what leaving one corruption out never holds out): each estimator fitted
    on the corrupted rows only, read on the clean ones. Checked against independent fits:
    scipy's line over the corrupted groups (Q-line, straight on tv), scikit-learn's logistic
    regression (Q-prior), pandas means (AC, DoC, the baseline); the summary carries the signed
    error and n; an estimator more than 5 points off on clean is not called usable."""
    from scipy.stats import linregress
    from sklearn.linear_model import LogisticRegression

    from iqa_lib.analysis.prior.validation import validate_estimators

    s = tiny_scores(n_images=200, seed=5)
    table, clean = validate_estimators(s)
    assert table.equals(leave_one_corruption_out(s))  # the table itself is unchanged
    frame = pd.DataFrame({"corruption": np.asarray(s.corruptions)[s.corruption], "severity": s.severity,
                          "tv": s.q[("tv", "q")], "q_p": s.q[("cls", "q_p")], "m": s.m["cls"]})
    ref, tgt = frame[frame["corruption"] != "clean"], frame[frame["corruption"] == "clean"]
    got = clean.set_index(["method", "scorer", "q"])["predicted"]
    assert set(clean["corruption"]) == {"clean"} and (clean["n"] == 200).all() and not clean["pooled"].any()
    groups = ref.groupby(["corruption", "severity"])[["tv", "m"]].mean()
    line = linregress(groups["tv"], groups["m"])
    assert got[("q_line", "tv", "q")] == pytest.approx(np.clip(line.intercept + line.slope * tgt["tv"].mean(), 0, 1))
    logit = LogisticRegression(C=1e10, tol=1e-10, max_iter=10_000).fit(ref[["tv"]], ref["m"])
    assert got[("q_prior", "tv", "q")] == pytest.approx(logit.predict_proba(tgt[["tv"]])[:, 1].mean(), abs=1e-5)
    assert got[("ac", "cls", "q_p")] == pytest.approx(tgt["q_p"].mean())
    assert got[("doc", "cls", "q_p")] == pytest.approx(ref["m"].mean() - ref["q_p"].mean() + tgt["q_p"].mean())
    assert got[("reference", "cls", "m")] == pytest.approx(ref["m"].mean())

    summary = summarize(table, n_bootstrap=20, seed=0, clean=clean).set_index(["method", "scorer", "q"])
    row = clean.set_index(["method", "scorer", "q"]).loc[("ac", "cls", "q_p")]
    assert summary.loc[("ac", "cls", "q_p"), "clean_error_pts"] == pytest.approx(100 * (row["predicted"] - row["actual"]))
    assert summary["clean_n"].eq(200).all()
    assert summarize(table, n_bootstrap=20, seed=0)["clean_error_pts"].isna().all()  # no check given

    good = summary.reset_index().assign(mean_ci_high=1.0, pooled_ci_high=1.0, selection_error_pts=1.0,
                                        clean_error_pts=0.5)
    good.loc[good["method"] == "reference", ["selection_error_pts", "mean_abs_error_pts"]] = 20.0
    off = good.copy()
    off.loc[off["method"] == "atc_mc", "clean_error_pts"] = -6.0
    assert "ATC-MC" in verdict(good).loc[0, "usable"] and "ATC-MC" not in verdict(off).loc[0, "usable"]
    assert "On the clean images held out" in verdict_text(verdict(good))


def test_the_verdict_says_an_estimator_defined_with_the_clean_images_was_not_checked():
    """COT and ALine are not in the clean check (test_prior_logits checks the table); the
    verdict says so of a best logit estimator without a clean figure."""
    v = pd.DataFrame([{"task_model": "m", "small_n": False, "baseline_mae_pts": 20.0, "usable": "COT",
                       "best_own": "COT", "best_own_mae_pts": 3.0, "best_own_pooled_mae_pts": 2.0,
                       "best_own_clean_error_pts": np.nan, "best_task_agnostic": "-",
                       "logit_methods": "COT", "best_logit": "COT", "best_logit_mae_pts": 3.0,
                       "best_logit_pooled_mae_pts": 2.0, "best_logit_ci": "2.5-3.5",
                       "best_logit_clean_error_pts": np.nan}])
    text = verdict_text(v)
    assert "not checked on the clean images held out" in text and "it reads" not in text


def test_held_out_labels_never_enter_the_fit():
    s = tiny_scores(seed=7)
    base = leave_one_corruption_out(s)
    poisoned = s.take(np.arange(s.n_rows))
    held = s.corruption == s.corruptions.get_loc("snow")
    poisoned.m["cls"] = np.where(held, 1 - s.m["cls"], s.m["cls"]).astype(np.int8)
    again = leave_one_corruption_out(poisoned)
    rows = base["corruption"] == "snow"
    pd.testing.assert_series_equal(base.loc[rows, "predicted"], again.loc[rows, "predicted"])
    assert not np.allclose(base.loc[rows, "actual"], again.loc[rows, "actual"])


def test_bad_data_is_a_clear_error():
    s = tiny_scores()
    with pytest.raises(ValueError, match="no clean rows"):
        leave_one_corruption_out(s.take(s.corruption != s.corruptions.get_loc("clean")))
    keep = np.isin(s.corruption, [s.corruptions.get_loc("clean"), s.corruptions.get_loc("snow")])
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_corruption_out(s.take(keep))


def write_scores(folder, s: ScoreSet, unlabelled: bool = False) -> None:
    keys = s.keys_frame().assign(image_id=lambda d: d["image_id"].astype(str),
                                 corruption=lambda d: d["corruption"].astype(str))
    keys.assign(q=s.q[("tv", "q")]).to_parquet(folder / "tv.parquet", index=False)
    task = keys.assign(pred=s.label, q_p=s.q[("cls", "q_p")], q_h=s.q[("cls", "q_h")],
                       q_l=s.q[("cls", "q_l")])
    if not unlabelled:
        task["correct"] = s.m["cls"].astype(bool)
    task.to_parquet(folder / "cls.parquet", index=False)


def test_command_end_to_end_and_errors(tmp_path, capsys):
    scores = tmp_path / "scores"
    scores.mkdir()
    write_scores(scores, tiny_scores())
    out = tmp_path / "prior"
    assert main(["prior", "--scores", str(scores), "--out", str(out), "--n-bootstrap", "20"]) == 0
    table = pd.read_csv(out / "prior.csv")
    summary = pd.read_csv(out / "prior_summary.csv")
    assert {"method", "q", "task_model", "corruption", "severity", "n", "predicted", "actual",
            "abs_error"} <= set(table.columns)
    assert len(summary) == len(table.groupby(["method", "scorer", "q", "task_model"]))
    assert (out / "prior_cls.png").is_file() and (out / "prior_cls.pdf").is_file()
    assert not list(out.glob(".*tmp*"))

    bad = tmp_path / "unlabelled"
    bad.mkdir()
    write_scores(bad, tiny_scores(), unlabelled=True)
    assert main(["prior", "--scores", str(bad), "--out", str(tmp_path / "x"),
                 "--task-models", "cls"]) == 2
    assert "cls.parquet" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cls.parquet"):
        run_prior(bad, task_models=["cls"])
    noclean = tmp_path / "noclean"
    noclean.mkdir()
    s = tiny_scores()
    write_scores(noclean, s.take(s.corruption != s.corruptions.get_loc("clean")))
    with pytest.raises(ValueError, match=f"{noclean}.*no clean rows"):
        run_prior(noclean)


def test_estimate_accuracy_on_unlabelled_images_has_intervals():
    rng = np.random.default_rng(13)
    q_ref, m_ref, _ = calibrated(4000, 6, 2, rng)
    q_tgt, m_tgt, truth = calibrated(3000, 2, 2, rng)
    ref = {"q_p": q_ref, "q_h": 1 - q_ref, "correct": m_ref}
    est = estimate_accuracy(ref, {"q_p": q_tgt, "q_h": 1 - q_tgt}, n_bootstrap=100, seed=0)
    assert list(est["method"]) == ["ac", "doc", "atc_mc", "atc_ne"]
    assert est.loc[0, "predicted"] == average_confidence(q_tgt)
    assert (est["ci_low"] <= est["predicted"]).all() and (est["predicted"] <= est["ci_high"]).all()
    ac, doc = est.set_index("method").loc[["ac", "doc"], "predicted"]
    assert abs(ac - truth) < 0.02 and abs(doc - truth) < 0.03
    assert est.equals(estimate_accuracy(ref, {"q_p": q_tgt, "q_h": 1 - q_tgt}, n_bootstrap=100, seed=0))


def test_notebook_is_parameterised_and_offline_friendly():
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "prior.ipynb").read_text())
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1
    source = "".join(params[0]["source"])
    for name in ("params_file", "scores_dir", "out_dir"):
        assert f"{name} =" in source
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "$" not in markdown  # the offline HTML export has no MathJax
    assert any("write_prior" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_verdict_is_withheld_when_group_accuracies_rest_on_too_few_images():
    """The estimators are scored against group accuracies: from 9 images each (a demo) no
    estimator is called usable or ranked; from 60 images in 18 groups the verdict stands."""
    s = tiny_scores()
    table = leave_one_corruption_out(s, n_classes=10)
    more = pd.concat([table, table.assign(corruption=table["corruption"] + "_b")], ignore_index=True)
    summary = summarize(more, n_bootstrap=20, seed=1)
    enough = verdict(summary, more, n_bootstrap=20, seed=1)
    assert not enough.loc[0, "small_n"] and enough.loc[0, "min_group_images"] == 60
    assert enough.loc[0, "n_groups"] == 18 and enough.loc[0, "usable"] != "n too small"
    assert "n too small" not in verdict_text(enough)

    few = more.assign(n=9)
    small = verdict(summarize(few, n_bootstrap=20, seed=1), few, n_bootstrap=20, seed=1)
    assert small.loc[0, "small_n"] and small.loc[0, "usable"] == "n too small"
    text = verdict_text(small)
    assert "n too small" in text and "as few as 9 images" in text and "18 groups" in text
    assert "worse than" not in text and "no better than" not in text and "better than the" not in text
    # too few groups counts too (9 groups of 60 images)
    assert verdict(summarize(table, n_bootstrap=20, seed=1), table, n_bootstrap=20, seed=1).loc[0, "small_n"]


def test_an_estimator_that_fails_on_pooled_severities_is_not_usable_nor_ranked_first():
    """A set-level estimator exact on every severity group but 9 points off on each
    corruption's pooled severities: the verdict ranks by the worse of the two means."""
    rows = []
    for c in ("blur", "noise", "snow", "fog"):
        for sev in (1, 2, 3, 0):
            pooled, actual = sev == 0, 0.8 - 0.1 * max(sev, 2)
            for method, kind, q, err in (("reference", "baseline", "m", 0.15), ("atc_ne", "own", "q_h", 0.03),
                                         ("nuclear", "own", "logits", 0.09 if pooled else 0.01)):
                rows.append({"method": method, "scorer": "cls", "q": q, "kind": kind, "task_model": "cls",
                             "corruption": c, "severity": sev, "n": 100 * (3 if pooled else 1),
                             "predicted": actual + err, "actual": actual, "reference_accuracy": 0.8,
                             "pooled": pooled})
    table = pd.DataFrame(rows)
    table["error"] = table["predicted"] - table["actual"]
    table["abs_error"] = table["error"].abs()
    table["abs_error_pts"] = 100 * table["abs_error"]
    summary = summarize(table, n_bootstrap=50, seed=0).set_index("method")
    assert summary.loc["nuclear", "mean_abs_error_pts"] == pytest.approx(1.0)
    assert summary.loc["nuclear", "pooled_mean_abs_error_pts"] == pytest.approx(9.0)
    assert summary.loc["nuclear", "selection_error_pts"] == pytest.approx(9.0)
    assert list(summary.index) == ["atc_ne", "nuclear", "reference"]  # ranked by the worse mean
    # 12 groups of 100 images: enough for a verdict
    v = verdict(summary.reset_index(), table, n_bootstrap=50, seed=0).iloc[0]
    assert not v["small_n"] and v["n_groups"] == 12
    assert v["usable"] == "ATC-NE" and v["best_own"] == "ATC-NE"
    assert v["best_logit"] == "nuclear norm" and v["best_logit_pooled_mae_pts"] == pytest.approx(9.0)
    text = verdict_text(verdict(summary.reset_index(), table, n_bootstrap=50, seed=0))
    assert "usable" in text and ": ATC-NE." in text
    assert "best nuclear norm, 1.0 points" in text and "9.0 on each corruption's severities pooled" in text


def test_the_verdict_states_the_best_estimators_clean_check():
    """The best of M's own outputs is stated with its error on the clean images held out (the
    summary's figure, signed); without the check nothing is said about clean images."""
    from iqa_lib.analysis.prior.validation import validate_estimators

    s = tiny_scores(n_images=100, seed=2)
    table, clean = validate_estimators(s)
    more = pd.concat([table, table.assign(corruption=table["corruption"] + "_b")], ignore_index=True)
    summary = summarize(more, n_bootstrap=20, seed=1, clean=clean)
    v = verdict(summary, more, n_bootstrap=20, seed=1)
    best = summary[summary["kind"] == "own"].iloc[0]
    assert v.loc[0, "best_own_clean_error_pts"] == pytest.approx(best["clean_error_pts"])
    text = verdict_text(v)
    assert text.count(f"On the clean images held out (fitted on the corrupted groups only) it reads "
                      f"{best['clean_error_pts']:+.1f} points.") == 1
    assert "clean images held out (fitted" not in verdict_text(verdict(summarize(more, n_bootstrap=20, seed=1)))

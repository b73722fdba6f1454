"""The logit estimators in ``iqa-kit prior`` (leave one corruption out) and in the audit:
present with logits beside the score files, absent without, fitted without the held-out rows."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from iqa_lib.analysis.prior.logit_estimators import LOGIT_METHODS, MANO_P, aline, size_blocks
from iqa_lib.analysis.prior.validation import run_prior, verdict
from iqa_lib.audit.accuracy import predict_accuracy
from iqa_lib.audit.reference import (
    read_reference,
    reference_from_scores,
    scorer_identity,
    write_reference,
)
from iqa_lib.pipeline.reference import ReferenceSettings, build_reference
from iqa_lib.presentation.prior_report import verdict_text
from iqa_lib.scoring.logits import logits_path

K = 10
MODELS = ("cls", "cls2", "cls3")
CORRUPTIONS = ("blur", "noise", "snow")


def frame(n_images: int = 40, seed: int = 0) -> pd.DataFrame:
    """Keys, labels and a severity per row (clean 0, corruptions 1-3), rows in a shuffled order."""
    rng = np.random.default_rng(seed)
    rows = [(f"im{i:03d}", c, s) for i in range(n_images) for c in ("clean", *CORRUPTIONS)
            for s in ((0,) if c == "clean" else (1, 2, 3))]
    df = pd.DataFrame(rows, columns=["image_id", "corruption", "severity"])
    df["label"] = df["image_id"].str[2:].astype(int) % K
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def model_logits(df: pd.DataFrame, seed: int) -> np.ndarray:
    """float16 logits whose confidence and accuracy fall with severity (and a model offset)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (len(df), K))
    right = rng.random(len(df)) < 0.92 - 0.17 * df["severity"].to_numpy() - 0.03 * seed
    target = np.where(right, df["label"], (df["label"] + 1 + rng.integers(0, K - 1, len(df))) % K)
    z[np.arange(len(df)), target] += 4.0 - 0.8 * df["severity"].to_numpy() + rng.normal(0, 0.5, len(df))
    return z.astype(np.float16)


def save_logits(score_file, z: np.ndarray) -> None:
    """Logits beside a score file as the contract places them (any folder made first)."""
    logits_path(score_file).parent.mkdir(parents=True, exist_ok=True)
    np.save(logits_path(score_file), z)


def task_file(df: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    p = softmax(z.astype(np.float64), axis=1)
    pred = p.argmax(1)
    return df.assign(pred=pred, correct=pred == df["label"], q_p=p.max(1),
                     q_h=-(p * np.log(p)).sum(1), q_l=z.astype(np.float64).max(1))


def write_folder(folder, logits: bool = True, models=MODELS):
    folder.mkdir()
    df = frame()
    out = {}
    for i, name in enumerate(models):
        z = model_logits(df, i)
        task_file(df, z).to_parquet(folder / f"{name}.parquet", index=False)
        if logits:
            save_logits(folder / f"{name}.parquet", z)
        out[name] = (df, z)
    return out


def pot():
    for backend in ("PYTORCH", "JAX", "TENSORFLOW", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{backend}", "1")
    return pytest.importorskip("ot", reason="POT (pip install POT) is needed for exact COT")


@pytest.fixture(scope="module")
def with_logits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior") / "scores"
    data = write_folder(folder)
    table, summary = run_prior(folder, n_bootstrap=50)
    return folder, data, table, summary


def test_logit_methods_join_with_logits_and_match_a_direct_computation(with_logits):
    ot = pot()
    _, data, table, _ = with_logits
    assert set(LOGIT_METHODS) <= set(table["method"])
    for method in LOGIT_METHODS:
        rows = table[(table["method"] == method) & (table["task_model"] == "cls")]
        assert len(rows) == len(CORRUPTIONS) * (3 + 1) and rows["predicted"].between(0, 1).all()
        assert rows["pooled"].sum() == len(CORRUPTIONS)  # each corruption's severities pooled, once
    df, z = data["cls"]
    f = task_file(df, z)
    held = (df["corruption"] == "snow").to_numpy()
    group = held & (df["severity"] == 2).to_numpy()
    # COT: exact transport of the group's softmax to the reference's label marginal
    marg = np.bincount(df["label"][~held], minlength=K) / (~held).sum()
    keep = marg > 0
    clean = (df["corruption"] == "clean").to_numpy()  # COT's temperature: fitted on the clean rows
    z64, lab = z.astype(np.float64), df["label"].to_numpy()
    t = minimize_scalar(lambda t: -log_softmax(z64[clean] / t, axis=1)[np.arange(clean.sum()), lab[clean]].sum(),
                        bounds=(0.05, 20), method="bounded", options={"xatol": 1e-9}).x
    pt = softmax(z64[group] / t, axis=1)
    cot = 1 - ot.emd2(np.full(group.sum(), 1 / group.sum()), marg[keep] / marg[keep].sum(), 1 - pt[:, keep])
    # MaNo with a line fitted over the reference groups
    keys = df["corruption"] + "|" + df["severity"].astype(str)

    def mano(rows):
        v = 1 + z[rows].astype(np.float64) + z[rows].astype(np.float64) ** 2 / 2
        v = v - v.min(1, keepdims=True)
        v = v / v.sum(1, keepdims=True)
        return ((v ** MANO_P).sum() / v.size) ** (1 / MANO_P)

    zr = z[~held].astype(np.float64)
    criterion = (np.log(np.exp(zr).sum(1)) - zr.mean(1)).mean()
    assert criterion <= 5  # MaNo's criterion picks the Taylor normalisation here
    ref_keys = sorted(set(keys[~held]))
    x = [mano((keys == k).to_numpy()) for k in ref_keys]
    y = [f["correct"][(keys == k).to_numpy()].mean() for k in ref_keys]
    slope, intercept = np.polyfit(x, y, 1)
    got = table[(table["task_model"] == "cls") & (table["corruption"] == "snow") & (table["severity"] == 2)
                & ~table["pooled"]]
    got = got.set_index("method")["predicted"]
    assert got["cot"] == pytest.approx(cot, abs=1e-5)  # the temperature to the optimiser's tolerance
    assert got["mano"] == pytest.approx(np.clip(intercept + slope * mano(group), 0, 1), abs=1e-6)


def nuclear_direct(z: np.ndarray) -> float:
    """||softmax(z)||_* / sqrt(N min(N, K)) by a full SVD."""
    p = softmax(z.astype(np.float64), axis=1)
    return np.linalg.svd(p, compute_uv=False).sum() / np.sqrt(p.shape[0] * min(p.shape))


def test_pooled_severities_are_predicted_as_one_set(with_logits):
    """Each held-out corruption's severities together: per-image means pool as the groups'
    weighted mean; COT, MaNo, the nuclear norm and ALine are computed on the pooled rows."""
    ot = pot()
    _, data, table, _ = with_logits
    df, z = data["cls"]
    f = task_file(df, z)
    held = (df["corruption"] == "snow").to_numpy()
    t = table[(table["task_model"] == "cls") & (table["corruption"] == "snow")]
    pooled = t[t["pooled"]].set_index(["method", "scorer", "q"])
    groups = t[~t["pooled"]]
    assert (pooled["severity"] == 0).all() and (pooled["n"] == held.sum()).all()
    assert pooled["actual"].to_numpy() == pytest.approx(f["correct"][held].mean(), abs=1e-12)
    for (method, scorer, q), g in groups.groupby(["method", "scorer", "q"]):
        if method in ("reference", "q_prior", "ac", "doc", "atc_mc", "atc_ne"):  # means of per-image values
            assert pooled.loc[(method, scorer, q), "predicted"] == pytest.approx(
                np.average(g["predicted"], weights=g["n"]), abs=1e-12)
    # COT: one transport of all the pooled rows' softmax (temperature as fitted on clean rows)
    clean = (df["corruption"] == "clean").to_numpy()
    z64, lab = z.astype(np.float64), df["label"].to_numpy()
    temp = minimize_scalar(lambda v: -log_softmax(z64[clean] / v, axis=1)[np.arange(clean.sum()), lab[clean]].sum(),
                           bounds=(0.05, 20), method="bounded", options={"xatol": 1e-9}).x
    marg = np.bincount(lab[~held], minlength=K) / (~held).sum()
    keep = marg > 0
    pt = softmax(z64[held] / temp, axis=1)
    cot = 1 - ot.emd2(np.full(held.sum(), 1 / held.sum()), marg[keep] / marg[keep].sum(), 1 - pt[:, keep])
    assert pooled.loc[("cot", "cls", "logits"), "predicted"] == pytest.approx(cot, abs=1e-5)
    # MaNo (Taylor rows here) and the nuclear norm of the pool, through the lines fitted on the reference groups
    keys = (df["corruption"] + "|" + df["severity"].astype(str)).to_numpy()
    ref_keys = sorted(set(keys[~held]))

    def mano(rows):
        v = 1 + z64[rows] + z64[rows] ** 2 / 2
        v = v - v.min(1, keepdims=True)
        v = v / v.sum(1, keepdims=True)
        return ((v ** MANO_P).sum() / v.size) ** (1 / MANO_P)

    def line(score, rows_of):
        x = [score(rows_of(k)) for k in ref_keys]
        y = [f["correct"].to_numpy()[rows_of(k)].mean() for k in ref_keys]
        return np.polyfit(x, y, 1)

    slope, intercept = line(mano, lambda k: keys == k)
    assert pooled.loc[("mano", "cls", "logits"), "predicted"] == pytest.approx(
        np.clip(intercept + slope * mano(held), 0, 1), abs=1e-6)
    # the pool (120 rows) is three times a group (40): scored as the mean over the disjoint
    # 40-row blocks of a seeded random partition of its rows (the file's, listed by severity and image)
    members = np.concatenate([df.index[held & (df["severity"] == s).to_numpy()][
        np.argsort(df["image_id"][held & (df["severity"] == s).to_numpy()].to_numpy())] for s in (1, 2, 3)])
    blocks = size_blocks(members, 40)
    assert len(blocks) == 3 and np.array_equal(np.sort(np.concatenate(blocks)), np.sort(members))
    slope, intercept = line(lambda r: nuclear_direct(z[r]), lambda k: keys == k)
    score = np.mean([nuclear_direct(z[b]) for b in blocks])
    assert pooled.loc[("nuclear", "cls", "logits"), "predicted"] == pytest.approx(
        np.clip(intercept + slope * score, 0, 1), abs=1e-6)
    # ALine: the three models' agreement on all the pooled rows
    preds = np.vstack([task_file(*data[m])["pred"].to_numpy() for m in MODELS])
    acc_id = [task_file(*data[m])["correct"].to_numpy()[clean].mean() for m in MODELS]
    agree = lambda rows: np.asarray([[np.mean(a[rows] == b[rows]) for b in preds] for a in preds])  # noqa: E731
    want = aline(acc_id, agree(clean), agree(held))
    assert pooled.loc[("aline_s", "cls", "pred"), "predicted"] == pytest.approx(want["aline_s"][0], abs=1e-9)
    assert pooled.loc[("aline_d", "cls", "pred"), "predicted"] == pytest.approx(want["aline_d"][0], abs=1e-9)


def test_the_clean_check_leaves_out_cot_and_aline_only(with_logits):
    """COT's temperature and ALine's agreement are fitted on the clean images, so the clean check
    (every estimator fitted on the corrupted groups only) has no figure for them; MaNo, the
    nuclear norm and the own-output estimators have one, on the clean images' n."""
    from iqa_lib.analysis.prior.validation import CLEAN_CHECK_EXCLUDED

    pot()  # COT is validated only with POT
    _, _, table, summary = with_logits
    assert set(CLEAN_CHECK_EXCLUDED) <= set(table["method"])  # validated leaving one corruption out
    excluded = summary["method"].isin(CLEAN_CHECK_EXCLUDED)
    assert summary.loc[excluded, "clean_error_pts"].isna().all()
    checked = summary[~excluded]
    assert checked["clean_error_pts"].notna().all() and {"mano", "nuclear", "atc_mc"} <= set(checked["method"])
    assert (checked["clean_n"] == table["n"][table["severity"] == 1].iloc[0]).all()


def test_held_out_rows_never_enter_the_logit_fits(with_logits, tmp_path):
    folder, data, table, _ = with_logits
    poisoned = tmp_path / "poisoned"
    poisoned.mkdir()
    for name, (df, z) in data.items():
        f = task_file(df, z)
        snow = f["corruption"] == "snow"
        f.loc[snow, "correct"] = ~f.loc[snow, "correct"]  # labels of the held-out rows only
        f.to_parquet(poisoned / f"{name}.parquet", index=False)
        save_logits(poisoned / f"{name}.parquet", z)
    again, _ = run_prior(poisoned, n_bootstrap=20)
    pick = lambda t: t[(t["corruption"] == "snow") & t["method"].isin(["mano", "nuclear"])]["predicted"]  # noqa: E731
    np.testing.assert_allclose(pick(table).to_numpy(), pick(again).to_numpy())
    assert not np.allclose(table[table["corruption"] == "snow"]["actual"], again[again["corruption"] == "snow"]["actual"])


def test_without_logits_the_methods_are_absent_not_nan(tmp_path):
    write_folder(tmp_path / "plain", logits=False)
    table, summary = run_prior(tmp_path / "plain", n_bootstrap=20)
    assert not set(LOGIT_METHODS) & set(table["method"])
    v = verdict(summary, table, n_bootstrap=20)
    assert "logit_methods" not in v.columns and "kept logits" not in verdict_text(v)


def test_two_models_with_logits_have_no_agreement_on_the_line(tmp_path):
    pot()
    write_folder(tmp_path / "two", models=("cls", "cls2"))
    table, _ = run_prior(tmp_path / "two", n_bootstrap=20)
    assert {"cot", "mano", "nuclear"} <= set(table["method"])
    assert not {"aline_s", "aline_d"} & set(table["method"])


def test_verdict_names_the_logit_estimators(with_logits):
    _, _, table, summary = with_logits
    v = verdict(summary, table, n_bootstrap=20)
    assert {"logit_methods", "best_logit", "best_logit_mae_pts"} <= set(v.columns)
    small = verdict_text(v)  # 40 images a group: n too small, the estimators named but not ranked
    assert "Its kept logits add " in small and "MaNo" in small and "not ranked" in small
    assert "From its kept logits" not in small and "best " + str(v.iloc[0]["best_logit"]) not in small
    text = verdict_text(v.assign(small_n=False))
    assert "From its kept logits (" in text and "MaNo" in text and "ALine-D" in text


def test_misaligned_logits_are_a_clear_error(tmp_path):
    write_folder(tmp_path / "bad", models=("cls",))
    save_logits(tmp_path / "bad" / "cls.parquet", np.zeros((5, K), np.float16))
    with pytest.raises(ValueError, match=r"cls\.logits.logits\.npy: 5 rows of logits"):
        run_prior(tmp_path / "bad")


# --------------------------------------------------------------------------- audit


def test_audit_states_the_best_validated_estimator_with_logits(tmp_path):
    pot()
    df = frame(n_images=30, seed=1)
    z = model_logits(df, 0)
    scores = task_file(df, z)
    info = scorer_identity("efficientnet_lite:lite0", {}, "resize_crop") | {
        "label_space": "imagenet", "made_from": "synthetic", "rows": len(scores)}
    path = write_reference(reference_from_scores(scores), info, tmp_path / "efficientnet_lite-lite0.parquet")
    plain = predict_accuracy(read_reference(path), scores.head(60), n_bootstrap=50)
    assert set(plain["estimates"]) == {"atc_mc", "atc_ne", "ac", "doc"}  # no logits: as before
    save_logits(path, z)
    ref = read_reference(path)
    target_df = frame(n_images=20, seed=2)
    target_df["severity"] = 2
    tz = model_logits(target_df, 0)
    target = task_file(target_df, tz)
    pred = predict_accuracy(ref, target, n_bootstrap=50, logits=tz)
    assert {"mano", "nuclear"} <= set(pred["estimates"]) and "cot" not in pred["estimates"]  # no labels: no COT
    errors = {k: e["validation"]["mean_abs_error_pts"] for k, e in pred["estimates"].items()}
    assert pred["method"] == min(errors, key=errors.get)
    band = pred["validation"]
    assert f"over {band['groups']} held-out groups of {band['corruptions']} corruptions" in pred["why_method"]
    for est in pred["estimates"].values():
        assert est["ci95"][0] <= est["value"] <= est["ci95"][1]
    few = predict_accuracy(ref, target.head(8), n_bootstrap=50, logits=tz[:8])  # fewer images than classes
    nuclear = few["estimates"]["nuclear"]
    assert nuclear["ci95"][0] <= nuclear["value"] <= nuclear["ci95"][1]
    without_ref_logits = predict_accuracy(read_reference(write_reference(
        reference_from_scores(scores), info, tmp_path / "other" / "r.parquet")), target, n_bootstrap=50, logits=tz)
    assert "reference keeps no logits" in without_ref_logits["logit_note"]


def test_reference_keeps_the_score_files_logits_and_drops_stale_ones(tmp_path, image_factory):
    rows = [(f"im{i}", i, c, s, str(image_factory(tmp_path / f"{c}{s}_{i}.png", (40, 36), seed=10 * s + i)))
            for i in range(3) for c, s in (("clean", 0), ("gaussian_noise", 2))]
    manifest = tmp_path / "m.parquet"
    pd.DataFrame(rows, columns=["image_id", "label", "corruption", "severity", "path"]).to_parquet(manifest)
    settings = dict(device="cpu", num_workers=0, progress=False)
    build_reference(ReferenceSettings("tv", tmp_path / "ref", manifest=manifest, **settings))
    scores = tmp_path / "ref" / "scores" / "tv.parquet"
    z = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float16)
    save_logits(scores, z)
    path = build_reference(ReferenceSettings("tv", tmp_path / "ref", scores=scores, **settings))
    np.testing.assert_array_equal(np.load(logits_path(path)), z)
    logits_path(scores).unlink()
    path = build_reference(ReferenceSettings("tv", tmp_path / "ref", scores=scores, **settings))
    assert not logits_path(path).exists()


@pytest.mark.parametrize(("others", "snow", "sign"), [(600, 60, 1), (60, 600, -1)])
def test_nuclear_norm_of_a_held_out_corruption_is_taken_at_the_groups_size(tmp_path, monkeypatch, others, snow, sign):
    # snow's groups of another size than the others', 1000 classes (as on ImageNet): fewer images
    # share fewer classes, so the normalised nuclear norm rises as a set shrinks; a line over large
    # groups over-predicts a small held-out group, one over small groups under-predicts a large
    # one, unless both sides are scored at the smaller size
    from iqa_lib.analysis.prior import logit_validation

    monkeypatch.setattr(logit_validation, "pot_available", lambda: False)  # no COT: transports cost seconds
    rng = np.random.default_rng(5)
    k = 1000
    rows = [(f"im{i:03d}", c, s) for i in range(others) for c in ("clean", "blur", "noise")
            for s in ((0,) if c == "clean" else (1, 2, 3))]
    rows += [(f"im{i:03d}", "snow", s) for i in range(snow) for s in (1, 2, 3)]
    df = pd.DataFrame(rows, columns=["image_id", "corruption", "severity"])
    df["label"] = rng.integers(0, k, max(others, snow))[df["image_id"].str[2:].astype(int)]
    sev = df["severity"].to_numpy()
    z = rng.normal(0, 1, (len(df), k))
    right = rng.random(len(df)) < 0.9 - 0.2 * sev
    target = np.where(right, df["label"], (df["label"] + 1 + rng.integers(0, k - 1, len(df))) % k)
    z[np.arange(len(df)), target] += 5.0 - 1.2 * sev + rng.normal(0, 0.5, len(df))
    folder = tmp_path / "unequal"
    folder.mkdir()
    task_file(df, z.astype(np.float16)).to_parquet(folder / "cls.parquet", index=False)
    save_logits(folder / "cls.parquet", z.astype(np.float16))

    def snow_bias() -> float:
        with pytest.warns(UserWarning, match="POT"):
            table, _ = run_prior(folder, n_bootstrap=10)
        t = table[(table["method"] == "nuclear") & (table["corruption"] == "snow") & ~table["pooled"]]
        assert len(t) == 3
        return float((t["predicted"] - t["actual"]).mean())

    matched = snow_bias()
    monkeypatch.setattr(logit_validation.LogitGroups, "at_size", lambda self, size: self.stats)
    whole = sign * snow_bias()
    assert whole > 0.02  # whole groups: snow over- (smaller: +8.6 points) or under-predicted (larger: -3.5)
    assert abs(matched) < whole / 3

"""ZSCLIP-IQA on a tiny randomly initialised open_clip model (real weights cannot be fetched here)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import SpecError, parse_spec
from iqa_lib.scorers.weights import WeightsError
from iqa_lib.scorers.zero_shot import PAPER_TEMPLATES, resolve_templates
from iqa_lib.scoring.engine import score_manifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _count_encode_text(scorer) -> list[int]:
    calls = [0]
    original = scorer.model.encode_text

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    scorer.model.encode_text = counting
    return calls


def test_zsclip_end_to_end_text_encoded_once(tiny_clip, tmp_path):
    rows = []
    rng = np.random.default_rng(0)
    for i in range(10):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (230 + i, 240, 3), dtype=np.uint8)).save(p)
        rows.append({"image_id": f"im{i}", "label": i, "corruption": "clean", "severity": 0,
                     "path": str(p)})
    manifest = tmp_path / "m.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    spec = {"spec": f"open_clip:{tiny_clip.arch}/random", "weights": str(tiny_clip.path), "temperature": 1.0}
    scorer = build_scorer(spec, "cpu")
    calls = _count_encode_text(scorer)
    out = score_manifest(scorer, manifest, tmp_path / "zs.parquet", batch_size=3, num_workers=0,
                         part_size=4, progress=False)
    assert calls[0] == len(PAPER_TEMPLATES) == 1  # 4 batches, 3 parts: one text pass
    df = pd.read_parquet(out)
    assert list(df.columns) == ["image_id", "corruption", "severity", "label",
                                "pred", "correct", "q_p", "q_h", "q_l"]
    assert len(df) == 10 and df["pred"].between(0, 999).all()
    # T = 1: q_p is the max of softmax over raw cosines, q_l the max cosine
    x = torch.randint(0, 255, (2, 3, 224, 224), dtype=torch.uint8)
    s = scorer.cosines(x)
    assert s.shape == (2, 1000) and float(s.abs().max()) <= 1 + 1e-5
    res = scorer.score(x, torch.tensor([0, 1]))
    np.testing.assert_allclose(res["q_p"], torch.softmax(s.double(), 1).max(1).values, rtol=1e-6)
    np.testing.assert_allclose(res["q_l"], s.max(1).values.double(), rtol=1e-6)
    assert calls[0] == 1


def test_temperature_and_disk_text_cache(tiny_clip, tmp_path):
    base = {"spec": f"open_clip:{tiny_clip.arch}/random", "weights": str(tiny_clip.path),
            "templates": ["a photo of a {}.", "a blurry photo of a {}."], "text_cache": str(tmp_path)}
    first = build_scorer(base, "cpu")
    calls = _count_encode_text(first)
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    r1 = first.score(x, None)
    assert calls[0] == 2 and len(list(tmp_path.glob("*.pt"))) == 1
    # a new process would find the file: drop the in-memory cache to prove it
    from iqa_lib.scorers import zero_shot

    zero_shot._TEXT_CACHE.clear()
    second = build_scorer({**base, "temperature": 1.0}, "cpu")
    calls2 = _count_encode_text(second)
    r2 = second.score(x, None)
    assert calls2[0] == 0
    np.testing.assert_allclose(r1["q_l"], r2["q_l"], rtol=1e-6)  # q_l does not depend on T
    assert (r2["q_p"] < r1["q_p"]).all()  # T = 1 is much flatter than T = 0.01
    assert first.temperature == 0.01


def test_temperature_model_reads_the_models_logit_scale_and_bias(tiny_clip):
    base = {"spec": f"open_clip:{tiny_clip.arch}/random", "weights": str(tiny_clip.path)}
    scorer = build_scorer({**base, "temperature": "model"}, "cpu")
    # open_clip initialises logit_scale to log(1 / 0.07): T = 0.07, not the fixed 0.01
    assert scorer.temperature == pytest.approx(0.07, rel=1e-5) and scorer.logit_bias == 0.0
    with torch.no_grad():
        scorer.model.logit_scale.fill_(np.log(50.0))
    scorer.model.logit_bias = torch.nn.Parameter(torch.tensor(-10.0))  # as SigLIP models carry
    from iqa_lib.scorers.zero_shot import model_temperature

    t, bias = model_temperature(scorer.model, "model")
    assert t == pytest.approx(0.02, rel=1e-5) and bias == pytest.approx(-10.0)
    scorer.temperature, scorer.logit_bias = t, bias
    x = torch.randint(0, 255, (3, 3, 64, 64), dtype=torch.uint8)
    s = scorer.cosines(x).double()
    res = scorer.score(x, None)
    logits = 50.0 * s - 10.0  # the model's own logits
    # cosines are float32 and computed twice here: agree to float32 precision, amplified x50
    np.testing.assert_allclose(res["q_p"], torch.softmax(logits, 1).max(1).values, rtol=1e-5)
    np.testing.assert_allclose(res["q_l"], s.max(1).values, rtol=1e-6)  # raw cosine, as before
    assert model_temperature(scorer.model, 0.01) == (0.01, 0.0)
    parse_spec({**base, "temperature": "model"})  # valid in params.yaml


def test_templates_and_option_validation():
    assert resolve_templates(None) == ("A picture of a {}.",)
    openai = resolve_templates("openai80")
    assert len(openai) == 80 and all("{}" in t for t in openai)
    assert resolve_templates("a {} photo") == ("a {} photo",)
    for bad in ({"temperature": 0}, {"temperature": "hot"}, {"templates": ["no slot"]},
                {"templates": "unknown_set"}, {"classnames": []}):
        with pytest.raises(SpecError):
            parse_spec({"spec": "open_clip:ViT-B-32/openai", **bad})


def test_open_clip_errors_are_clear(tmp_path):
    with pytest.raises(SpecError, match="valid tags: openai"):
        build_scorer("open_clip:ViT-B-32/no_such_tag", "cpu")
    with pytest.raises(SpecError, match="unknown open_clip architecture"):
        build_scorer("open_clip:ViT-Q-99/openai", "cpu")
    with pytest.raises(WeightsError, match="missing.pt"):
        build_scorer({"spec": "open_clip:ViT-B-32/openai", "weights": str(tmp_path / "missing.pt")})


def test_open_clip_pretrained_download_failure_is_a_weights_error():
    with pytest.raises(WeightsError, match="ViT-B-32") as err:
        build_scorer("open_clip:ViT-B-32/laion2b_s34b_b79k", "cpu")
    assert "`weights`" in str(err.value)

"""Label spaces: ImageNet classifiers, class maps, own checkpoints and ZSCLIP on a dataset's own classes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lib.data.manifest import (
    FAILURE_COLUMNS,
    MANIFEST_COLUMNS,
    UNLABELLED,
    ManifestResult,
    write_manifest,
    write_unlabelled_manifest,
)
from iqa_lib.imagenet import label_of
from iqa_lib.scorers.classifiers import ClassifierScorer
from iqa_lib.scorers.label_space import (
    LabelSpaceError,
    build_class_map,
    read_class_map,
    resolve_label_space,
)
from iqa_lib.scorers.registry import build_scorer
from iqa_lib.scorers.spec import parse_spec
from iqa_lib.scoring import parts
from iqa_lib.scoring.engine import score_manifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CLASSES = ["car", "cat", "dog"]
MAP = {"car": ["n02814533", "n04285008"], "cat": ["n02123045", "n02123159"], "dog": "n02099601"}
RUN = {"num_workers": 0, "progress": False, "geometry": "none", "batch_size": 4, "device": "cpu"}


def _images(tmp: Path, names: list[str]) -> list[Path]:
    rng = np.random.default_rng(len(names))
    out = []
    for name in names:
        p = tmp / "img" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _own_manifest(tmp: Path, classes=CLASSES, per: int = 2, classnames=None) -> Path:
    names = [f"{c}{j}" for c in classes for j in range(per)]
    rows = [(n, i // per, "clean", 0, str(p)) for i, (n, p) in enumerate(zip(names, _images(tmp, names), strict=True))]
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    fails = pd.DataFrame(columns=list(FAILURE_COLUMNS))
    return write_manifest(ManifestResult(df, fails, list(classes), classnames), tmp / "own.parquet")


def _imagenet_manifest(tmp: Path, n: int = 2) -> Path:
    names = [f"im{i}" for i in range(n)]
    rows = [(nm, i, "clean", 0, str(p)) for i, (nm, p) in enumerate(zip(names, _images(tmp, names), strict=True))]
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return write_manifest(ManifestResult(df, pd.DataFrame(columns=list(FAILURE_COLUMNS))), tmp / "in.parquet")


def _softmax_cols(z: np.ndarray) -> dict[str, np.ndarray]:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return {"q_p": p.max(axis=1), "q_h": -(p * np.log(p)).sum(axis=1), "q_l": z.max(axis=1)}


# ------------------------------------------------------------------ class maps
def test_class_map_inline_yaml_json_csv_tsv(tmp_path):
    inline = build_class_map(MAP, CLASSES)
    assert inline.columns == tuple(sorted(label_of(w) for w in
                                          ("n02814533", "n04285008", "n02123045", "n02123159", "n02099601")))
    assert inline.owner == (2, 1, 1, 0, 0)  # 207 dog, 281/282 cat, 436/817 car
    assert inline.as_dict()["dog"] == ["n02099601"]
    (tmp_path / "m.yaml").write_text("car: [n02814533, n04285008]\ncat: [n02123045, n02123159]\ndog: n02099601\n")
    (tmp_path / "m.json").write_text(json.dumps(MAP))
    rows = [("car", "n02814533"), ("car", "n04285008"), ("cat", "n02123045"), ("cat", "n02123159"),
            ("dog", "n02099601")]
    (tmp_path / "m.csv").write_text("folder,wnid\n" + "".join(f"{a},{b}\n" for a, b in rows))
    (tmp_path / "m.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows))
    for name in ("m.yaml", "m.json", "m.csv", "m.tsv"):
        assert build_class_map(str(tmp_path / name), CLASSES) == inline, name
    # YAML turns folder names like 0 into ints: they are still the folder "0"
    assert read_class_map({0: "n02099601"}) == {"0": ["n02099601"]}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({**MAP, "dog": "n02099602"}, r"'n02099602', which is not an ImageNet-1k wnid; did you mean n02099601"),
        ({**MAP, "dog": "golden retriver"}, r"did you mean n02099601 \(golden retriever\)"),
        ({k: v for k, v in MAP.items() if k != "cat"}, r"manifest class\(es\) cat are missing"),
        ({**MAP, "dgo": "n02099712"}, r"'dgo' \(did you mean dog\?\) is not a class"),
        ({**MAP, "dog": ["n02099601", "n02123045"]}, r"wnid n02123045 is mapped to two classes, 'cat' and 'dog'"),
        ({**MAP, "dog": []}, r"class 'dog' maps to \[\]"),
    ],
)
def test_class_map_errors(mapping, message):
    with pytest.raises(LabelSpaceError, match=message):
        build_class_map(mapping, CLASSES)


def test_class_map_option_errors(tmp_path):
    spec = parse_spec({"spec": "efficientnet_lite:lite0", "class_map": MAP})
    with pytest.raises(LabelSpaceError, match="not needed: the manifest's labels are already ImageNet"):
        resolve_label_space(spec, None)
    with pytest.raises(LabelSpaceError, match="unlabelled"):
        resolve_label_space(spec, None, unlabelled=True)
    missing = parse_spec({"spec": "efficientnet_lite:lite0", "class_map": str(tmp_path / "nope.csv")})
    with pytest.raises(LabelSpaceError, match="nope.csv' does not exist"):
        resolve_label_space(missing, CLASSES)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(LabelSpaceError, match=r"ends in \.yaml"):
        resolve_label_space(parse_spec({"spec": "timm:resnet18", "class_map": str(tmp_path / "m.txt")}), CLASSES)
    from iqa_lib.scorers.spec import SpecError

    with pytest.raises(SpecError, match="class_map"):
        parse_spec({"spec": "timm:resnet18", "class_map": 3})
    space = resolve_label_space(spec, CLASSES)
    assert space.name == "class_map" and space.defines_correct
    assert space.metadata()["label_note"].startswith("pred, correct, q_p, q_h and q_l over the 5 mapped")


def test_restricted_logits_match_numpy():
    """A fixed-logit model through ClassifierScorer: pred/correct/q over the mapped columns only."""
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(6, 1000)) * 4).astype(np.float32)
    z[0, label_of("n04285008")] = 30.0  # a car, confidently
    z[1, 0] = 99.0  # an unmapped class wins overall: ignored

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(z[: x.shape[0]])

    space = resolve_label_space(parse_spec({"spec": "efficientnet_lite:lite0", "class_map": MAP}), CLASSES)
    scorer = ClassifierScorer(parse_spec("efficientnet_lite:lite0"), torch.device("cpu"), Fixed(), 8,
                              label_space=space)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    out = scorer.score(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), labels)
    wnid_class = {w: CLASSES.index(c) for c, ws in MAP.items() for w in ([ws] if isinstance(ws, str) else ws)}
    cols = sorted(label_of(w) for w in wnid_class)
    owner = np.array([wnid_class[w] for w in sorted(wnid_class, key=label_of)])
    zr = z[:, cols].astype(np.float64)
    ref = _softmax_cols(zr)
    pred = owner[zr.argmax(axis=1)]
    np.testing.assert_array_equal(out["pred"], pred)
    assert out["pred"][0] == 0
    np.testing.assert_array_equal(out["correct"], pred == labels.numpy())
    for k in ("q_p", "q_h", "q_l"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)
    assert out["q_l"][1] < 99 and scorer.columns == ("pred", "correct", "q_p", "q_h", "q_l")


# ------------------------------------------------------ ImageNet classifier, own classes
def test_imagenet_classifier_on_own_classes(tmp_path, capsys):
    manifest = _own_manifest(tmp_path)
    out = score_manifest("efficientnet_lite:lite0", manifest, tmp_path / "a.parquet", **RUN)
    df = pd.read_parquet(out)
    assert "correct" not in df.columns and df["pred"].between(0, 999).all()
    err = capsys.readouterr().err
    assert ("efficientnet_lite:lite0 predicts ImageNet classes but the manifest has its own 3 classes "
            "(car, cat, dog): `correct` left out; give option class_map") in err
    meta = parts.read_score_metadata(out)
    assert meta["label_space"] == "own" and json.loads(meta["classes"]) == CLASSES
    assert "not an own class" in meta["label_note"]

    spec = {"spec": "efficientnet_lite:lite0", "class_map": MAP}
    scorer = build_scorer(spec, "cpu", classes=CLASSES)
    out = score_manifest(scorer, manifest, tmp_path / "b.parquet", **RUN)
    df = pd.read_parquet(out)
    assert df.columns[-5:].tolist() == ["pred", "correct", "q_p", "q_h", "q_l"]
    assert df["pred"].between(0, 2).all()
    np.testing.assert_array_equal(df["correct"], df["pred"] == df["label"])
    meta = parts.read_score_metadata(out)
    assert meta["label_space"] == "class_map" and json.loads(meta["class_map"])["dog"] == ["n02099601"]
    assert "over the 5 mapped ImageNet classes" in meta["label_note"]
    assert "predicts ImageNet classes" not in capsys.readouterr().err
    # a scorer built for ImageNet labels is refused on an own-class manifest
    with pytest.raises(ValueError, match="built for ImageNet-1k labels but manifest .* has its own 3 classes"):
        score_manifest(build_scorer("efficientnet_lite:lite0", "cpu"), manifest, tmp_path / "c.parquet", **RUN)


# --------------------------------------------------------------- own checkpoints
def _resnet18(tmp: Path, num_classes: int, name: str, classes=None) -> Path:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    path = tmp / name
    torch.save(model.state_dict() if classes is None else {"state_dict": model.state_dict(), "classes": classes}, path)
    return path


def test_own_checkpoint_end_to_end(tmp_path):
    manifest = _own_manifest(tmp_path, per=1)
    for name, classes in (("plain.pth", None), ("with_classes.pth", CLASSES)):
        ckpt = _resnet18(tmp_path, 3, name, classes)
        spec = {"spec": "torchvision:resnet18", "weights": str(ckpt)}
        out = score_manifest(spec, manifest, tmp_path / f"{name}.parquet", **RUN)
        df = pd.read_parquet(out)
        assert df.columns[-5:].tolist() == ["pred", "correct", "q_p", "q_h", "q_l"]
        assert df["pred"].between(0, 2).all() and (df["q_h"] <= np.log(3) + 1e-9).all()
        np.testing.assert_array_equal(df["correct"], df["pred"] == df["label"])
        meta = parts.read_score_metadata(out)
        assert meta["label_space"] == "own" and json.loads(meta["classes"]) == CLASSES
        assert "label_note" not in meta
    scorer = build_scorer(spec, "cpu", classes=CLASSES)
    assert scorer.input_size == 224  # preprocessing from the DEFAULT weights enum member
    # the checkpoint's class order must be the manifest's
    wrong = _resnet18(tmp_path, 3, "wrong.pth", ["cat", "car", "dog"])
    with pytest.raises(LabelSpaceError, match=r"trained on classes \[cat, car, dog\] but the manifest's classes are \[car, cat, dog\]"):
        build_scorer({"spec": "torchvision:resnet18", "weights": str(wrong)}, "cpu", classes=CLASSES)
    # unlabelled images: Q only, head size read from the checkpoint
    df = pd.read_parquet(manifest)
    unl = write_unlabelled_manifest(df.assign(label=UNLABELLED), tmp_path / "unl.parquet")
    out = score_manifest(spec, unl, tmp_path / "unl_scores.parquet", **RUN)
    scored = pd.read_parquet(out)
    assert "correct" not in scored.columns and scored["pred"].between(0, 2).all()
    assert parts.read_score_metadata(out)["label_space"] == "unlabelled"


def test_checkpoint_head_mismatch_messages(tmp_path):
    imagenet_head = _resnet18(tmp_path, 1000, "in1k.pth")
    with pytest.raises(LabelSpaceError) as err:
        build_scorer({"spec": "torchvision:resnet18", "weights": str(imagenet_head)}, "cpu", classes=CLASSES)
    msg = str(err.value)
    assert "in1k.pth" in msg and "has a 1000-way head (fc.weight) but the manifest has 3 classes (car, cat, dog)" in msg
    assert "class_map" in msg and "\n" not in msg
    five = _resnet18(tmp_path, 5, "five.pth")
    with pytest.raises(LabelSpaceError, match="5-way head .* manifest's labels are ImageNet-1k"):
        build_scorer({"spec": "torchvision:resnet18", "weights": str(five)}, "cpu")
    own = _resnet18(tmp_path, 3, "own.pth")
    with pytest.raises(LabelSpaceError, match="class_map maps ImageNet classes, but .* 3-way head"):
        build_scorer({"spec": "torchvision:resnet18", "weights": str(own), "class_map": MAP}, "cpu",
                     classes=CLASSES)
    with pytest.raises(ValueError, match=r"does not fit torchvision:resnet34: .*missing key\(s\)") as err:
        build_scorer({"spec": "torchvision:resnet34", "weights": str(own)}, "cpu", classes=CLASSES)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------ ZSCLIP


def test_zsclip_prompts_with_the_manifests_class_names(tiny_clip, tmp_path):
    classes = ["golden_retriever", "tabby-cat"]
    manifest = _own_manifest(tmp_path, classes, per=2)
    spec = {"spec": f"open_clip:{tiny_clip.arch}/random", "weights": str(tiny_clip.path)}
    scorer = build_scorer(spec, "cpu", classes=classes)
    assert scorer.classnames == ("golden retriever", "tabby cat")
    out = score_manifest(scorer, manifest, tmp_path / "zs.parquet", **RUN)
    df = pd.read_parquet(out)
    assert df["pred"].between(0, 1).all()
    np.testing.assert_array_equal(df["correct"], df["pred"] == df["label"])
    meta = parts.read_score_metadata(out)
    assert meta["label_space"] == "own" and json.loads(meta["classes"]) == classes
    assert json.loads(meta["classnames"]) == ["golden retriever", "tabby cat"]
    assert build_scorer(spec, "cpu").classnames[0] == "tench"  # ImageNet labels: the 1000 names
    names = tmp_path / "names.txt"
    names.write_text("a dog\n\na cat\n")
    assert build_scorer({**spec, "classnames": str(names)}, "cpu", classes=classes).classnames == ("a dog", "a cat")
    with pytest.raises(LabelSpaceError, match="has 1 class names .* manifest has 2 classes"):
        build_scorer({**spec, "classnames": ["only one"]}, "cpu", classes=classes)
    with pytest.raises(LabelSpaceError, match="names.txt.gone' does not exist"):
        build_scorer({**spec, "classnames": str(tmp_path / "names.txt.gone")}, "cpu", classes=classes)
    # a class map prompts with the mapped ImageNet names; pred is the own class
    mapped = build_scorer({**spec, "class_map": MAP}, "cpu", classes=CLASSES)
    assert mapped.classnames == ("Golden Retriever", "tabby cat", "tiger cat", "station wagon", "sports car")
    res = mapped.score(torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2]))
    assert set(res["pred"]) <= {0, 1, 2}


def test_resume_refuses_parts_of_another_label_space(tmp_path, monkeypatch):
    manifest = _own_manifest(tmp_path, per=1)
    monkeypatch.setattr(parts, "merge_parts", lambda *a, **k: (0, 0))  # keep the parts
    score_manifest("tv", manifest, tmp_path / "tv.parquet", **RUN)
    meta = json.loads((parts.parts_dir(tmp_path / "tv.parquet") / "meta.json").read_text())
    assert meta["labels"]["classes"] == CLASSES
    df = pd.read_parquet(manifest)  # same rows and labels, other class names
    write_manifest(ManifestResult(df, pd.DataFrame(columns=list(FAILURE_COLUMNS)), ["a", "b", "c"]), manifest)
    with pytest.raises(RuntimeError, match="different run .*labels"):
        score_manifest("tv", manifest, tmp_path / "tv.parquet", **RUN)


def test_imagenet_manifest_metadata_and_own_label_range(tmp_path):
    out = score_manifest("tv", _imagenet_manifest(tmp_path), tmp_path / "tv.parquet", **RUN)
    assert parts.read_score_metadata(out)["label_space"] == "imagenet"
    manifest = _own_manifest(tmp_path, per=1)
    df = pd.read_parquet(manifest).assign(label=[0, 1, 7])
    write_manifest(ManifestResult(df, pd.DataFrame(columns=list(FAILURE_COLUMNS)), CLASSES), manifest)
    with pytest.raises(ValueError, match="has 3 classes but label 7"):
        score_manifest("tv", manifest, tmp_path / "x.parquet", **RUN)

"""Synthetic score files with a known structure, for tests and the analysis benchmark.

Each image has a latent difficulty, each (corruption, severity) group a latent damage.
Classifiers are correct with probability sigmoid(bias - difficulty - damage + noise); their
task-guided Q (q_l, q_p, q_h) track the same signal, the NR-IQA scores track mostly the
damage, so group-wise correlations are strong and point-wise AUCs modest, as in the paper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iqa_lib.analysis.mixtures import IMAGENET_C

NR_SCORERS = ("clipiqa", "arniqa", "brisque", "tv")
CLASSIFIERS = ("resnet34", "convnext_base", "swin_b")
ZERO_SHOT = ("zsclip",)


def _keys(n_images: int, corruptions, severities, n_labels: int):
    variants = [("clean", 0)] + [(c, s) for c in corruptions for s in severities]
    n_var = len(variants)
    img = np.repeat(np.arange(n_images, dtype=np.int32), n_var)
    var = np.tile(np.arange(n_var, dtype=np.int32), n_images)
    cor_names = sorted({c for c, _ in variants})
    cor_of_var = np.array([cor_names.index(c) for c, _ in variants], dtype=np.int32)
    sev_of_var = np.array([s for _, s in variants], dtype=np.int64)
    ids = pa.array([f"img_{i:07d}" for i in range(n_images)])
    return img, var, cor_names, cor_of_var, sev_of_var, ids, n_var


def write_synthetic_scores(
    out_dir: str | Path,
    n_images: int = 200,
    *,
    corruptions=IMAGENET_C,
    severities=(1, 2, 3, 4, 5),
    n_labels: int = 1000,
    nr_scorers=NR_SCORERS,
    classifiers=CLASSIFIERS,
    zero_shot=ZERO_SHOT,
    seed: int = 0,
) -> Path:
    """Write ``<scorer>.parquet`` files (docs/architecture.md, "Score files") for ``n_images`` image IDs.

    Every image has a clean row and one row per (corruption, severity): 76 variants with the
    defaults. Scores are float32, keys dictionary-encoded, like real score files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img, var, cor_names, cor_of_var, sev_of_var, ids, n_var = _keys(
        n_images, corruptions, severities, n_labels
    )
    n = img.size
    label = (np.arange(n_images) % n_labels).astype(np.int64)[img]
    difficulty = rng.normal(0, 1, n_images)[img]
    label_effect = rng.normal(0, 0.5, n_labels)[label]
    strength = rng.uniform(0.2, 0.8, len(cor_names))
    damage_var = np.where(sev_of_var == 0, 0.0, strength[cor_of_var] * sev_of_var)
    damage = damage_var[var]
    keys = {
        "image_id": pa.DictionaryArray.from_arrays(pa.array(img), ids),
        "corruption": pa.DictionaryArray.from_arrays(
            pa.array(cor_of_var[var]), pa.array(cor_names)
        ),
        "severity": pa.array(sev_of_var[var]),
        "label": pa.array(label),
    }

    def write(name: str, cols: dict, kind: str | None = None) -> None:
        table = pa.table({**keys, **cols})
        if kind:
            table = table.replace_schema_metadata({"kind": kind})
        pq.write_table(table, out / f"{name}.parquet")

    for k, name in enumerate(nr_scorers):
        weight = 0.3 + 0.2 * k
        group_noise = rng.normal(0, 0.3, n_var)[var]
        q = -weight * damage + group_noise + 0.2 * difficulty + rng.normal(0, 1.0, n)
        write(name, {"q": pa.array(q.astype(np.float32))})
    for k, name in enumerate((*classifiers, *zero_shot)):
        zs = name in zero_shot
        bias = 2.0 + 0.5 * k - (1.0 if zs else 0.0)
        signal = bias - difficulty - label_effect - damage + rng.normal(0, 0.8, n)
        correct = rng.random(n) < 1 / (1 + np.exp(-signal))
        q_l = (signal + rng.normal(0, 1.5 if zs else 1.0, n)).astype(np.float32)
        q_p = (1 / (1 + np.exp(-q_l))).astype(np.float32)
        q_h = (-q_l + rng.normal(0, 0.5, n)).astype(np.float32)
        pred = np.where(correct, label, (label + 1) % n_labels)
        write(
            name,
            {
                "pred": pa.array(pred),
                "correct": pa.array(correct),
                "q_p": pa.array(q_p),
                "q_h": pa.array(q_h),
                "q_l": pa.array(q_l),
            },
            "zero_shot" if zs else "classifier",
        )
    return out

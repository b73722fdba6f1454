"""Backbone embeddings (learned_q's optional input) for every row of a manifest, to a .npy beside its keys.

    python benchmarks/learned_q_embeddings.py MANIFEST ROOT OUT_PREFIX [--backbone efficientnet_lite:lite0]

Writes OUT_PREFIX.npy (float32, rows x width, row i = manifest row i) and
OUT_PREFIX.keys.parquet (image_id, corruption, severity of each row); resumes from
OUT_PREFIX.part<k>.npy chunks of 500 rows. Paths in the manifest are relative to ROOT.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iqa_lib.data.images import load_rgb_array
from iqa_lib.scorers.learned_q_embed import Embedder

CHUNK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("root")
    parser.add_argument("out_prefix")
    parser.add_argument("--backbone", default="efficientnet_lite:lite0")
    args = parser.parse_args()
    man = pd.read_parquet(args.manifest)
    emb = Embedder(args.backbone, torch.device("cpu"))
    parts = []
    t0 = time.time()
    for k, start in enumerate(range(0, len(man), CHUNK)):
        part = Path(f"{args.out_prefix}.part{k}.npy")
        if not part.is_file():
            rows = man.iloc[start:start + CHUNK]
            imgs = [torch.from_numpy(load_rgb_array(Path(args.root) / p)).permute(2, 0, 1)[None]
                    for p in rows["path"]]
            np.save(part, np.concatenate([emb(x) for x in imgs]).astype(np.float32))
            print(f"{start + len(rows)}/{len(man)} rows, {time.time() - t0:.0f} s", flush=True)
        parts.append(np.load(part))
    np.save(f"{args.out_prefix}.npy", np.concatenate(parts))
    man[["image_id", "corruption", "severity"]].to_parquet(f"{args.out_prefix}.keys.parquet", index=False)


if __name__ == "__main__":
    main()

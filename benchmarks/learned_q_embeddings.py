"""Backbone embeddings (learned_q's optional input) for every row of a manifest, to a .npy beside its keys.

    python benchmarks/learned_q_embeddings.py MANIFEST ROOT OUT_PREFIX [--backbone efficientnet_lite:lite0]
        [--shard I/N]

Writes OUT_PREFIX.npy (float32, rows x width, row i = manifest row i) and
OUT_PREFIX.keys.parquet (image_id, corruption, severity of each row); resumes from
OUT_PREFIX.part<k>.npy chunks of 500 rows. Paths in the manifest are relative to ROOT.
``--shard I/N`` computes only the chunks k with k % N == I (run N processes with one torch
thread each: one image at a time keeps a second thread mostly idle); the process that finds
every chunk done writes OUT_PREFIX.npy.
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
    parser.add_argument("--shard", default="0/1", help="I/N: compute chunks k with k %% N == I")
    args = parser.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    if shards > 1:
        torch.set_num_threads(1)
    man = pd.read_parquet(args.manifest)
    emb = Embedder(args.backbone, torch.device("cpu"))
    t0 = time.time()
    chunks = [Path(f"{args.out_prefix}.part{k}.npy") for k in range(-(-len(man) // CHUNK))]
    for k, part in enumerate(chunks):
        if not part.is_file() and k % shards == shard:
            rows = man.iloc[k * CHUNK:(k + 1) * CHUNK]
            imgs = [torch.from_numpy(load_rgb_array(Path(args.root) / p)).permute(2, 0, 1)[None]
                    for p in rows["path"]]
            tmp = part.with_name(f"{part.stem}.{shard}.tmp.npy")  # renamed whole: a reader never sees half
            np.save(tmp, np.concatenate([emb(x) for x in imgs]).astype(np.float32))
            tmp.replace(part)
            print(f"chunk {k + 1}/{len(chunks)}, {time.time() - t0:.0f} s", flush=True)
    if not all(part.is_file() for part in chunks):
        print("other shards' chunks are not done yet: OUT_PREFIX.npy is written by the last to finish")
        return
    parts = [np.load(part) for part in chunks]
    np.save(f"{args.out_prefix}.npy", np.concatenate(parts))
    man[["image_id", "corruption", "severity"]].to_parquet(f"{args.out_prefix}.keys.parquet", index=False)


if __name__ == "__main__":
    main()

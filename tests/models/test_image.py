"""The image encoder's weight loading (torchvision weights API, local file, refusal) and batching."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torchvision

from moodshift.models.image import BackboneWeightsUnavailable, ImageEncoder


@pytest.fixture(scope="module")
def trained_like_state():
    """A resnet18 state dict standing in for downloaded ImageNet weights (made here, offline)."""
    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def torch_hub(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def same_trunk(encoder: ImageEncoder, state: dict) -> bool:
    own = encoder.trunk.state_dict()
    return all(torch.equal(own[k], state[k]) for k in own)


def test_refuses_without_weights(torch_hub):
    with pytest.raises(BackboneWeightsUnavailable, match="allow_random"):
        ImageEncoder("resnet18")
    with pytest.raises(BackboneWeightsUnavailable):
        ImageEncoder("resnet18", weights=None)


def test_loads_through_torchvision_weights_api_from_its_cache(torch_hub, trained_like_state):
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    (torch_hub / "checkpoints").mkdir(parents=True)
    torch.save(trained_like_state, torch_hub / "checkpoints" / os.path.basename(url))
    encoder = ImageEncoder("resnet18", weights="DEFAULT")
    assert not encoder.random_weights
    assert same_trunk(encoder, trained_like_state)


def test_loads_a_local_weights_file(tmp_path, trained_like_state):
    path = tmp_path / "backbone.pth"
    torch.save(trained_like_state, path)
    encoder = ImageEncoder("resnet18", weights=path)
    assert not encoder.random_weights and same_trunk(encoder, trained_like_state)
    with pytest.raises(BackboneWeightsUnavailable):
        ImageEncoder("resnet18", weights=tmp_path / "missing.pth")


def test_random_backbone_is_marked_reproducible_and_frozen(torch_hub):
    a = ImageEncoder("resnet18", allow_random=True)
    b = ImageEncoder("resnet18", weights=None, allow_random=True)
    assert a.random_weights and a.describe()["random_weights"]
    assert same_trunk(a, b.trunk.state_dict())
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.trunk.training


def test_batches_match_single_images_and_accept_every_layout(torch_hub):
    encoder = ImageEncoder("resnet18", allow_random=True, crop_size=64)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    batch = encoder.encode(images)
    assert batch.shape == (3, 512)
    assert torch.allclose(encoder.encode(images[1]), batch[1:2], atol=1e-4)
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(encoder.encode(as_float), batch, atol=1e-4)
    mixed = encoder.encode([images[0], rng.integers(0, 256, (90, 40, 3), dtype=np.uint8)])
    assert torch.allclose(mixed[0], batch[0], atol=1e-4) and mixed.shape == (2, 512)
    assert encoder.encode([]).shape == (0, 512)

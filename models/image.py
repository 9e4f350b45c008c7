"""Images and video frames → pooled features of a frozen torchvision backbone.

The method uses an ImageNet-trained ResNet-101 (2048-d pooled features); a smaller torchvision
model (``resnet18``: 512-d) suits small machines. Weights come through torchvision's own weights
API (from its cache, or downloaded when ``allow_download=True``) or from a local ``.pth`` file.
Without weights the encoder refuses, unless ``allow_random=True``: then it builds a reproducibly
seeded random trunk and says so in ``random_weights``, which checkpoints and outputs carry on.

>>> encoder = ImageEncoder("resnet18", weights=None, allow_random=True)
>>> encoder.feature_dim, encoder.random_weights
(512, True)
>>> encoder.encode(np.zeros((2, 40, 60, 3), dtype=np.uint8)).shape
torch.Size([2, 512])
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageBatch = np.ndarray | torch.Tensor | Sequence[np.ndarray]


class BackboneWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and cannot be found offline."""


def _drop_head(model: nn.Module) -> nn.Module:
    """Replace the classification head so the model returns its pooled trunk features."""
    if isinstance(getattr(model, "fc", None), nn.Linear):  # ResNet, ResNeXt, RegNet, ...
        model.fc = nn.Identity()
    elif isinstance(getattr(model, "classifier", None), nn.Module):  # MobileNet, EfficientNet, ...
        model.classifier = nn.Identity()
    else:
        raise ValueError(f"{type(model).__name__}: no `fc` or `classifier` head to remove")
    return model


def load_weights(backbone: str, weights: str | os.PathLike, allow_download: bool) -> dict:
    """A state dict for ``backbone``: a weights-enum name (``DEFAULT``, ``IMAGENET1K_V2``) or a file."""
    path = Path(weights)
    if path.suffix in (".pth", ".pt") or path.exists():
        if not path.exists():
            raise BackboneWeightsUnavailable(f"{path}: no such weights file")
        return torch.load(path, map_location="cpu", weights_only=True)
    entry = torchvision.models.get_model_weights(backbone)[str(weights)]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    if not cached.exists() and not allow_download:
        raise BackboneWeightsUnavailable(
            f"{backbone} {entry}: not in torchvision's cache ({cached}). Download it once "
            "(allow_download=True), give a local .pth path, or pass allow_random=True for a "
            "random backbone (its outputs are marked random)."
        )
    return entry.get_state_dict(progress=False)


class ImageEncoder(nn.Module):
    """A frozen, batched torchvision trunk: images → [N, feature_dim] float32 on the CPU.

    Inputs: uint8 [N, H, W, 3] or [H, W, 3] (numpy or torch), a list of uint8 HWC arrays of any
    sizes, or float [N, 3, H, W] in [0, 1]. Each image is resized (shorter side), centre-cropped
    and normalised as for ImageNet. On CUDA it runs ``channels_last`` under autocast.
    """

    def __init__(
        self,
        backbone: str = "resnet101",
        weights: str | os.PathLike | None = "DEFAULT",
        *,
        allow_random: bool = False,
        allow_download: bool = False,
        random_seed: int = 0,
        device: str | torch.device = "cpu",
        crop_size: int = 224,
    ) -> None:
        super().__init__()
        state_dict = None
        if weights is not None:
            try:
                state_dict = load_weights(backbone, weights, allow_download)
            except BackboneWeightsUnavailable:
                if not allow_random:
                    raise
        elif not allow_random:
            raise BackboneWeightsUnavailable("weights=None needs allow_random=True")
        # A random trunk is seeded, so training and serving processes build the same one.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_seed)
            model = torchvision.models.get_model(backbone, weights=None)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        self.trunk = _drop_head(model).eval().requires_grad_(False)
        self.backbone = backbone
        self.random_weights = state_dict is None
        self.crop_size = crop_size
        self.resize_size = round(crop_size * 232 / 224)  # torchvision's ImageNet recipe
        self.device = torch.device(device)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.to(self.device)
        if self.device.type == "cuda":
            self.trunk.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, crop_size, crop_size, device=self.device)
            self.feature_dim = int(self.trunk(probe).shape[1])

    def train(self, mode: bool = True) -> "ImageEncoder":
        # Frozen: batch-norm statistics never move, whatever the caller's mode.
        return super().train(False)

    def preprocess(self, images: ImageBatch) -> torch.Tensor:
        """Any accepted input → normalised float [N, 3, crop, crop] on the encoder's device."""
        if isinstance(images, (list, tuple)):
            return torch.cat([self.preprocess(image) for image in images]) if images else torch.zeros(
                0, 3, self.crop_size, self.crop_size, device=self.device
            )
        batch = torch.as_tensor(images)
        if batch.dtype == torch.uint8:
            if batch.ndim == 3:
                batch = batch.unsqueeze(0)
            batch = batch.permute(0, 3, 1, 2).float().div_(255.0)  # NHWC uint8 -> NCHW [0, 1]
        elif batch.ndim == 3:
            batch = batch.unsqueeze(0)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected RGB images, got shape {tuple(batch.shape)}")
        batch = batch.to(self.device)
        batch = TF.resize(batch, [self.resize_size], antialias=True)
        batch = TF.center_crop(batch, [self.crop_size, self.crop_size])
        return (batch - self.mean) / self.std

    @torch.inference_mode()
    def encode(self, images: ImageBatch) -> torch.Tensor:
        batch = self.preprocess(images)
        if len(batch) == 0:
            return torch.zeros(0, self.feature_dim)
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cuda", dtype=torch.float16) if on_cuda else contextlib.nullcontext()
        with autocast:
            features = self.trunk(batch)
        return features.float().cpu()

    def describe(self) -> dict:
        """What a checkpoint records about the features it was trained on."""
        return {"backbone": self.backbone, "feature_dim": self.feature_dim,
                "random_weights": self.random_weights, "crop_size": self.crop_size}

"""A hand-written reference for torchvision's Vision Transformer (``vit_b_16``).

Rebuilt from the published architecture (Dosovitskiy et al., torchvision's ``VisionTransformer``)
in the manner of ``zoo_reference``: the same modules, hyperparameters (LayerNorm eps 1e-6, exact
GELU, ``nn.MultiheadAttention(batch_first=True)``) and registration order under the same names, so
``state_dict()`` yields torchvision's keys, order and shapes: ``class_token``, ``conv_proj.*``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_<i>.{ln_1, self_attention, ln_2, mlp}``,
``encoder.ln``, ``heads.head``.

Unlike the convolutional references, this one is tied to one image size: the position embedding
has one row per patch plus the class token's. ``VisionTransformer(image_size=...)`` builds it at
any size; ``MAKERS_VIT`` builds ``vit_b_16`` at 224 (``REFERENCE_SIZE``).

Its multiply-accumulates cannot be measured with ``zoo_reference.conv_linear_macs``'s forward
hooks: ``nn.MultiheadAttention`` uses its projections' weights without calling them, and its two
matrix products are no module at all. ``flop_counter_macs`` measures them with torch's
``FlopCounterMode`` instead (each multiply-accumulate is two of its FLOPs; bias additions are
not counted, as in torchvision's convention).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

# torchvision's ViT_B_16_Weights.IMAGENET1K_V1 meta: num_params 86,567,656, and "GFLOPS" 17.56
# (its docs' table; the meta rounds it to 17.6). The MACs are the exact figure behind it at 224:
# conv_proj 196*768*768 + per encoder layer (197 tokens, D = 768) the four projections 4*197*D*D,
# the two attention products 2*197*197*D and the MLP 2*197*D*3072, times 12, + the head 768*1000.
PUBLISHED_VIT: dict[str, tuple[int, int]] = {
    "vit_b_16": (86_567_656, 17_563_828_224),
}

# The image side each reference is built for (its position embedding fixes it).
REFERENCE_SIZE: dict[str, int] = {"vit_b_16": 224}


class MLPBlock(nn.Sequential):
    """torchvision's ``MLPBlock``: Linear, GELU, Dropout, Linear, Dropout (children 0 to 4)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mlp_dim, dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm transformer layer: x + dropout(attention(ln_1(x))), then + mlp(ln_2(.))."""

    def __init__(self, heads: int, dim: int, mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(inp)
        x = self.self_attention(x, x, x, need_weights=False)[0]
        x = self.dropout(x) + inp
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """The position embedding added, dropout, the layers, a final LayerNorm."""

    def __init__(self, seq_length: int, layers: int, heads: int, dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, dim, mlp_dim, dropout, attention_dropout))
            for i in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """Patches embedded by a strided conv, a learned class token in front, the encoder, the class
    token's features through the head. Registration order as torchvision's (``class_token`` is
    registered after ``conv_proj`` but, being the root's own parameter, comes first in the
    state_dict)."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, layers: int = 12, heads: int = 12,
                 dim: int = 768, mlp_dim: int = 3072, num_classes: int = 1000,
                 dropout: float = 0.0, attention_dropout: float = 0.0) -> None:
        super().__init__()
        assert image_size % patch_size == 0, "the image side must divide by the patch size"
        self.image_size, self.patch_size, self.dim = image_size, patch_size, dim
        self.conv_proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, layers, heads, dim, mlp_dim, dropout, attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        assert h == w == self.image_size, f"this reference takes {self.image_size}x{self.image_size} images"
        x = self.conv_proj(x).reshape(n, self.dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


MAKERS_VIT: dict[str, Callable[[int], nn.Module]] = {
    "vit_b_16": lambda n: VisionTransformer(num_classes=n),
}


def flop_counter_macs(model: nn.Module, input_shape: tuple[int, ...] = (3, 224, 224)) -> int:
    """Multiply-accumulates for one sample as torch's FlopCounterMode counts them, halved.

    Run with autograd on (eval mode, dropout off) so ``nn.MultiheadAttention`` takes its composite
    path (projections, then ``scaled_dot_product_attention``), and with that on its math backend:
    FlopCounterMode counts neither the fused inference kernel nor the CPU flash kernel, but it
    counts the math backend's two batched products, which compute the same thing.
    """
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2

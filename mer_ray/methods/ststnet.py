"""STSTNet: Liong, Gan, See, Khor and Huang, "Shallow Triple Stream Three-dimensional CNN
(STSTNet) for Micro-expression Recognition", FG 2019 (MEGC 2019).

Input: optical strain, horizontal and vertical flow from the onset to the apex frame, 28 x 28,
as three channels. Three shallow streams read all three channels, each one 3 x 3 convolution
(3, 5 and 8 filters) with ReLU, batch normalisation and 3 x 3 max pooling (stride 3); their
outputs are concatenated (16 channels), average-pooled 2 x 2 and classified by one linear
layer. 1,683 trainable parameters for 3 classes (batch normalisation's included; counted by
``ststnet_parameters``).

Published on the MEGC 2019 composite (leave-one-subject-out, 3 classes): UF1 0.7353,
UAR 0.7605. Our recipe (``recipe``): Adam, lr 5e-4, batch 32, up to 60 epochs with validation
early stopping (patience 15).
"""

from __future__ import annotations

import torch
from torch import nn

from .flow_nets import flow_fit, trainable
from .registry import Method, register

SIZE = 28
CHANNELS = ("strain", "flow_u", "flow_v")


class STSTNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.streams = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(width),
                          nn.MaxPool2d(3, stride=3, padding=1))
            for width in (3, 5, 8))
        self.pool = nn.AvgPool2d(2, stride=2)
        self.classifier = nn.Linear(16 * 5 * 5, num_classes)

    def forward(self, flow: torch.Tensor) -> dict:
        """flow: (B, 3, 28, 28) strain, u, v -> {"logits": (B, classes)}."""
        x = torch.cat([s(flow) for s in self.streams], dim=1)  # (B, 16, 10, 10)
        return {"logits": self.classifier(self.pool(x).flatten(1))}


def ststnet_parameters(exp, classes: int) -> int:
    return trainable(STSTNet(classes))


register(Method(
    "ststnet", "STSTNet: three shallow CNN streams on onset-apex optical strain and flow",
    flow_fit(STSTNet, CHANNELS, SIZE), ststnet_parameters,
    columns=("subject", "clip", "label_id", "flow_u", "flow_v", "strain"), needs_flow=True,
    recipe=("train.lr=5e-4", "train.batch_size=32", "train.max_epochs=60",
            "train.patience=15")))

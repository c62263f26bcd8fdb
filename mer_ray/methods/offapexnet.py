"""OFF-ApexNet: Gan, Liong, Yau, Huang and Tan, "OFF-ApexNet on micro-expression recognition
system", Signal Processing: Image Communication 74, 2019.

Input: the horizontal and vertical optical flow from the onset to the apex frame, 28 x 28, one
stream each. A stream: 5 x 5 convolution (6 filters), ReLU, 2 x 2 max pooling, 5 x 5
convolution (16 filters), ReLU, 2 x 2 max pooling; the two streams' features are concatenated
(2 x 16 x 7 x 7) and classified by a fully connected layer of 1024 units (ReLU, dropout 0.5)
and a linear output. 1,614,875 trainable parameters for 3 classes (``offapexnet_parameters``).

Published on the MEGC 2019 composite (leave-one-subject-out, 3 classes), as the STSTNet paper's
comparison reports it: UF1 0.7196, UAR 0.7096. Our recipe (``recipe``): Adam,
lr 1e-4, batch 32, up to 60 epochs with validation early stopping (patience 15).
"""

from __future__ import annotations

import torch
from torch import nn

from .flow_nets import flow_fit, trainable
from .registry import Method, register

SIZE = 28
CHANNELS = ("flow_u", "flow_v")


def _stream() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))


class OffApexNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.horizontal, self.vertical = _stream(), _stream()
        self.head = nn.Sequential(nn.Linear(2 * 16 * 7 * 7, 1024), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(1024, num_classes))

    def forward(self, flow: torch.Tensor) -> dict:
        """flow: (B, 2, 28, 28) u, v -> {"logits": (B, classes)}."""
        u, v = self.horizontal(flow[:, :1]), self.vertical(flow[:, 1:])
        return {"logits": self.head(torch.cat([u.flatten(1), v.flatten(1)], dim=1))}


def offapexnet_parameters(exp, classes: int) -> int:
    return trainable(OffApexNet(classes))


register(Method(
    "offapexnet", "OFF-ApexNet: two CNN streams on onset-apex horizontal and vertical flow",
    flow_fit(OffApexNet, CHANNELS, SIZE), offapexnet_parameters,
    columns=("subject", "clip", "label_id", "flow_u", "flow_v"), needs_flow=True,
    recipe=("train.lr=1e-4", "train.batch_size=32", "train.max_epochs=60",
            "train.patience=15")))

"""STSTNet: Liong, Gan, See, Khor and Huang, "Shallow Triple Stream Three-dimensional CNN
(STSTNet) for Micro-expression Recognition", FG 2019 (MEGC 2019; arXiv 1902.03634).

Built as the authors' published code builds it (christy1206/STSTNet, ``main.py``, class
``STSTNet``; the paper's Figure 2 draws the same three streams), layer by layer:

- input: optical strain, horizontal and vertical flow from the onset to the apex frame, 28 x 28,
  three channels (``main.py`` reads them as one 28 x 28 x 3 image per clip); normalised per clip
  and channel as the authors stored them (``flow_nets.py``);
- three parallel streams, each reading all three channels: a 3 x 3 convolution with 3, 5 and 8
  filters and padding 2 (``conv1``-``conv3``), then ReLU, batch normalisation, 3 x 3 max
  pooling with stride 3 and padding 1 (``maxpool``), dropout 0.5 (``dropout``): each stream
  30 x 30 -> 10 x 10;
- the 16 channels concatenated, 2 x 2 average pooling with stride 2 (``avgpool``): 16 x 5 x 5;
- one linear layer from 400 to the classes (``fc``).

1,683 trainable parameters for 3 classes (convolutions 84 + 140 + 224, batch normalisation
6 + 10 + 16, the linear layer 1,203); MEB's re-implementation (``meb/models/me_networks.py``) is
the same network.

Deviations from the authors' training, each with its reason (``recipe``): Adam at lr 5e-4,
batch 32, up to 60 epochs with early stopping on the validation subjects (patience 15), where
the authors train 800 epochs at lr 5e-5 with batch 256 and report the last epoch: their
schedule is sized for the 442-clip composite, ours for small sets on a CPU, and the epoch is
chosen on validation subjects like every method here. Inputs 0-1 instead of 0-255
(``flow_nets.py``). Full precision (``train.precision`` fp32), as the authors trained, whatever
the configuration file says (``demo.yaml``'s bf16 is the paper's model's); ``--set
train.precision=...`` still wins.

Published on the MEGC 2019 composite (leave-one-subject-out, 3 classes): UF1 0.7353,
UAR 0.7605.
"""

from __future__ import annotations

import torch
from torch import nn

from .flow_nets import FlowCNN
from .registry import Recipe, register

SIZE = 28
CHANNELS = ("strain", "flow_u", "flow_v")
WIDTHS = (3, 5, 8)  # the three streams' filters
DROPOUT = 0.5


def _stream(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=2), nn.ReLU(), nn.BatchNorm2d(width),
                         nn.MaxPool2d(3, stride=3, padding=1), nn.Dropout(DROPOUT))


class STSTNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.streams = nn.ModuleList(_stream(w) for w in WIDTHS)
        self.pool = nn.AvgPool2d(2, stride=2)
        self.classifier = nn.Linear(sum(WIDTHS) * 5 * 5, num_classes)

    def forward(self, flow: torch.Tensor) -> dict:
        """flow: (B, 3, 28, 28) strain, u, v -> {"logits": (B, classes)}."""
        x = torch.cat([s(flow) for s in self.streams], dim=1)  # (B, 16, 10, 10)
        return {"logits": self.classifier(self.pool(x).flatten(1))}


class STSTNetMethod(FlowCNN):
    name = "ststnet"
    summary = "STSTNet: three shallow CNN streams on onset-apex optical strain and flow"
    channels = CHANNELS
    size = SIZE
    recipe = Recipe(lr=5e-4, batch_size=32, max_epochs=60, patience=15, precision="fp32")

    def network(self, classes: int) -> nn.Module:
        return STSTNet(classes)


register(STSTNetMethod())

"""OFF-ApexNet: Gan, Liong, Yau, Huang and Tan, "OFF-ApexNet on micro-expression recognition
system", Signal Processing: Image Communication 74, 2019 (arXiv 1805.08699).

Built as the paper's text describes the network (its architecture section and figure; we
found no code of the authors'), layer by layer:

- input: the horizontal and the vertical optical flow from the onset to the apex frame, 28 x 28,
  one stream each; normalised per clip and channel as the flow methods' authors stored their
  maps (``flow_nets.py``);
- each stream: 5 x 5 convolution (6 filters, padded to keep 28 x 28), ReLU, 2 x 2 max pooling,
  5 x 5 convolution (16 filters), ReLU, 2 x 2 max pooling: 16 x 7 x 7;
- the two streams' features concatenated (2 x 16 x 7 x 7 = 1,568) into two fully connected
  layers of 1,024 units each (ReLU), then a linear layer to the classes (softmax in the loss).

2,664,475 trainable parameters for 3 classes (streams 2 x 2,572, the 1,024-unit layers
1,606,656 and 1,049,600, the output 3,075).

Choices where the paper gives no value, and deviations, with their reasons:
- dropout 0.5 after each 1,024-unit layer: MEB's value (below) for its fully connected layer;
- the recipe (``recipe``): Adam, lr 1e-4 (MEB's rate for it), batch 32, up to 60 epochs with early stopping on the validation subjects (patience 15): sized for
  small sets on a CPU, and the epoch chosen on validation subjects like every method here;
  full precision (``train.precision`` fp32) as the authors trained, whatever the configuration
  file says (``demo.yaml``'s bf16 is the paper's model's), unless ``--set`` says otherwise;
- inputs 0-1 (``flow_nets.py``).

MEB's re-implementation (``meb/models/me_networks.py``, ``OffApexNet``) differs from the paper:
one stream on the 2-channel (u, v) input instead of two, 3 x 3 convolutions with padding 1
instead of 5 x 5, and one fully connected layer of 1,024 units instead of two (1,614,875
parameters here, for 3 classes, with our two streams and 5 x 5 kernels). We build the paper's
network: it is the one whose published figures a comparison quotes.

Published on the MEGC 2019 composite (leave-one-subject-out, 3 classes), as the STSTNet paper's
comparison reports it: UF1 0.7196, UAR 0.7096.
"""

from __future__ import annotations

import torch
from torch import nn

from .flow_nets import FlowCNN
from .registry import Recipe, register

SIZE = 28
CHANNELS = ("flow_u", "flow_v")
HIDDEN = 1024  # each of the two fully connected layers
DROPOUT = 0.5


def _stream() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))


class OffApexNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.horizontal, self.vertical = _stream(), _stream()
        self.head = nn.Sequential(
            nn.Linear(2 * 16 * 7 * 7, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, num_classes))

    def forward(self, flow: torch.Tensor) -> dict:
        """flow: (B, 2, 28, 28) u, v -> {"logits": (B, classes)}."""
        u, v = self.horizontal(flow[:, :1]), self.vertical(flow[:, 1:])
        return {"logits": self.head(torch.cat([u.flatten(1), v.flatten(1)], dim=1))}


class OffApexNetMethod(FlowCNN):
    name = "offapexnet"
    summary = "OFF-ApexNet: two CNN streams on onset-apex horizontal and vertical flow"
    channels = CHANNELS
    size = SIZE
    recipe = Recipe(lr=1e-4, batch_size=32, max_epochs=60, patience=15, precision="fp32")

    def network(self, classes: int) -> nn.Module:
        return OffApexNet(classes)


register(OffApexNetMethod())

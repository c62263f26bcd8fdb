"""The registry of model variants: the ablation grid's rows (paper Table 6, then Table A2) and
full fine-tuning, each a label and the model settings it changes. The tests enumerate it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config import ModelConfig


@dataclass(frozen=True)
class Variant:
    """A model variant: its row label in the ablation grid and the model settings it changes."""

    label: str
    model: dict[str, Any]

    def values(self) -> dict[str, Any]:
        """The variant as configuration settings (``model.<field>``)."""
        return {f"model.{k}": v for k, v in self.model.items()}


# "baseline" is DinoV2 alone (frozen, no SFA, no DGAT: mean over frames into the fusion head).
VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", {"finetune": "frozen", "use_sfa": False,
                                     "use_dgat": False}),
    "lora_only": Variant("+LoRA", {"use_sfa": False, "use_dgat": False}),
    "no_dgat": Variant("+LoRA+SFA", {"use_dgat": False}),
    "no_sfa": Variant("+LoRA+DGAT", {"use_sfa": False}),
    "full": Variant("all (LoRA+SFA+DGAT)", {}),
    "no_lstm": Variant("all, DGAT without LSTM (A2)", {"use_lstm": False}),
    "full_finetune": Variant("full fine-tuning", {"finetune": "full"}),
}
# The ablation grid's rows, in order.
ABLATION = ("baseline", "lora_only", "no_dgat", "no_sfa", "full", "no_lstm")


def variant(name: str, **overrides) -> ModelConfig:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return replace(ModelConfig(**VARIANTS[name].model), **overrides)

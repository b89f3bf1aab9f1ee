"""Low-rank fine-tuning of our GPT with peft, for the paper's question: can a model that never saw a
mistake learn to correct itself from a little retry data (LoRA), or must it be in pretraining?"""

from __future__ import annotations

import copy

from mendlab.mistakes.model import GPT

TARGETS = ["qkv", "proj", "fc", "out"]  # every linear layer of the blocks


def with_lora(model: GPT, rank: int = 8, alpha: int = 16) -> GPT:
    """A copy of `model` with LoRA adapters on its linear layers; only the adapters train."""
    from peft import LoraConfig, inject_adapter_in_model

    tuned = copy.deepcopy(model)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS, bias="none")
    inject_adapter_in_model(config, tuned)  # in place
    for name, p in tuned.named_parameters():
        p.requires_grad = "lora_" in name
    return tuned


def trainable(model: GPT) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

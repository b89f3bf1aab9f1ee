"""Learning from mistakes: the iGSM lab of Physics of Language Models 2.2 (generator, checker, retry data,
tokenizer, and a small GPT trained from scratch). Submodules import torch only where they train."""

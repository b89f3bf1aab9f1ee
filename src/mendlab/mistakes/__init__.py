"""Learning from mistakes: the iGSM lab of Physics of Language Models 2.2 (generator, checker, retry data,
tokenizer, and a small GPT trained from scratch). Submodules import torch only where they train."""

# The version of what a run's results depend on besides its preset: the generator and its split, the
# checker, retry data, the tokenizer and the files a run writes. Bump it with any change to those; a run
# folder of another version is refused (its models and grades would not be this code's).
# 2: the split hashes the canonical structure; clean-context probe; solutions kept in the eval files;
#    progress counts necessary steps; training to a token budget.
# 3: greedy decodes every row to its own budget (a batch's longest prompt cut some short); train.json
#    counts the tokens trained on beside those read.
VERSION = 3

"""Training data for chat models: assistant-only labels from the model's own template, dialogues
built from the results store, and procedurally generated training scenarios."""

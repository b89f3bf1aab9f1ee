"""LLM judges: two models' answers to the same prompts compared by a third model in both orders, and how
far such a judge agrees with the rule grader on calendar turns (so users know how much to trust it)."""

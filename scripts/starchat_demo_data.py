"""Small StarChat-style demo dialogues (OpenAI `messages` JSONL) for teaching a base model to chat in turns.

Three kinds of short tasks (calendar calls, sums, greetings), one or two user turns each, with and without
a system prompt; `--held-out` writes the prompts of other names and numbers, never trained on, to try the
tuned model on. The README's StarChat run on gemma-3-270m-base uses:

    python scripts/starchat_demo_data.py -n 64 -o starchat.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

SYSTEM = "You are a helpful assistant. Answer in one short line."
NAMES = ["Ana", "Bo", "Cyril", "Dee", "Evelyn", "Finn", "Gus", "Hal", "Ines", "Jo", "Kai", "Lena", "Mo", "Nia", "Otto"]
HELD_OUT_NAMES = ["Pia", "Quentin", "Rosa", "Sam"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]


def calendar(rng: random.Random, who: str) -> tuple[str, str]:
    month = rng.randrange(len(MONTHS))
    day, hour = rng.randint(1, 28), rng.randint(8, 18)
    ask = f"Add a meeting with {who} on {MONTHS[month]} {day} at {hour}:00."
    call = f'action.add_calendar_entry("Meeting with {who}", date="2026-{month + 1:02d}-{day:02d}", time="{hour}:00")'
    return ask, call


def sums(rng: random.Random, _who: str) -> tuple[str, str]:
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def greeting(rng: random.Random, who: str) -> tuple[str, str]:
    return f"Say hello to {who}.", f"Hello, {who}!"


KINDS = (calendar, sums, greeting)


def dialogue(rng: random.Random, names: list[str]) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": SYSTEM})
    for _ in range(rng.choice((1, 1, 2))):
        ask, answer = rng.choice(KINDS)(rng, rng.choice(names))
        messages += [{"role": "user", "content": ask}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held-out", action="store_true", help="Prompts with other names, to try the model on.")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    rng = random.Random(args.seed + (1000 if args.held_out else 0))
    names = HELD_OUT_NAMES if args.held_out else NAMES
    rows = [dialogue(rng, names) for _ in range(args.n)]
    if args.held_out:  # the prompt before the first answer
        rows = [
            {"messages": r["messages"][: next(i for i, m in enumerate(r["messages"]) if m["role"] == "assistant")]}
            for r in rows
        ]
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()

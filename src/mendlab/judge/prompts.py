"""What the judge is asked, and how its answer is read.

Two formats, as the originals had them. MT-Bench (Zheng et al. 2023, FastChat's pairwise prompt): the
judge explains, then ends with [[A]], [[B]] or [[C]] for a tie. StarChat (after Vicuna's prompt): each
answer gets a score from 1 to 8, the two on the first line. Our wording, their formats.

Reading a verdict never guesses. FastChat takes the first of [[A]], [[B]], [[C]] it finds in that order,
so a judgment that mentions "[[A]]" while explaining and ends with [[B]] counts for A. Here a judgment
whose verdict tokens all agree is that verdict; one that names several is read by its last line only
when that line gives one verdict (the judge was asked to end with it); anything else is *unparsed*,
kept with its raw text and counted apart, never turned into a tie or a win.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from mendlab.dialogs.calls import strip_reasoning
from mendlab.models import Message

Mode = Literal["ab", "score"]
MODES: tuple[Mode, ...] = ("ab", "score")
Order = Literal["ab", "ba"]  # ab: answer a is shown first
ORDERS: tuple[Order, ...] = ("ab", "ba")
SCORE_MIN, SCORE_MAX = 1, 8

AB_SYSTEM = (
    "You are an impartial judge. Two AI assistants answered the same conversation; compare their answers to "
    "the user's last message and decide which one is better: the one that follows the user's instructions and "
    "answers correctly, helpfully and to the point. The order in which the answers are shown must not influence "
    "you, nor their length, nor the assistants' names. First explain your comparison briefly. Then give your "
    'verdict on the last line, exactly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B '
    'is better, "[[C]]" for a tie.'
)
SCORE_SYSTEM = "You are a helpful and precise assistant for checking the quality of answers."
SCORE_ASK = (
    "We would like your feedback on the two AI assistants' answers to the conversation above. Rate how "
    "helpful, relevant, accurate and detailed each answer is with one overall score from 1 to 8, where a "
    "higher score means a better answer. On the first line, write only the two scores, for Assistant 1 and "
    "Assistant 2 in that order, separated by a space. On the next lines, explain your evaluation, avoiding "
    "any bias and making sure the order in which the answers were shown does not affect your judgment."
)
GRADE_SYSTEM = (
    "You check the answers of an assistant that translates a user's requests into API calls, following the "
    "instructions and the API in its system prompt. Judge whether the assistant's last answer is exactly "
    "right for the user's last request in this conversation: the right function, every argument with the "
    "right value and format, and nothing but the call. First explain briefly. Then give your verdict on the "
    'last line, exactly in this format: "[[RIGHT]]" or "[[WRONG]]".'
)


def render_conversation(messages: Sequence[Message]) -> str:
    """The conversation the answers reply to, as the judge reads it."""
    system = [m.content for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    parts = [f"[System Prompt of the Assistants]\n{s}" for s in system]
    if len(turns) == 1 and turns[0].role == "user":
        parts.append(f"[User Question]\n{turns[0].content}")
    else:
        body = "\n\n".join(f"### {m.role.capitalize()}:\n{m.content}" for m in turns)
        parts.append(f"[The Start of the Conversation]\n{body}\n[The End of the Conversation]")
    return "\n\n".join(parts)


def _answers(first: str, second: str, labels: tuple[str, str]) -> str:
    return "\n\n".join(
        f"[The Start of Assistant {label}'s Answer]\n{text}\n[The End of Assistant {label}'s Answer]"
        for label, text in zip(labels, (first, second), strict=True)
    )


def pair_messages(mode: Mode, prompt: Sequence[Message], first: str, second: str) -> list[Message]:
    """The judge's request for one order: `first` is shown as A (ab mode) or Assistant 1 (score mode)."""
    convo = render_conversation(prompt)
    if mode == "ab":
        return [Message("system", AB_SYSTEM), Message("user", f"{convo}\n\n{_answers(first, second, ('A', 'B'))}")]
    body = f"{convo}\n\n{_answers(first, second, ('1', '2'))}\n\n[System]\n{SCORE_ASK}"
    return [Message("system", SCORE_SYSTEM), Message("user", body)]


def grade_messages(history: Sequence[Message], reply: str) -> list[Message]:
    """The judge's request to say whether one answer is right (agreement with the rule grader)."""
    convo = render_conversation(history)
    body = f"{convo}\n\n[The Start of the Assistant's Last Answer]\n{reply}\n[The End of the Assistant's Last Answer]"
    return [Message("system", GRADE_SYSTEM), Message("user", body)]


def prompt_version() -> str:
    """A digest of every prompt above: a run judged with other words is another run."""
    text = "\n".join((AB_SYSTEM, SCORE_SYSTEM, SCORE_ASK, GRADE_SYSTEM, render_conversation([Message("user", "q")])))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _one_token(text: str, pattern: re.Pattern[str], canon: dict[str, str], what: str) -> tuple[str | None, str]:
    """The one verdict token of a judgment (see the module's docstring), or None and why."""
    body = strip_reasoning(text)
    found = [(canon[m.group(1).lower()], m.start()) for m in pattern.finditer(body)]
    if not found:
        return None, f"no {what} in the judgment"
    distinct = {t for t, _ in found}
    if len(distinct) == 1:
        return found[0][0], ""
    lines = [line for line in body.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    on_last = {canon[m.group(1).lower()] for m in pattern.finditer(last)}
    if len(on_last) == 1:
        return on_last.pop(), ""
    return None, f"ambiguous: {', '.join(f'[[{t}]]' for t in sorted(distinct))} all given"


AB_RE = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)
AB_CANON = {"a": "A", "b": "B", "c": "C", "tie": "C"}
GRADE_RE = re.compile(r"\[\[\s*(right|wrong|correct|incorrect)\s*\]\]", re.IGNORECASE)
GRADE_CANON = {"right": "RIGHT", "correct": "RIGHT", "wrong": "WRONG", "incorrect": "WRONG"}
_NUM = r"(\d+(?:\.\d+)?)"
PAIR_RE = re.compile(rf"\[\[\s*{_NUM}\s*,\s*{_NUM}\s*\]\]")  # FastChat's two-score pattern
PAIR_BACKUP_RE = re.compile(rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*\]")
FIRST_LINE_RE = re.compile(rf"^\s*\**\s*{_NUM}\s*(?:,|\s)\s*{_NUM}\s*\**\s*$")  # Vicuna's "8 6" on the first line
LABELLED_RE = (  # a whole line "Assistant 1: 7" (bold, "/8" and "Score of" allowed), nothing else on it
    r"^\s*\**\s*(?:score\s+(?:of|for)\s+)?assistant\s*{n}\s*\**\s*(?::|=|-)\s*\**\s*{num}\s*(?:/\s*8)?\s*\**\s*$"
)
FIRST_LABELLED_RE = re.compile(LABELLED_RE.format(n=1, num=_NUM), re.IGNORECASE)
SECOND_LABELLED_RE = re.compile(LABELLED_RE.format(n=2, num=_NUM), re.IGNORECASE)


def parse_ab(text: str) -> tuple[str | None, str]:
    """The verdict, "A", "B" or "C" (a tie); or None and why."""
    return _one_token(text, AB_RE, AB_CANON, "[[A]], [[B]] or [[C]]")


def parse_grade(text: str) -> tuple[bool | None, str]:
    """True for [[RIGHT]], False for [[WRONG]], or None and why."""
    token, why = _one_token(text, GRADE_RE, GRADE_CANON, "[[RIGHT]] or [[WRONG]]")
    return (None if token is None else token == "RIGHT"), why


def parse_scores(text: str) -> tuple[tuple[float, float] | None, str]:
    """(score of the first answer, of the second), each 1–8, or None and why. Read from [[x, y]] (one of
    them, or several that agree), else from a first line of two numbers, else from first lines that are
    exactly "Assistant 1: x" and "Assistant 2: y", else from one [x, y]."""
    body = strip_reasoning(text)
    found: set[tuple[float, float]] = {(float(a), float(b)) for a, b in PAIR_RE.findall(body)}
    lines = [line for line in body.splitlines() if line.strip()]
    if not found and lines:
        m = FIRST_LINE_RE.match(lines[0])
        if m:
            found = {(float(m.group(1)), float(m.group(2)))}
    if not found and len(lines) >= 2:
        one, two = FIRST_LABELLED_RE.match(lines[0]), SECOND_LABELLED_RE.match(lines[1])
        if one and two:
            found = {(float(one.group(1)), float(two.group(1)))}
    if not found:
        found = {(float(a), float(b)) for a, b in PAIR_BACKUP_RE.findall(body)}
    if not found:
        return None, "no two scores in the judgment"
    if len(found) > 1:
        return None, f"ambiguous: {len(found)} different pairs of scores"
    pair = found.pop()
    if not all(SCORE_MIN <= s <= SCORE_MAX for s in pair):
        return None, f"score out of {SCORE_MIN}–{SCORE_MAX}: {pair[0]:g} {pair[1]:g}"
    return pair, ""

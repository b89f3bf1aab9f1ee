"""Reading what bargaining models say: the price in a line, a moderator's yes or no, a critic's
suggestions. Model text is untrusted and messy ("$15.50!", "fifteen bucks", "Yes, at $12."), so each
reader is a small grammar over it, never `eval`, and says "don't know" (None) rather than guess."""

from __future__ import annotations

import re

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WORD = (
    r"(?:(?:" + "|".join(_TENS) + r")(?:[\s-](?:" + "|".join(k for k in _UNITS if _UNITS[k] < 10 and k != "zero")
    + r"))?|" + "|".join(sorted(_UNITS, key=len, reverse=True)) + ")"
)  # fmt: skip
_DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_CURRENCY = r"(?:dollars?|bucks?|usd)\b"
_OFFER = (r"(?:offer|pay|how about|make it|counter(?: with)?|go (?:up |down )?to|settle (?:for|at|on)|sell (?:it )?for"
          r"|buy (?:it )?for|take it for|accept|give you|deal at|sold (?:it )?(?:for|at)|agreed (?:on|at)"
          r"|(?:can|could) (?:you |i )?do)")  # fmt: skip
_NOT_MONEY = (r"\s*(?:am|pm|a\.m|p\.m|%|percent|cents?|minutes?|mins?|hours?|days?|weeks?|o'clock|items?|balloons?"
              r"|pieces?|times|years?|people|things?)\b")  # fmt: skip
PRICE_RE = re.compile(
    rf"\$\s?(?P<a>{_DIGITS})(?![\d.]*\d)"  # $15, $ 15, $15.50, $1,000
    rf"|\b(?P<t>{_DIGITS})\s?\$"  # 15$
    rf"|\b(?P<b>{_DIGITS})\s?{_CURRENCY}"  # 15 dollars, 15.5 bucks, 15USD
    rf"|\busd\s?(?P<c>{_DIGITS})"  # USD 15
    rf"|\b(?P<w>{_WORD})\s{_CURRENCY}"  # fifteen dollars, twenty-five bucks
    rf"|\b{_OFFER}\s+(?P<o>{_DIGITS})\b(?!{_NOT_MONEY})(?!\.\d)"  # "I offer 15", "how about 12?", "deal at 12"
    rf"|\b(?P<i>{_DIGITS})\s+it is\b",  # "12 it is"
    re.IGNORECASE,
)
# "$5 off", "2 dollars less": an amount taken off or added, not a price
_CHANGE = re.compile(r"\s*(?:off|less|more|cheaper|lower|higher|discount|down|extra)\b", re.IGNORECASE)
# "not $20", "instead of $20", "down from $16", "(cost $8)": an amount said only to be turned down or compared
_REFERENCE = re.compile(
    r"(?:\bnot|\binstead of|\brather than|\bfrom|\bthan|\bcosts?|\bcost me|\bpaid|\bwas|\bwere)"
    r"\s*(?:even |only |just |at |for |me )?$",
    re.IGNORECASE,
)
_RANGE = re.compile(rf"\s?-\s?\$?({_DIGITS})\b(?!{_NOT_MONEY})(?!\s*=)", re.IGNORECASE)
_ARITHMETIC = re.compile(r"\s*(?:[-+*/x×]\s*\$?\s?\d[\d.,]*\s*)?=", re.IGNORECASE)
_CENTS = re.compile(r"\s*(?:and\s+)?(\d{1,2})\s*cents?\b", re.IGNORECASE)


def _words_to_int(text: str) -> int:
    total = 0
    for part in re.split(r"[\s-]+", text.lower()):
        total += _TENS.get(part, 0) + _UNITS.get(part, 0)
    return total


def prices(text: str) -> list[float]:
    """Every dollar amount offered in `text`, in order: "$15.50" 15.5, "15 dollars" 15.0, "fifteen bucks"
    15.0, "15$", "I offer 15", "13 dollars and 50 cents" 13.5, "$12-15" both ends. Not prices: a bare
    number elsewhere ("at 5 pm", "3 balloons"), an amount taken off or added ("$5 off", "2 dollars less"),
    one said to be turned down or compared ("not $20", "instead of $20", "down from $16", "cost $8")."""
    found: list[float] = []
    consumed = 0  # the end of a range already read: its upper end is not read again
    for m in PRICE_RE.finditer(text):
        if m.start() < consumed or _REFERENCE.search(text[max(0, m.start() - 24) : m.start()]):
            continue
        if _ARITHMETIC.match(text, m.end()) or re.search(r"=\s*-?\s*$", text[: m.start()]):
            continue  # "$8 - $40 = -$22": working out, not an offer
        rng = _RANGE.match(text, m.end()) if m.group("a") else None
        if rng:
            consumed = rng.end()
        if _CHANGE.match(text, rng.end() if rng else m.end()):
            if rng:  # "$15-$3 off": the 15 stands
                found.append(float(m.group("a").replace(",", "")))
            continue
        if m.group("w"):
            found.append(float(_words_to_int(m.group("w"))))
            continue
        digits = next(g for g in (m.group(k) for k in ("a", "t", "b", "c", "o", "i")) if g)
        value = float(digits.replace(",", ""))
        cents = _CENTS.match(text, m.end()) if m.group("b") else None
        if cents:
            value += int(cents.group(1)) / 100
        found.append(value)
        if rng and float(rng.group(1).replace(",", "")) > value:  # a range: its upper end comes last
            found.append(float(rng.group(1).replace(",", "")))
    return found


def last_price(text: str) -> float | None:
    """The last dollar amount of a line (two prices in one line: the later one is the offer)."""
    found = prices(text)
    return found[-1] if found else None


_ANY_NUMBER = re.compile(rf"\$\s?(?:{_DIGITS})|\b(?:{_DIGITS})(?:\s?\$|\b)|\b{_WORD}\b", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:\d+[.):]|[-*•])\s+")


def redact_prices(text: str) -> tuple[str, int]:
    """The critic must never name a price: every amount and every other number it wrote ("open at 25",
    "never below eighteen") becomes "[a price]", list numbering aside; how many there were."""
    out, count = [], 0
    for line in text.splitlines(keepends=True):
        mark = _LIST_MARK.match(line)
        head, body = (line[: mark.end()], line[mark.end() :]) if mark else ("", line)
        money = PRICE_RE.subn("[a price]", body)
        kept = 0

        def hide(m: re.Match[str]) -> str:
            nonlocal kept
            if m.group(0).lower() == "one":  # "one offer at a time" is not a price
                kept += 1
                return m.group(0)
            return "[a price]"

        rest = _ANY_NUMBER.subn(hide, money[0])
        out.append(head + rest[0])
        count += money[1] + rest[1] - kept
    return "".join(out), count


_CLAUSE = r"(?:(?!\bbut\b|\bthough\b|\bhowever\b)[^.?!,;])*"  # within one clause: "didn't budge, but agreed"
_NEG_DEAL = re.compile(
    r"\b(?:not?|never|haven't|hasn't|hadn't|didn't|don't|doesn't|isn't|wasn't|weren't|aren't|won't|can't|cannot"
    r"|without|yet to|failed to|almost|nearly|unable)\b" + _CLAUSE
    + r"\b(?:deal|agreement|agree|agreed|price|sold|bought)\b|\bno\s+(?:deal|agreement)\b",
    re.IGNORECASE,
)  # fmt: skip
_POS_DEAL = re.compile(
    r"\b(?:reached|achieved|made|struck|closed|agreed(?: on| to| at)?|settled(?: on| at)?|accepted)\b" + _CLAUSE
    + r"(?:\b(?:deal|agreement|price)\b|\$\s?\d)"
    r"|\bdeal (?:was |is |has been )?(?:made|reached|done|struck|closed)\b|\b(?:have|has|got) a deal\b"
    r"|\bit'?s a deal\b",
    re.IGNORECASE,
)  # fmt: skip


def yes_no(text: str) -> bool | None:
    """A moderator's answer to "have they made a deal?": the first yes or no it says, else a plain
    sentence about the deal ("They reached a deal", "no deal yet"); None when it says neither or both."""
    clean = text.replace("\u2019", "'").replace("\u2018", "'")
    clean = re.sub(r"[*_`#>\"]", " ", clean).strip().lower()
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", clean)  # "haven't" stays one word
    lead = [w for w in words[:3] if w in ("yes", "no")]  # "Yes.", "Answer: No", "**Yes**, they agreed"
    if lead:
        return bool(lead[0] == "yes") if len(set(lead)) == 1 else None
    first = next((w for w in words if w in ("yes", "no")), None)
    if first is not None:
        other = "no" if first == "yes" else "yes"
        if other not in words:
            return bool(first == "yes")
    for clause in re.split(r"[,;]|\bbut\b|\bthough\b|\bhowever\b", clean)[::-1]:  # the last clause decides
        if _NEG_DEAL.search(clause):  # "they have not reached a deal": the negation wins
            return False
        if _POS_DEAL.search(clause):
            return True
    if _NEG_DEAL.search(clean):
        return False
    if _POS_DEAL.search(clean):
        return True
    return None


_ITEM = re.compile(r"^\s*(?:\d+[.):]|[-*•])\s+(.*\S)\s*$")


def suggestions(text: str, limit: int = 3) -> list[str]:
    """A critic's numbered or bulleted suggestions (at most `limit`); its whole text if it wrote no list."""
    items = [m.group(1) for line in text.splitlines() if (m := _ITEM.match(line))]
    if items:
        return items[:limit]
    whole = " ".join(text.split())
    return [whole[:600]] if whole else []


def first_line(text: str, speakers: tuple[str, ...] = ()) -> str:
    """The one short sentence a turn asks for: the first non-empty line, without a speaker label or quotes."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for name in speakers:
        if line.lower().startswith(name.lower() + ":"):
            line = line[len(name) + 1 :].strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line[:300]

"""Calendar-like training scenarios, generated: other people, events, dates, times, durations and
orders of steps, in the built-in scenarios' YAML format, read back by the same loader.

A model tuned on the evaluation scenarios' own turns would score its memory, not its fixing; so the
generated scenarios are checked against the evaluation set (see `overlap`) and a draw that overlaps
is drawn again. Years are never those of an evaluation scenario, names never its names. A seed gives
the same files, byte for byte.
"""

from __future__ import annotations

import calendar as cal
import datetime as dt
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mendlab.dialogs.grading import check_reply
from mendlab.dialogs.scenario import Scenario, load_scenario, parse_scenario
from mendlab.errors import MendlabError
from mendlab.training.overlap import EvalSet, norm, scenario_overlap

NAMES = (
    "Ana", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lucia",
    "Marta", "Nils", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tomás", "Ulla", "Viktor", "Yara", "Zoltan",
)  # fmt: skip
CITIES = ("Lisbon", "Oslo", "Nairobi", "Kyoto", "Lima", "Porto", "Quebec", "Tunis")
# (title, with an article, with "the", the words that name it); {n} is a person, {c} a city
KINDS = (
    ("Meeting with {n}", "a meeting with {n}", "the meeting with {n}", ("{n}",)),
    ("Lunch with {n}", "lunch with {n}", "the lunch with {n}", ("{n}",)),
    ("Dinner with {n}", "dinner with {n}", "the dinner with {n}", ("{n}",)),
    ("Call with {n}", "a call with {n}", "the call with {n}", ("{n}",)),
    ("Coffee with {n}", "coffee with {n}", "the coffee with {n}", ("{n}",)),
    ("{n}'s birthday party", "{n}'s birthday party", "{n}'s birthday party", ("{n}", "birthday")),
    ("Piano lesson", "a piano lesson", "the piano lesson", ("piano",)),
    ("Doctor appointment", "a doctor appointment", "the doctor appointment", ("doctor",)),
    ("Haircut", "a haircut", "the haircut", ("haircut",)),
    ("Team standup", "the team standup", "the standup", ("standup",)),
    ("Tennis practice", "tennis practice", "tennis practice", ("tennis",)),
    ("Swimming lesson", "a swimming lesson", "the swimming lesson", ("swim",)),
    ("Jazz concert", "a jazz concert", "the jazz concert", ("jazz",)),
    ("Book club", "the book club", "the book club", ("book club",)),
    ("Car service", "the car service", "the car service", ("car service",)),
    ("Flight to {c}", "my flight to {c}", "the flight to {c}", ("flight", "{c}")),
    ("Parent-teacher meeting", "the parent-teacher meeting", "the parent-teacher meeting", ("teacher",)),
    ("Gym session", "a gym session", "the gym session", ("gym",)),
    ("Guitar lesson", "a guitar lesson", "the guitar lesson", ("guitar",)),
    ("Vet appointment", "a vet appointment", "the vet appointment", ("vet appointment",)),
)
DURATIONS = (  # minutes, as said after a request ("" : the default 30 of the system prompt)
    (30, ""), (30, " for half an hour"), (30, ", 1/2h"), (60, " for an hour"), (60, " for 1 hour"),
    (90, " for an hour and a half"), (90, " for 90 minutes"), (120, " for two hours"), (45, " for 45 minutes"),
    (20, " for 20 min"), (150, " for two and a half hours"), (180, " for 3 hours"),
)  # fmt: skip
LENGTHS = (
    (180, "3 hours"),
    (45, "45 minutes"),
    (60, "an hour"),
    (90, "90 minutes"),
    (120, "two hours"),
    (15, "15 minutes"),
)
YEAR_TOLD = ("The current year is {y}.", "We're in {y}.", "It's {y}, by the way.", "The year is {y}.")
ADD = (
    "Add {what} {date} {time}{dur}.",
    "Schedule {what} {date} {time}{dur}.",
    "Put {what} in my calendar {date} {time}{dur}.",
    "I have {what} {date} {time}{dur}. Add it to my calendar.",
    "Book {what} {date} {time}{dur}.",
)
REMOVE = ("Cancel {the}.", "Delete {the} from my calendar.", "Remove {the}.", "{The} is off, remove it.")


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def _ampm(h: int) -> tuple[int, str]:
    return (h % 12 or 12), ("am" if h < 12 else "pm")


def say_time(rng: random.Random, h: int, m: int) -> str:
    """One of the ways people say a time (the expected value is always HH:MM, 24 h)."""
    h12, ap = _ampm(h)
    forms = [f"at {h:02d}:{m:02d}"]
    if m == 0:
        forms += [f"at {h12}{ap.upper()}", f"at {h12}{ap}", f"at {h12} {ap}"]
        if h == 12:
            forms.append("at noon")
        else:
            part = "in the morning" if h < 12 else "in the afternoon" if h < 18 else "in the evening"
            forms.append(f"at {h12} {part}")
    else:
        forms.append(f"at {h12}:{m:02d}{ap}")
    if m == 30:
        part = "in the morning" if h < 12 else "in the afternoon" if h < 18 else "in the evening"
        forms.append(f"at half past {h12} {part}")
    if m == 15:
        forms.append(f"at a quarter past {h12}{ap}")
    if m == 45:
        nh12, nap = _ampm(h + 1)
        forms.append(f"at a quarter to {nh12}{nap}")
    return rng.choice(forms)


def say_date(rng: random.Random, d: dt.date, *, year: bool) -> str:
    month, short = cal.month_name[d.month], cal.month_abbr[d.month]
    if year:
        return rng.choice(
            [f"on {month} {d.day}, {d.year}", f"on {d.day} {month} {d.year}", f"on {short} {d.day} {d.year}"]
        )
    return rng.choice([f"on {short} {d.day}", f"on {month} {d.day}", f"on the {_ordinal(d.day)} of {month}"])


@dataclass
class _Event:
    key: str
    title: str
    what: str
    the: str
    words: tuple[str, ...]
    date: dt.date = dt.date(2000, 1, 1)
    time: str = "00:00"
    duration: int = 30


@dataclass
class _Draft:
    year: int
    today: dt.date
    events: list[_Event] = field(default_factory=list)  # in the order they were added
    turns: list[str] = field(default_factory=list)  # YAML lines of the turns


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _pick_events(rng: random.Random, n: int) -> list[_Event]:
    names = rng.sample(NAMES, len(NAMES))
    cities = rng.sample(CITIES, len(CITIES))
    out: list[_Event] = []
    for kind in rng.sample(KINDS, len(KINDS)):
        if len(out) == n:
            break
        title, what, the, words = kind
        person, city = names[len(out)], cities[len(out)]

        def fill(s: str, person: str = person, city: str = city) -> str:
            return s.replace("{n}", person).replace("{c}", city)

        ws = tuple(dict.fromkeys(w for x in words for w in _word_forms(fill(x).lower())))
        ev = _Event("", fill(title), fill(what), fill(the), ws)
        titles = [e.title.lower() for e in out]
        # no word of one event may name another (the grader finds an event by any of its words)
        if any(w in t for w in ev.words for t in titles) or any(w in ev.title.lower() for e in out for w in e.words):
            continue
        base = ev.words[0].split()[0].replace("'", "")
        ev.key = base if base not in {e.key for e in out} else f"{base}{len(out)}"
        out.append(ev)
    return out


def _word_forms(word: str) -> list[str]:
    """A name and its unaccented spelling (models often drop the accent)."""
    plain = word.translate(str.maketrans("áéíóúàèçñ", "aeiouaecn"))
    return [word, plain] if plain != word else [word]


def _add_line(ev: _Event) -> str:
    return f'    add: {{event: {ev.key}, date: {ev.date.isoformat()}, time: "{ev.time}", duration: {ev.duration}}}'


def draw_scenario(rng: random.Random, name: str, years: Sequence[int], system_prompt: str) -> str:
    """One scenario's YAML text: 4 to 7 requests about 2 to 4 events, in a random order of adds,
    changes and removals; the first request omits the year (then a scripted turn gives it) or says it."""
    year = rng.choice(list(years))
    first = dt.date(year, rng.randint(1, 12), rng.randint(1, 18))
    today = first - dt.timedelta(days=rng.randint(1, 14))
    if today.year != year:
        today = dt.date(year, 1, 1)
        first = max(first, today + dt.timedelta(days=2))
    pool = _pick_events(rng, rng.randint(2, 4))
    d = _Draft(year, today)
    live: list[_Event] = []
    anchor: _Event | None = None  # the event the step before was about: "the same day" is its day
    latest = first  # the day last talked about, for a date said in full
    steps = rng.randint(4, 7)
    told_year = rng.random() < 0.4
    for step in range(steps):
        options = []
        if pool:
            options += ["add"] * 3
        if live and step > 0:
            options += ["update"] * 2 + ["remove"]
        op = rng.choice(options) if step > 0 else "add"
        if op == "add":
            ev = pool.pop(0)
            h, m = (
                rng.choice([7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]),
                rng.choice([0, 0, 0, 15, 30, 45]),
            )
            ev.time = f"{h:02d}:{m:02d}"
            ev.duration, said_dur = rng.choice(DURATIONS)
            choice = rng.randrange(4) if anchor is not None else 3
            if not d.events:
                ev.date, said_date = first, say_date(rng, first, year=told_year)
            elif anchor is not None and choice == 0:
                ev.date, said_date = anchor.date, "the same day"
            elif anchor is not None and choice == 1:
                ev.date, said_date = anchor.date + dt.timedelta(days=1), "the next day"
            elif anchor is not None and choice == 2:
                n = rng.randint(2, 4)
                ev.date, said_date = anchor.date + dt.timedelta(days=n), f"{n} days after {anchor.the}"
            else:
                ev.date = latest + dt.timedelta(days=rng.randint(1, 9))
                said_date = say_date(rng, ev.date, year=ev.date.year != year)
            text = rng.choice(ADD).format(what=ev.what, date=said_date, time=say_time(rng, h, m), dur=said_dur)
            d.turns += [f"  - user: {_q(text[0].upper() + text[1:])}", _add_line(ev)]
            if not d.events and not told_year:
                d.turns += [f"  - user: {_q(rng.choice(YEAR_TOLD).format(y=year))}", "    feedback: true"]
            live.append(ev)
            d.events.append(ev)
            anchor, latest = ev, ev.date
        elif op == "update":
            ev = rng.choice(live)
            what = rng.choice(["duration", "time", "date"])
            if what == "duration":
                minutes, words = rng.choice([x for x in LENGTHS if x[0] != ev.duration])
                ev.duration = minutes
                if ev is anchor and rng.random() < 0.5:
                    text = f"Set the duration to {words}."
                else:
                    text = rng.choice([f"Make {ev.the} {words}.", f"Change the length of {ev.the} to {words}."])
                change = f"duration: {minutes}"
            elif what == "time":
                h = rng.choice([x for x in range(8, 21) if f"{x:02d}:00" != ev.time])
                ev.time = f"{h:02d}:00"
                text = rng.choice(
                    [f"Move {ev.the} to {say_time(rng, h, 0)[3:]}.", f"Actually, {ev.the} is {say_time(rng, h, 0)}."]
                )
                change = f'time: "{ev.time}"'
            else:
                ev.date = ev.date + dt.timedelta(days=1 if rng.random() < 0.5 else rng.randint(2, 6))
                when = say_date(rng, ev.date, year=ev.date.year != year)[3:]
                text = rng.choice([f"Move {ev.the} to {when}.", f"Can you push {ev.the} to {when}?"])
                change = f"date: {ev.date.isoformat()}"
            d.turns += [f"  - user: {_q(text[0].upper() + text[1:])}", f"    update: {{event: {ev.key}, {change}}}"]
            anchor, latest = ev, ev.date
        else:
            ev = rng.choice(live)
            live.remove(ev)
            text = rng.choice(REMOVE).format(the=ev.the, The=ev.the[0].upper() + ev.the[1:])
            d.turns += [f"  - user: {_q(text)}", f"    remove: {{event: {ev.key}}}"]
            anchor = None
            if not live and not pool:
                break
    lines = [
        "# Generated by `mendlab data scenarios`: a training scenario, never one to evaluate on.",
        f"name: {name}",
        f"description: {_q('Generated calendar-like training scenario (the year ' + str(year) + ').')}",
        "system_prompt: |-",
        *[f"  {line}" if line else "" for line in system_prompt.splitlines()],
        "api: calendar",
        "world:",
        f"  today: {today.isoformat()}",
        "  calendar: []",
        "events:",
        *[f"  {e.key}: {{title: {_q(e.title)}, words: [{', '.join(_q(w) for w in e.words)}]}}" for e in d.events],
        "turns:",
        *d.turns,
    ]
    return "\n".join(lines) + "\n"


def _with_mistakes(text: str, scenario: Scenario, rng: random.Random) -> str:
    """Seed mistakes of the original's kinds for the replay experiment: a 12-hour time, chatter."""
    adds = [i for i, s in enumerate(scenario.steps) if s.effect is not None and s.effect.kind == "add"]
    out = ["mistakes:"]
    for i in rng.sample(adds, min(2, len(adds))):
        call = scenario.expected(i).render(scenario.api)
        time = str(scenario.expected(i).value("time"))
        h, m = int(time[:2]), int(time[3:])
        h12, ap = _ampm(h)
        if len(out) == 1:
            reply = call.replace(f'time="{time}"', f'time="{h12}:{m:02d} {ap.upper()}"')
        else:
            reply = f"Sure! Here is the API call for your request:\n{call}"
        out += [f"  - turn: {i + 1}", f"    reply: {_q(reply)}"]
    return text + "\n".join(out) + "\n" if len(out) > 1 else text


def generate(n: int, seed: int, ev: EvalSet, prefix: str = "train") -> list[tuple[str, str]]:
    """`n` scenarios as (name, YAML text), each loaded back, checked playable (its expected calls
    grade as right) and disjoint from the evaluation set; a draw that is not is drawn again."""
    if n < 1:
        raise MendlabError("--n must be at least 1")
    calendar = load_scenario("calendar")
    eval_years = {int(y) for y in _years(ev)}
    years = [y for y in range(2019, 2033) if y not in eval_years]
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for i in range(1, n + 1):
        name = f"{prefix}-s{seed}-{i:04d}"
        for _ in range(100):
            text = draw_scenario(rng, name, years, calendar.system_prompt)
            scenario = parse_scenario(text, f"{name}.yaml")
            text = _with_mistakes(text, scenario, rng)
            scenario = parse_scenario(text, f"{name}.yaml")
            if scenario_overlap(scenario, ev) is None and _plays(scenario):
                out.append((name, text))
                break
        else:  # pragma: no cover - the draws are far from the evaluation set
            raise MendlabError(f"could not draw scenario {name} disjoint from the evaluation set in 100 tries")
    return out


def _years(ev: EvalSet) -> set[str]:
    """Every year an evaluation scenario's expected calls use."""
    out: set[str] = set()
    for _, _, values in ev.calls:
        for _, v in values:
            if isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[:4].isdigit():
                out.add(v[:4])
    return out


def _plays(scenario: Scenario) -> bool:
    """Its own expected calls grade as right, turn by turn (a draw the grader would misread is dropped)."""
    return all(
        not check_reply(scenario.expected(i).render(scenario.api), scenario.expected(i), scenario).errors
        for i in range(len(scenario.steps))
    )


def write_scenarios(scenarios: Sequence[tuple[str, str]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in scenarios:
        path = out / f"{name}.yaml"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


__all__ = ["draw_scenario", "generate", "norm", "write_scenarios"]

"""Scenario files: the built-ins, a user's own, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mendlab.dialogs.feedback import rule_feedback
from mendlab.dialogs.scenario import load_scenario
from mendlab.errors import ConfigError

GOOD = """\
name: gym
system_prompt: Translate requests into API calls.
api: {object: action, add: add_calendar_entry, remove: remove_calendar_entry, default_duration: 30}
world: {today: 2026-01-10, calendar: [{event: gym, date: 2026-01-12, time: "07:00", duration: 60}]}
events:
  gym: {title: Gym, words: [gym]}
turns:
  - user: Move the gym to 8am.
    update: {event: gym, time: "08:00"}
  - user: Cancel the gym.
    remove: {event: gym}
"""


def test_user_scenario_without_code(tmp_path: Path) -> None:
    p = tmp_path / "gym.yaml"
    p.write_text(GOOD)
    s = load_scenario(str(p))
    assert (
        s.expected(0).render(s.api) == 'action.add_calendar_entry("Gym", date="2026-01-12", time="08:00", duration=60)'
    )
    assert s.expected(1).render(s.api) == 'action.remove_calendar_entry("Gym", "2026-01-12", "08:00")'


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('time: "08:00"}', "time: 18:00}", r"gym.yaml:9: field 'turns\[0\].update.time': must be a quoted time"),
        (
            "remove: {event: gym}",
            "remove: {event: yoga}",
            r"gym.yaml:11: field 'turns\[1\].remove.event': unknown event 'yoga'",
        ),
        (
            "  gym: {title: Gym, words: [gym]}",
            "  gym: {title: Gym, words: []}",
            r"gym.yaml:6: field 'events.gym.words'",
        ),
        ("today: 2026-01-10", "today: tomorrow", r"gym.yaml:4: field 'world.today': must be a date"),
        ("    update:", "    upgrade:", r"gym.yaml:9: field 'turns\[0\].upgrade': unknown field"),
        ("name: gym\n", "", r"gym.yaml:1: missing field 'name'"),
        ("  - user: Cancel the gym.", "  - user: [Cancel the gym.", r"gym.yaml:\d+: invalid YAML"),
        (
            "    remove: {event: gym}",
            "    remove: {event: gym}\n    feedback: true",
            r"gym.yaml:10: field 'turns\[1\]': a feedback turn",
        ),
    ],
)
def test_bad_scenario_names_file_line_field(tmp_path: Path, old: str, new: str, match: str) -> None:
    assert old in GOOD
    p = tmp_path / "gym.yaml"
    p.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=match):
        load_scenario(str(p))


def test_missing_scenario() -> None:
    with pytest.raises(ConfigError, match="no such scenario"):
        load_scenario("no-such-scenario")


def test_feedback_rungs() -> None:
    s = load_scenario("calendar")
    want = s.expected(0)
    errs = ("wrong_year", "time_12h")
    assert rule_feedback(errs, want, s, "vague") == "That's not right."
    assert rule_feedback(errs, want, s, "pointed") == "The year is wrong. Time in 24h format."
    assert rule_feedback(errs, want, s, "explicit") == 'Use the year 2024. Write the time in 24h format: time="17:00".'
    assert rule_feedback(("no_call", "chatter"), want, s, "pointed") == "Just the API call please."

"""The grader against hand-written replies, each with the labels a careful person would give."""

from __future__ import annotations

import pytest

from mendlab.dialogs.grading import check_reply, grade_conversation, loose_date, loose_time
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import Message

CAL = load_scenario("calendar")
A = "action.add_calendar_entry"
R = "action.remove_calendar_entry"

# (step index 0-based, reply, expected errors in the grader's order, expected validity)
FRED = f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)'
CASES: list[tuple[int, str, tuple[str, ...], bool]] = [
    # step 1: Fred, 2024-11-11 17:00 (the model cannot know the year: 2023 is the expected mistake)
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)', (), True),
    (0, f'{A}("Meeting with Fred", date="2023-11-11", time="17:00", duration=30)', ("wrong_year",), True),
    (0, f'{A}(title="Fred meeting", date="2024-11-11", time="17:00", duration=30)', (), True),
    (0, f'{A}("Meeting w/ Fred", "2024-11-11", "17:00", 30)', (), True),  # all positional
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00")', (), True),  # default duration
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="5:00 PM", duration=30)', ("time_12h",), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="5PM")', ("time_12h",), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="5:00 AM")', ("time_12h", "wrong_time"), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00:00")', ("time_format",), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="15:00")', ("wrong_time",), True),
    (0, f'{A}("Meeting with Fred", date="20 24-11-11", time="17:00")', ("date_format",), True),
    (0, f'{A}("Meeting with Fred", date="Nov 11, 2023", time="17:00")', ("wrong_year", "date_format"), True),
    (0, f'{A}("Meeting with Fred", date="Nov 11", time="17:00")', ("date_format",), True),
    (0, f'{A}("Meeting with Fred", date="11/11/2024", time="17:00")', ("date_format",), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-12", time="17:00")', ("wrong_date",), True),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=60)', ("wrong_duration",), True),
    (0, f'{A}("Meeting with Fred", time="17:00", duration=30)', ("missing_argument",), True),
    (
        0,
        f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30, place="office")',
        ("extra_argument",),
        True,
    ),
    (0, f'{A}("Lunch", date="2024-11-11", time="17:00", duration=30)', ("wrong_event",), True),
    (0, f'{R}("Meeting with Fred", "2024-11-11", "17:00")', ("wrong_function",), True),
    (0, 'action.create_event("Meeting with Fred", "2024-11-11", "17:00")', ("unknown_function",), False),
    (
        0,
        f'I apologize for the mistake. {A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)',
        ("chatter",),
        True,
    ),
    (
        0,
        f'Sure!\n```python\n{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)\n```',
        ("chatter",),
        True,
    ),
    (0, f'```python\n{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)\n```', (), True),
    (0, f'```\n{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)\n```', (), True),
    (
        0,
        f"{FRED}\n{FRED}",
        ("extra_call",),
        True,
    ),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30', ("syntax_error",), False),
    (0, "I'm sorry, I can't do that.", ("no_call",), False),
    (0, "```python\ndef add_event(title):\n    return title\n```", ("no_call",), False),
    (
        0,
        f'{A}("Meeting with Fred", date="Nov 11, 2023", time="5PM", duration=30)',
        ("wrong_year", "date_format", "time_12h"),
        True,
    ),
    (0, 'add_calendar_entry("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)', (), True),
    (0, f'{A}(title, date="2024-11-11", time="17:00", duration=30)', ("wrong_event",), True),
    (
        0,
        f'{A}("Meeting with Fred", date=datetime.date(2024, 11, 11), time="17:00")',
        ("wrong_date", "date_format"),
        True,
    ),
    (0, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30) # add the meeting', (), True),
    # step 3: the rock concert on "the same day" (the day fixed two turns back)
    (2, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration=30)', (), True),
    (2, f'{A}("Rock concert", date="2024-11-11", time="8:00 PM", duration=30)', ("time_12h",), True),
    (2, f'{A}("Meeting with Fred", date="2024-11-11", time="20:00", duration=30)', ("wrong_event",), True),
    # step 4: three hours is 180 minutes, however it is written
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration=60*3)', (), True),
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration=180)', (), True),
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration=3*60)', (), True),
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration=3)', ("wrong_duration",), True),
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00")', ("wrong_duration",), True),
    (3, f'{A}("Rock Concert", date="2024-11-11", time="20:00", duration="180")', (), True),
    # step 5: Paul, the next day
    (4, f'{A}("Meeting with Paul", date="2024-11-12", time="08:00", duration=30)', (), True),
    (4, f'{A}("Meeting with Paul", date="2024-11-11", time="08:00", duration=30)', ("wrong_date",), True),
    (4, f'{A}("Meeting with Paul", date="2024-11-12", time="8:00", duration=30)', ("time_format",), True),
    # step 6: cancel Fred, named as created
    (5, f'{R}("Meeting with Fred", "2024-11-11", "17:00")', (), True),
    (5, f'{R}(title="Fred meeting", date="2024-11-11", time="17:00")', (), True),
    (5, f'{R}("Meeting with Fred")', ("missing_argument",), True),
    (5, f'{R}("Meeting with Paul", "2024-11-12", "08:00")', ("wrong_event", "wrong_date", "wrong_time"), True),
    (5, f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=0)', ("wrong_function",), True),
    (5, f'{R}("Meeting with Fred", "2023-11-11", "17:00")', ("wrong_year",), True),
]


@pytest.mark.parametrize(("step", "reply", "errors", "valid"), CASES)
def test_reply_labels(step: int, reply: str, errors: tuple[str, ...], valid: bool) -> None:
    check = check_reply(reply, CAL.expected(step), CAL)
    assert check.errors == errors
    assert check.valid == valid


def test_enough_cases() -> None:
    assert len(CASES) >= 40


def test_loose_parsers() -> None:
    assert loose_date("Nov 11, 2023") == (2023, 11, 11)
    assert loose_date("11 November") == (None, 11, 11)
    assert loose_date("20 24-11-11") == (2024, 11, 11)
    assert loose_time("5:30 pm") == (17, 30, True)
    assert loose_time("12 AM") == (0, 0, True)
    assert loose_time("25:00") is None


def _dialog(*pairs: str) -> list[Message]:
    msgs = [Message("system", CAL.system_prompt)]
    for i, text in enumerate(pairs):
        msgs.append(Message("user" if i % 2 == 0 else "assistant", text))
    return msgs


def test_conversation_marks_fix_regression_and_recurring() -> None:
    good = f'{A}("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)'
    grades = grade_conversation(
        CAL,
        _dialog(
            "Add a meeting with Fred on Nov 11 at 5PM",
            f'{A}("Meeting with Fred", date="2023-11-11", time="17:00", duration=30)',
            "The current year is 2024.",  # a scripted step, not feedback: the script says it to everyone
            good,
            "I'm going to a rock concert in the evening of the same day at 8pm. Add a calendar entry for that.",
            f'{A}("Rock Concert", date="2024-11-11", time="8:00 PM", duration=30)',
            "Time in 24h format.",  # free feedback on the current step
            f'{A}("Rock Concert", date="2023-11-11", time="20:00", duration=30)',  # fixed, but broke the year
            "Set the duration to 3 hours.",
            f'{A}("Rock Concert", date="2024-11-11", time="8:00 PM", duration=60*3)',  # 12h again: recurring
            "Add a meeting with Paul on the next day at 8am. 1/2h.",
            "Sure thing!",
        ),
    )
    assert [g.marks for g in grades] == [
        ("✓", "🍄"),
        ("✓",),
        ("✓", "🍄"),
        ("🥦", "(🍄)"),
        ("✓", "(🍄)"),
        ("🔥",),
    ]
    assert [g.step for g in grades] == [1, 2, 3, 3, 4, 5]
    assert [g.attempt for g in grades] == [0, 0, 0, 1, 0, 0]
    assert not grades[1].fixed and grades[1].pointed == ()  # right, but not a fix: nobody pointed anything out
    assert grades[3].fixed and grades[3].regression and grades[3].errors == ("wrong_year",)
    assert grades[4].recurring == ("time_12h",)


def test_scripted_correction_after_a_wrong_answer_is_a_step_not_a_fix() -> None:
    """The script's "The current year is 2024." is said to every model at every rung: it is the answer
    to step 2, graded against step 1's call, and never a fix attempt (a rung's feedback before it is)."""
    grades = grade_conversation(
        CAL,
        _dialog(
            "Add a meeting with Fred on Nov 11 at 5PM",
            f'{A}("Meeting with Fred", date="2023-11-11", time="17:00", duration=30)',
            "The year is wrong.",  # the rung's feedback: a fix attempt follows
            f'{A}("Meeting with Fred", date="2023-11-11", time="17:00", duration=30)',
            "The current year is 2024.",  # the script: a new step
            FRED,
        ),
    )
    assert [(g.step, g.attempt) for g in grades] == [(1, 0), (1, 1), (2, 0)]
    assert grades[1].pointed == ("wrong_year",) and not grades[1].pointed_gone
    assert grades[2].correct and not grades[2].fixed and grades[2].marks == ("✓",)
    assert grades[2].expected == FRED


def test_three_errors_is_double_fire_and_unfixed_stays_mushroom() -> None:
    grades = grade_conversation(
        CAL,
        _dialog(
            "Add a meeting with Fred on Nov 11 at 5PM",
            f'Ok! {A}("Fred", date="Nov 11, 2023", time="5PM")',
            "The year is wrong.",
            f'{A}("Fred", date="2023-11-11", time="17:00")',
        ),
    )
    assert grades[0].marks == ("✓", "🔥🔥")
    assert not grades[1].fixed and grades[1].marks == ("✓", "🍄")


def test_second_builtin_scenario_is_consistent() -> None:
    d = load_scenario("dentist")
    assert (
        d.expected(3).render(d.api)
        == 'action.add_calendar_entry("Yoga class", date="2025-03-05", time="18:30", duration=45)'
    )
    assert d.expected(5).render(d.api) == 'action.remove_calendar_entry("Dentist appointment", "2025-03-03", "09:15")'
    assert d.target_step(1).turn == 1


FRED_2023 = 'action.add_calendar_entry("Meeting with Fred", date="2023-11-11", time="17:00", duration=30)'
FRED = FRED_2023.replace("2023", "2024")


def test_a_critic_saying_a_scripted_line_is_still_feedback() -> None:
    """A critic may tell the model "The current year is 2024." — the very words of step 2. Tagged as
    feedback, it opens a fix attempt; the scripted step that follows is still a step."""
    from mendlab.dialogs.experiments import play_dialog
    from mendlab.models import SamplingParams
    from tests.scripted import ScriptedModel

    sc = load_scenario("calendar")
    answers = iter([FRED_2023, FRED, FRED])

    def critic(history: object, errors: object, want: object) -> str:
        return "The current year is 2024."

    model = ScriptedModel("m", lambda msgs, p, i: next(answers, FRED))
    res = play_dialog(model, sc, SamplingParams(), "pointed", max_fixes=1, critic=critic)
    first, fix, step2 = res.grades[:3]
    assert (first.step, first.attempt, first.errors) == (1, 0, ("wrong_year",))
    assert (fix.step, fix.attempt, fix.pointed, fix.fixed) == (1, 1, ("wrong_year",), True)
    assert (step2.step, step2.attempt) == (2, 0)
    assert res.messages[3].origin == "feedback:critic" and res.messages[5].origin is None
    assert [g.step for g in grade_conversation(sc, res.messages)] == [g.step for g in res.grades]


def test_errors_pointed_out_are_the_ones_the_feedback_named() -> None:
    """Pointed feedback names two of three errors; the answer fixes those two and keeps the third:
    the errors pointed out are gone, it is a fix, and the kept error is no regression."""
    sc = load_scenario("calendar")
    wrong = "Sure! " + FRED_2023.replace('"17:00"', '"5:00 PM"')
    kept_chatter = "Sure! " + FRED
    msgs = [
        Message("system", sc.system_prompt),
        Message("user", sc.steps[0].user),
        Message("assistant", wrong),
        Message("user", "The year is wrong. Time in 24h format.", origin="feedback:pointed"),
        Message("assistant", kept_chatter),
    ]
    first, fix = grade_conversation(sc, msgs)
    assert first.errors == ("wrong_year", "time_12h", "chatter")
    assert fix.pointed == ("wrong_year", "time_12h") and fix.errors == ("chatter",)
    assert fix.pointed_gone and fix.fixed and not fix.regression
    vague = [*msgs[:3], Message("user", "That's not right.", origin="feedback:vague"), msgs[4]]
    assert not grade_conversation(sc, vague)[1].pointed_gone  # vague objects to the whole answer
    new_error = [*msgs[:4], Message("assistant", FRED.replace("Fred", "Paul"))]
    assert grade_conversation(sc, new_error)[1].regression  # wrong_event was not there before


def test_untagged_feedback_of_a_stored_run_is_read_as_its_rung() -> None:
    """Transcripts stored before feedback was tagged are regraded as their run's rung says, so an old
    run and a new one count the same errors as pointed out."""
    sc = load_scenario("calendar")
    wrong = "Sure! " + FRED_2023.replace('"17:00"', '"5:00 PM"')
    msgs = [
        Message("system", sc.system_prompt),
        Message("user", sc.steps[0].user),
        Message("assistant", wrong),
        Message("user", "The year is wrong. Time in 24h format."),
        Message("assistant", "Sure! " + FRED),
    ]
    tagged = [*msgs[:3], Message("user", msgs[3].content, origin="feedback:pointed"), msgs[4]]
    old = grade_conversation(sc, msgs, default_rung="pointed")[1]
    assert old == grade_conversation(sc, tagged)[1] and old.fixed and old.pointed == ("wrong_year", "time_12h")

"""The arena page: Gradio Blocks over `session` (the rules) and `pool` (the models).

Every handler takes the session's `ArenaState`, changes it through `session`, saves what changed in
the results store right away, and redraws all panes from the state: the chat views are a pure
picture of the conversations, so what a person sees is what is stored.

During an anonymous battle no model name reaches the browser, not even in the page's source: the
model pickers are built empty and filled per session, and every text that could carry a name
(headers, errors, badges, History, Leaderboard) goes through `session.redact` or is left blank.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import gradio as gr
from gradio.utils import get_upload_folder

from mendlab.arena.pool import ModelPool
from mendlab.arena.ratings import Rating, leaderboard
from mendlab.arena.session import (
    PANE_NAMES,
    PERSON_MARKS,
    VOTES,
    ArenaState,
    Pane,
    add_user,
    author,
    drop_last_answer,
    fork_at,
    grades,
    pair_key,
    pending_vote,
    redact,
    set_model,
    start_battle,
    stream_turns,
    transplant,
)
from mendlab.dialogs.scenario import BUILTIN, load_scenario
from mendlab.models.base import Completion, SamplingParams
from mendlab.reports.arena import ratings_figure
from mendlab.store.results import ResultsStore, Vote

MAX_SCRIPTED = 8
NO_SCENARIO = "(none)"

CSS = """
.pane-header p { margin: 0; font-size: 0.95em; }
.pane-chat button[aria-label="Clear"], .pane-chat button[title="Clear"] { display: none !important; }
.pane-stats p { margin: 0; font-size: 0.85em; opacity: 0.8; min-height: 1.3em; }
.mark-row button { min-width: 44px !important; }
.vote-row { border: 1px solid var(--border-color-accent); border-radius: 8px; padding: 6px; }
footer { display: none !important; }
"""


@dataclass(frozen=True)
class ArenaConfig:
    models: tuple[str, ...]
    temperature: float = 0.7
    max_tokens: int = 256
    default_scenario: str | None = "calendar"


def _status_icon(status: str, busy: bool) -> str:
    if busy:
        return "⏳ generating" if status == "ready" else f"⏳ {status}"
    if status.startswith("failed"):
        return "⚠️ " + status
    return {"ready": "🟢 ready", "loading": "⏳ loading", "evicted": "💤 evicted", "not loaded": "○ not loaded"}.get(
        status, status
    )


def model_label(state: ArenaState, pane: Pane) -> str:
    if state.hidden:
        return f"Model {'ABCD'[pane.index]}"
    return pane.model or "no model"


def _window(state: ArenaState, s: dict[str, Any]) -> int | None:
    """The context window, unless names are hidden: a window size can tell models apart."""
    window = s.get("context_window")
    return None if state.hidden or not isinstance(window, int) else window


def chat_view(state: ArenaState, pane: Pane) -> list[dict[str, str]]:
    """Messages for the Chatbot: the conversation, with marks and speed as badges under each answer."""
    graded = grades(state.scenario, pane.conv)
    out: list[dict[str, str]] = []
    for i, m in enumerate(pane.conv.messages):
        if m.role == "system":
            continue
        if m.role == "user":
            out.append({"role": "user", "content": m.content})
            continue
        badges = []
        if m.origin is not None:
            who = "another model" if state.hidden else m.origin
            badges.append(f"`↪ transplanted from {who}`" if i in pane.transplanted else f"`↪ written by {who}`")
        g = graded.get(i)
        if g is not None:
            badges.append(f"`grader {' '.join(g.marks)}{' ' + ', '.join(g.errors) if g.errors else ''}`")
        if i in pane.person:
            badges.append(f"`you {pane.person[i]}`")
        s = pane.stats.get(i)
        if s:
            window = _window(state, s)
            used = s["prompt_tokens"] + s["completion_tokens"]
            badges.append(f"`{s['tokens_per_s']} tok/s · ctx {used}{f'/{window}' if window else ''}`")
        text = m.content + ("\n```" if m.content.count("```") % 2 else "")  # a cut-off fence would swallow the badges
        out.append({"role": "assistant", "content": text + ("\n\n" + " ".join(badges) if badges else "")})
    if pane.partial is not None:
        out.append({"role": "assistant", "content": pane.partial + " ▌"})
    return out


def stats_line(state: ArenaState, pane: Pane, names: Sequence[str] = ()) -> str:
    if pane.error:
        return f"⚠️ {redact(pane.error, state, names)}"
    answers = pane.assistant_indices()
    if pane.busy:
        return "generating…"
    if not answers or answers[-1] not in pane.stats:
        return "&nbsp;"
    s = pane.stats[answers[-1]]
    used = s["prompt_tokens"] + s["completion_tokens"]
    window = _window(state, s)
    first = f" · first token {s['first_token_s']:.2f} s" if s.get("first_token_s") is not None else ""
    return f"{s['tokens_per_s']} tok/s · context {used}{f' / {window}' if window else ''} tokens{first}"


def _picked(choice: int | None, indices: Sequence[int]) -> int | None:
    """A person's pick survives redraws (another pane streaming redraws every pane); else the latest."""
    return choice if choice in indices else (indices[-1] if indices else None)


def _short(text: str, n: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


FEW_VOTES = 10


def ratings_table(ratings: Sequence[Rating]) -> list[list[Any]]:
    """Rows for the page; an interval from fewer than FEW_VOTES votes is flagged (the bootstrap of a
    handful of votes is far too narrow)."""
    return [
        [
            rank,
            r.model,
            round(r.rating),
            f"{r.low:.0f} – {r.high:.0f}" + (" †" if r.votes < FEW_VOTES else ""),
            r.votes,
            f"{r.wins / r.votes:.0%}",
        ]
        for rank, r in enumerate(ratings, 1)
    ]


def outcomes(votes: Sequence[Vote], kind: str) -> list[tuple[str, str, float]]:
    score = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}
    return [
        (v.model_left, v.model_right, score[v.winner])
        for v in votes
        if v.kind == kind and v.model_left != v.model_right
    ]


class ArenaApp:
    """Builds the page; holds only what all sessions share (pool, store, config), never a session."""

    def __init__(self, pool: ModelPool, store: ResultsStore, config: ArenaConfig) -> None:
        self.pool, self.store, self.config = pool, store, config
        self.rng = random.Random()

    # ---- persistence -------------------------------------------------------------------------
    def save(self, state: ArenaState, pane: Pane) -> None:
        """Store the pane's branch as it is now. Its model is never touched here: it is the model
        that wrote the branch's own answers (`session.set_model` branches on a change)."""
        if not pane.conv.messages:
            return
        meta = {
            "source": "arena",
            "session": state.session,
            "pane": pane.name,
            "scenario": state.scenario.name if state.scenario else None,
            "battle": state.battle,
            "names_hidden": state.hidden,
            "stats": {str(i): s for i, s in pane.stats.items()},
            "person": {str(i): m for i, m in pane.person.items()},
            "transplanted": sorted(pane.transplanted),
            "updated": time.time(),
        }
        pane.conv = replace(pane.conv, meta=meta)
        self.store.save_conversation(pane.conv)
        if state.hidden:
            state.battle_convs.add(pane.conv.id)

    def reveal(self, state: ArenaState) -> None:
        """The battle's names may be shown: in the page, and in the History of every page."""
        state.revealed = True
        for conv_id in sorted(state.battle_convs):
            conv = self.store.conversation(conv_id)
            if conv is not None and conv.meta.get("names_hidden"):
                self.store.save_conversation(replace(conv, meta={**conv.meta, "names_hidden": False}))
        state.battle_convs = set()

    def forget(self, state: ArenaState | None) -> None:
        """A session ended (tab closed or reloaded): its files go, and a battle left without a vote
        will never get one from this session, so its names need not stay hidden."""
        if not isinstance(state, ArenaState):
            return
        for path in state.exports.values():
            Path(path).unlink(missing_ok=True)
        state.exports.clear()
        if state.battle_convs:
            with contextlib.suppress(sqlite3.ProgrammingError):  # the store closed first: the server is stopping
                self.reveal(state)

    def on_answer(self, state: ArenaState, pane: Pane, completion: Completion) -> None:
        self.save(state, pane)
        idx = len(pane.conv.messages) - 1
        g = grades(state.scenario, pane.conv).get(idx)
        if g is not None:
            self.store.add_mark(pane.conv.id, idx, "grader", " ".join(g.marks), g.errors, author(pane, idx))

    # ---- drawing -----------------------------------------------------------------------------
    def header(self, state: ArenaState, pane: Pane) -> str:
        status = self.pool.status(pane.model) if pane.model else "no model"
        paused = " · ⏸ paused" if pane.name not in state.targets else ""
        icon = redact(_status_icon(status, pane.busy), state, self.config.models)
        return f"**{pane.name}** · {model_label(state, pane)} · {icon}{paused}"

    def model_picker(self, state: ArenaState, pane: Pane) -> Any:
        """Empty while names are hidden: a hidden dropdown still carries its value into the page."""
        if state.battle:
            return gr.update(choices=[], value=None, visible=False)
        offered = list(self.config.models)
        if pane.model is not None and pane.model not in offered:
            offered.append(pane.model)  # a reopened conversation of a model not served here
        return gr.update(choices=offered, value=pane.model, visible=True)

    def render(self, state: ArenaState) -> list[Any]:
        out: list[Any] = [state]
        for pane in state.panes:
            answers = pane.assistant_indices()
            users = pane.user_indices()
            out += [
                gr.update(visible=pane.index < state.shown),
                self.header(state, pane),
                self.model_picker(state, pane),
                chat_view(state, pane),
                stats_line(state, pane, self.config.models),
                gr.update(
                    choices=[
                        (f"#{n}: {_short(pane.conv.messages[i].content, 30)}", i) for n, i in enumerate(answers, 1)
                    ],
                    value=_picked(pane.mark_at, answers),
                ),
                gr.update(
                    choices=[(f"#{n}: {_short(pane.conv.messages[i].content, 40)}", i) for n, i in enumerate(users, 1)],
                    value=_picked(pane.fork_from, users),
                ),
            ]
        names = [p.name for p in state.visible()]
        vote = pending_vote(state)
        title = "Which side fixed it better?" if vote and vote.kind == "fix" else "Which answer is better?"
        steps = state.scenario.steps if state.scenario else ()
        out += [
            gr.update(choices=names, value=[t for t in state.targets if t in names]),
            gr.update(visible=vote is not None),
            f"**{title}**" + (" (names are revealed after you vote)" if state.hidden else ""),
            gr.update(choices=names),
            gr.update(choices=names),
        ]
        out += [
            gr.update(visible=i < len(steps), value=f"{i + 1}. {_short(steps[i].user, 60)}" if i < len(steps) else "")
            for i in range(MAX_SCRIPTED)
        ]
        return out

    # ---- page --------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        cfg = self.config
        scenario_choices = [NO_SCENARIO, *BUILTIN]
        # delete_cache: the exports and figures handed to the page are removed when the server stops
        with gr.Blocks(title="mendlab arena", delete_cache=(3600, 24 * 3600)) as demo:
            state = gr.State(delete_callback=self.forget)
            with gr.Tab("Arena"):
                with gr.Row(equal_height=False, elem_classes="top-row"):
                    scenario = gr.Dropdown(
                        scenario_choices,
                        value=cfg.default_scenario or NO_SCENARIO,
                        label="Scenario",
                        scale=2,
                        min_width=160,
                        elem_id="scenario",
                    )
                    battle = gr.Checkbox(label="Anonymous battle", value=False, scale=1, min_width=140)
                    new_battle = gr.Button("🎲 New battle", size="sm", scale=0, min_width=110, elem_id="new-battle")
                    add_pane = gr.Button("+ Pane", size="sm", scale=0, min_width=70, elem_id="add-pane")
                    remove_pane = gr.Button("− Pane", size="sm", scale=0, min_width=70, elem_id="remove-pane")
                with gr.Accordion("System prompt", open=False, elem_id="system-box"):
                    system = gr.Textbox(show_label=False, lines=3, max_lines=10, elem_id="system-prompt")
                pane_widgets: list[tuple[Any, ...]] = []
                with gr.Row(equal_height=False):
                    for i, name in enumerate(PANE_NAMES):
                        with gr.Column(visible=i < 2, min_width=300, elem_id=f"pane-{i}") as col:
                            with gr.Row(equal_height=True):
                                head = gr.Markdown(
                                    f"**{name}**", elem_classes="pane-header", elem_id=f"pane-{i}-header", min_height=0
                                )
                                model = gr.Dropdown(
                                    [],  # filled per session (see model_picker), so no name is in the page source
                                    value=None,
                                    show_label=False,
                                    container=False,
                                    scale=1,
                                    min_width=150,
                                    elem_id=f"pane-{i}-model",
                                )
                            chat = gr.Chatbot(
                                height=290,
                                show_label=False,
                                elem_id=f"pane-{i}-chat",
                                elem_classes="pane-chat",
                                feedback_options=None,
                                buttons=["copy"],
                                placeholder=f"{name}: nothing yet",
                            )
                            stats = gr.Markdown("&nbsp;", elem_classes="pane-stats", elem_id=f"pane-{i}-stats")
                            with gr.Row(equal_height=True, elem_classes="mark-row"):
                                mark_turn = gr.Dropdown(
                                    [],
                                    show_label=False,
                                    container=False,
                                    scale=3,
                                    min_width=120,
                                    elem_id=f"pane-{i}-mark-turn",
                                    interactive=True,
                                )
                                mark_buttons = [
                                    gr.Button(mk, size="sm", scale=0, min_width=48, elem_id=f"pane-{i}-mark-{k}")
                                    for k, mk in enumerate(PERSON_MARKS)
                                ]
                                retry = gr.Button(
                                    "↻ Retry", size="sm", scale=0, min_width=84, elem_id=f"pane-{i}-retry"
                                )
                                clear = gr.Button("Clear", size="sm", scale=0, min_width=60, elem_id=f"pane-{i}-clear")
                            with gr.Accordion("Fork: edit a past message and resample", open=False):
                                fork_turn = gr.Dropdown([], label="Message", interactive=True)
                                fork_text = gr.Textbox(label="New text", lines=2, elem_id=f"pane-{i}-fork-text")
                                fork = gr.Button("⑂ Fork and resample", size="sm", elem_id=f"pane-{i}-fork")
                        pane_widgets.append(
                            (
                                col,
                                head,
                                model,
                                chat,
                                stats,
                                mark_turn,
                                fork_turn,
                                retry,
                                clear,
                                mark_buttons,
                                fork,
                                fork_text,
                            )
                        )
                with gr.Row(equal_height=True):
                    message = gr.Textbox(
                        placeholder="Message (Enter sends to the ticked panes)",
                        show_label=False,
                        scale=5,
                        min_width=240,
                        elem_id="message",
                    )
                    targets = gr.CheckboxGroup(
                        list(PANE_NAMES[:2]),
                        value=list(PANE_NAMES[:2]),
                        show_label=False,
                        scale=2,
                        min_width=180,
                        elem_id="targets",
                    )
                    send = gr.Button("Send", variant="primary", scale=0, min_width=90, elem_id="send")
                with gr.Row(elem_classes="vote-row", visible=False) as vote_row:
                    vote_title = gr.Markdown("**Which side fixed it better?**", elem_id="vote-title")
                    vote_buttons = {k: gr.Button(label, size="sm", elem_id=f"vote-{k}") for k, label in VOTES.items()}
                with gr.Row():
                    scripted = [
                        gr.Button("", visible=False, size="sm", elem_id=f"scripted-{k}") for k in range(MAX_SCRIPTED)
                    ]
                with gr.Accordion("Transplant an answer", open=False, elem_id="transplant-box"):
                    with gr.Row(equal_height=True):
                        src = gr.Dropdown(
                            list(PANE_NAMES[:2]), value="Left", label="Answer of", elem_id="transplant-from"
                        )
                        dst = gr.Dropdown(list(PANE_NAMES[:2]), value="Right", label="Into", elem_id="transplant-to")
                        do_transplant = gr.Button("⇄ Transplant", elem_id="transplant")
                with gr.Accordion("Sampling", open=False):
                    with gr.Row():
                        temperature = gr.Slider(0, 2, value=cfg.temperature, step=0.05, label="Temperature")
                        max_tokens = gr.Slider(8, 4096, value=cfg.max_tokens, step=8, label="Max new tokens")
            with gr.Tab("Leaderboard") as board_tab:
                board_refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="board-refresh")
                gr.Markdown("### Fixes: which side fixed a marked mistake better")
                headers = ["#", "Model", "Rating", "95% CI", "Votes", "Win rate"]
                board_fix = gr.Dataframe(headers=headers, interactive=False, elem_id="board-fix")
                gr.Markdown("### First answers")
                board_first = gr.Dataframe(headers=headers, interactive=False, elem_id="board-first")
                gr.Markdown(
                    "Bradley–Terry ratings (Elo scale), 95% intervals from 500 bootstrap resamples of the votes; "
                    "ties and “both bad” count half a win each. † fewer than 10 votes: the interval understates "
                    "the uncertainty."
                )
                board_plot = gr.Image(label="Ratings", type="filepath", interactive=False, elem_id="board-plot")
            with gr.Tab("History") as history_tab:
                with gr.Row(equal_height=True):
                    history_refresh = gr.Button("Refresh", size="sm", scale=0)
                    export = gr.DownloadButton("⬇ Export JSONL", size="sm", scale=0, elem_id="export")
                history_pick = gr.Dropdown([], label="Conversation", elem_id="history-pick", scale=4)
                with gr.Row(equal_height=True):
                    history_pane = gr.Radio(list(PANE_NAMES[:2]), value="Left", label="Open in", elem_id="history-pane")
                    history_open = gr.Button("Open", elem_id="history-open")
                history_table = gr.Dataframe(
                    headers=["When", "Model", "Messages", "First message", "Scenario", "Id"],
                    interactive=False,
                    elem_id="history-table",
                )
            timer = gr.Timer(1.0)

            pane_outputs: list[Any] = []
            for col, head, model, chat, stats, mark_turn, fork_turn, *_ in pane_widgets:
                pane_outputs += [col, head, model, chat, stats, mark_turn, fork_turn]
            all_out = [state, *pane_outputs, targets, vote_row, vote_title, src, dst, *scripted]
            heads = [w[1] for w in pane_widgets]
            sampling = [temperature, max_tokens]

            demo.load(self.init, inputs=None, outputs=[*all_out, system, scenario])
            timer.tick(self.tick, inputs=[state], outputs=heads, show_progress="hidden")
            targets.input(self.set_targets, [state, targets], heads, show_progress="hidden")
            scenario.input(self.set_scenario, [state, scenario], [*all_out, system])
            system.input(self.set_system, [state, system], None)
            board_out = [board_fix, board_first, board_plot]
            hist_out = [history_pick, history_table, history_pane, export]
            # Starting a battle also empties the other tabs: a table loaded earlier would keep its names.
            battle.input(self.set_battle, [state, battle], [*all_out, *board_out, *hist_out])
            new_battle.click(self.new_battle, [state], [*all_out, battle, *board_out, *hist_out])
            add_pane.click(self.add_pane, [state, targets], all_out)
            remove_pane.click(self.remove_pane, [state, targets], all_out)
            send_args = dict(inputs=[state, message, targets, *sampling], outputs=[*all_out, message])
            send.click(self.send, **send_args, show_progress="hidden")  # type: ignore[arg-type]
            message.submit(self.send, **send_args, show_progress="hidden")  # type: ignore[arg-type]
            for k, btn in enumerate(scripted):
                btn.click(self.scripted(k), [state, targets, *sampling], all_out, show_progress="hidden")
            for i, (_, _, model, chat, _, mark_turn, fork_turn, retry, clear, marks, fork, fork_text) in enumerate(
                pane_widgets
            ):
                model.input(self.pick_model(i), [state, model], all_out)
                retry.click(self.retry(i), [state, *sampling], all_out, show_progress="hidden")
                clear.click(self.clear(i), [state], all_out)
                for mk, btn in zip(PERSON_MARKS, marks, strict=True):
                    btn.click(self.mark(i, mk), [state, mark_turn], all_out)
                fork.click(self.fork(i), [state, fork_turn, fork_text, *sampling], all_out, show_progress="hidden")
                fork_turn.input(self.fork_text(i), [state, fork_turn], fork_text)
                mark_turn.input(self.pick_mark_turn(i), [state, mark_turn], None)
                chat.select(self.select(i), [state], [mark_turn, fork_turn, fork_text])
            do_transplant.click(self.transplant, [state, src, dst], all_out)
            for key, btn in vote_buttons.items():
                btn.click(self.vote(key), [state], all_out)
            board_refresh.click(self.board, [state], board_out)
            board_tab.select(self.board, [state], board_out)
            history_refresh.click(self.history, [state], hist_out)
            history_tab.select(self.history, [state], hist_out)
            history_open.click(self.open_conversation, [state, history_pick, history_pane], all_out)
        blocks: gr.Blocks = demo
        return blocks

    # ---- handlers ----------------------------------------------------------------------------
    def init(self, request: gr.Request) -> list[Any]:
        state = ArenaState(session=(request.session_hash or "")[:12] or ArenaState().session)
        for pane in state.panes:
            set_model(pane, self.config.models[pane.index % len(self.config.models)] if self.config.models else None)
        scenario = self.config.default_scenario
        if scenario:
            state.scenario = load_scenario(scenario)
            state.system_prompt = state.scenario.system_prompt
        return [*self.render(state), state.system_prompt, scenario or NO_SCENARIO]

    def tick(self, state: ArenaState | None) -> list[Any]:
        if state is None:
            return [gr.skip()] * len(PANE_NAMES)
        return [self.header(state, p) for p in state.panes]

    def set_targets(self, state: ArenaState, targets: list[str]) -> list[Any]:
        state.targets = list(targets)
        return self.tick(state)

    def set_scenario(self, state: ArenaState, name: str) -> list[Any]:
        state.scenario = None if name == NO_SCENARIO else load_scenario(name)
        if state.scenario is not None:
            state.system_prompt = state.scenario.system_prompt
        return [*self.render(state), state.system_prompt]

    def set_system(self, state: ArenaState, text: str) -> None:
        state.system_prompt = text

    def set_battle(self, state: ArenaState, on: bool) -> list[Any]:
        if on:
            self._battle(state)
        else:
            self.reveal(state)  # leaving a battle shows its names: no vote on it is anonymous from now on
            state.battle = False
        return [*self.render(state), *self.other_tabs(state)]

    def _battle(self, state: ArenaState) -> None:
        try:
            start_battle(state, self.config.models, self.rng)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def new_battle(self, state: ArenaState) -> list[Any]:
        if state.battle_convs:
            self.reveal(state)  # the battle left behind gets no vote: its names need not stay hidden
        self._battle(state)
        return [*self.render(state), True, *self.other_tabs(state)]

    def other_tabs(self, state: ArenaState) -> list[Any]:
        """Leaderboard and History as a battle starts: redrawn without names (what they showed before
        stays in the page otherwise); left as they are when names may show."""
        if not state.hidden:
            return [gr.skip()] * 7
        return [*self.board(state), *self.history(state)]

    def add_pane(self, state: ArenaState, targets: list[str]) -> list[Any]:
        state.shown = min(len(PANE_NAMES), state.shown + 1)
        state.targets = [*targets, PANE_NAMES[state.shown - 1]]  # a new pane is addressed until unticked
        return self.render(state)

    def remove_pane(self, state: ArenaState, targets: list[str]) -> list[Any]:
        state.shown = max(2, state.shown - 1)
        state.targets = [t for t in targets if t in PANE_NAMES[: state.shown]]
        return self.render(state)

    def _generate(self, state: ArenaState, panes: list[Pane], temperature: float, max_tokens: float) -> Iterator[None]:
        params = SamplingParams(temperature=float(temperature), max_tokens=int(max_tokens))
        yield from stream_turns(self.pool, panes, params, lambda p, c: self.on_answer(state, p, c))

    def send(
        self, state: ArenaState, text: str, targets: list[str], temperature: float, max_tokens: float
    ) -> Iterator[list[Any]]:
        text = text.strip()
        state.targets = list(targets)
        panes = [p for p in state.visible() if p.name in targets and not p.busy]
        if not text or not panes:
            gr.Warning("Type a message and tick at least one pane." if not text else "No idle pane is ticked.")
            yield [*self.render(state), text]
            return
        for pane in panes:
            add_user(state, pane, text)
            self.save(state, pane)
        for _ in self._generate(state, panes, temperature, max_tokens):
            yield [*self.render(state), ""]

    def scripted(self, k: int) -> Any:
        def handler(
            state: ArenaState, targets: list[str], temperature: float, max_tokens: float
        ) -> Iterator[list[Any]]:
            if state.scenario is None or k >= len(state.scenario.steps):
                yield self.render(state)
                return
            for out in self.send(state, state.scenario.steps[k].user, targets, temperature, max_tokens):
                yield out[:-1]

        return handler

    def pick_model(self, i: int) -> Any:
        def handler(state: ArenaState, model: str | None) -> list[Any]:
            pane = state.panes[i]
            if state.battle or model not in self.config.models:
                return self.render(state)  # the picker is hidden in a battle; an unknown name is ignored
            try:
                set_model(pane, model)
            except ValueError as exc:
                gr.Warning(str(exc))
                return self.render(state)
            self.save(state, pane)
            return self.render(state)

        return handler

    def retry(self, i: int) -> Any:
        def handler(state: ArenaState, temperature: float, max_tokens: float) -> Iterator[list[Any]]:
            pane = state.panes[i]
            if pane.busy or not drop_last_answer(pane):
                gr.Warning(f"{pane.name}: nothing to retry")
                yield self.render(state)
                return
            self.save(state, pane)
            for _ in self._generate(state, [pane], temperature, max_tokens):
                yield self.render(state)

        return handler

    def clear(self, i: int) -> Any:
        def handler(state: ArenaState) -> list[Any]:
            pane = state.panes[i]
            if not pane.busy:
                pane.reset(pane.model)
            return self.render(state)

        return handler

    def mark(self, i: int, mark: str) -> Any:
        def handler(state: ArenaState, turn: int | None) -> list[Any]:
            pane = state.panes[i]
            answers = pane.assistant_indices()
            index = turn if turn in answers else (answers[-1] if answers else None)
            if index is None:
                gr.Warning(f"{pane.name}: no answer to mark yet")
                return self.render(state)
            pane.person[index] = mark
            self.save(state, pane)
            self.store.add_mark(pane.conv.id, index, "person", mark, (), author(pane, index))
            return self.render(state)

        return handler

    def fork(self, i: int) -> Any:
        def handler(
            state: ArenaState, turn: int | None, text: str, temperature: float, max_tokens: float
        ) -> Iterator[list[Any]]:
            pane = state.panes[i]
            if pane.busy or turn not in pane.user_indices() or not text.strip():
                gr.Warning(f"{pane.name}: pick a message and give its new text")
                yield self.render(state)
                return
            assert turn is not None
            fork_at(pane, turn, text.strip())
            self.save(state, pane)
            for _ in self._generate(state, [pane], temperature, max_tokens):
                yield self.render(state)

        return handler

    def pick_mark_turn(self, i: int) -> Any:
        def handler(state: ArenaState, turn: int | None) -> None:
            state.panes[i].mark_at = turn

        return handler

    def fork_text(self, i: int) -> Any:
        def handler(state: ArenaState, turn: int | None) -> str:
            state.panes[i].fork_from = turn
            msgs = state.panes[i].conv.messages
            return msgs[turn].content if turn is not None and 0 <= turn < len(msgs) else ""

        return handler

    def select(self, i: int) -> Any:
        def handler(state: ArenaState, evt: gr.SelectData) -> list[Any]:
            shown = [k for k, m in enumerate(state.panes[i].conv.messages) if m.role != "system"]
            index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            if not isinstance(index, int) or not 0 <= index < len(shown):
                return [gr.skip(), gr.skip(), gr.skip()]
            k = shown[index]
            pane = state.panes[i]
            msg = pane.conv.messages[k]
            if msg.role == "assistant":
                pane.mark_at = k
                return [gr.update(value=k), gr.skip(), gr.skip()]
            pane.fork_from = k
            return [gr.skip(), gr.update(value=k), msg.content]

        return handler

    def transplant(self, state: ArenaState, src: str, dst: str) -> list[Any]:
        panes = {p.name: p for p in state.visible()}
        if src == dst or src not in panes or dst not in panes:
            gr.Warning("Pick two different panes")
            return self.render(state)
        try:
            transplant(state, panes[src], panes[dst])
        except ValueError as exc:
            gr.Warning(str(exc))
            return self.render(state)
        self.save(state, panes[dst])
        return self.render(state)

    def vote(self, winner: str) -> Any:
        def handler(state: ArenaState) -> list[Any]:
            vote = pending_vote(state)
            if vote is None:
                gr.Warning("Nothing to vote on: both sides must answer the same message")
                return self.render(state)
            assert vote.left.model is not None and vote.right.model is not None  # pending_vote checks
            stored = self.store.add_vote(
                Vote(
                    session=state.session,
                    kind=vote.kind,
                    winner=winner,
                    model_left=vote.left.model,  # who wrote each answer, not what the pickers show now
                    model_right=vote.right.model,
                    conversation_left=vote.left.conversation,
                    conversation_right=vote.right.conversation,
                    message_index=vote.message_index,
                    anonymous=vote.hidden,
                )
            )
            state.voted.add(vote.key)
            if not stored:
                gr.Warning("These two answers already have a vote")
            if state.hidden:
                self.reveal(state)
                gr.Info(f"Left was {vote.left.model}, right was {vote.right.model}")
            return self.render(state)

        return handler

    def board(self, state: ArenaState | None) -> list[Any]:
        if state is not None and state.hidden:
            return [[], [], None]  # ratings name the models: not during a battle
        votes = self.store.votes()
        boards = {kind: leaderboard(outcomes(votes, kind)) for kind in ("fix", "first")}
        png = ratings_figure(boards)
        path = None
        if png is not None:
            path = self._hand_out(state, "ratings", ".png", lambda f: f.write(png))
        return [ratings_table(boards["fix"]), ratings_table(boards["first"]), path]

    def history(self, state: ArenaState | None) -> list[Any]:
        convs = [c for c in self.store.conversations() if c.meta.get("source") == "arena"]
        convs = sorted(convs, key=lambda c: -float(c.meta.get("updated", 0) or 0))[:300]
        hide_all = state is not None and state.hidden
        rows, choices = [], []
        for c in convs:
            first = next((m.content for m in c.messages if m.role == "user"), "")
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(c.meta.get("updated", 0) or 0)))
            model = "(hidden)" if hide_all or c.meta.get("names_hidden") else c.model or ""
            rows.append([when, model, len(c.messages), _short(first, 60), c.meta.get("scenario") or "", c.id])
            choices.append((f"{when} · {model} · {_short(first, 40)} · {c.id}", c.id))
        names = [p.name for p in state.visible()] if state else list(PANE_NAMES[:2])
        return [
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            rows,
            gr.update(choices=names),
            self.export(state),  # the download button hands out the file it holds: refreshed with the list
        ]

    def open_conversation(self, state: ArenaState, conv_id: str | None, pane_name: str) -> list[Any]:
        if state.hidden:
            gr.Warning("Vote (or leave the battle) before opening another conversation")
            return self.render(state)
        conv = self.store.conversation(conv_id) if conv_id else None
        pane = next((p for p in state.visible() if p.name == pane_name), None)
        if conv is None or pane is None or pane.busy:
            gr.Warning("Pick a conversation and an idle pane")
            return self.render(state)
        if conv.meta.get("names_hidden"):  # a battle left without a vote: opening it shows its names
            conv = replace(conv, meta={**conv.meta, "names_hidden": False})
            self.store.save_conversation(conv)
        pane.reset(conv.model)
        pane.conv = conv
        if conv.model not in self.config.models:
            gr.Warning(f"{conv.model or 'Its model'} is not served here: pick a model to continue it (a new branch)")
        meta = conv.meta
        stats, person, moved = meta.get("stats"), meta.get("person"), meta.get("transplanted")
        pane.stats = {int(k): v for k, v in stats.items()} if isinstance(stats, dict) else {}
        if isinstance(person, dict):
            pane.person = {int(k): str(v) for k, v in person.items()}
        else:  # stored before marks were kept with the conversation
            pane.person = {m.message_index: m.mark for m in self.store.marks(conv.id) if m.source == "person"}
        pane.transplanted = {int(i) for i in moved} if isinstance(moved, list) else set()
        votes = self.store.votes()  # one vote per pair holds for pairs voted on before, in any session
        state.voted |= {pair_key(v.conversation_left, v.conversation_right, v.message_index) for v in votes}
        scenario = meta.get("scenario")
        if scenario and (state.scenario is None or state.scenario.name != scenario) and scenario in BUILTIN:
            state.scenario = load_scenario(scenario)
        return self.render(state)

    def export(self, state: ArenaState | None) -> str:
        """A fresh JSONL of the arena for this session's download button; hidden battles' names are
        left out (`mendlab export --arena` has everything)."""

        def write(f: BinaryIO) -> None:
            with io.TextIOWrapper(f, encoding="utf-8") as text:
                self.store.export_arena_jsonl(text, hide_hidden_names=True)

        return self._hand_out(state, "arena", ".jsonl", write)

    def _hand_out(self, state: ArenaState | None, kind: str, suffix: str, write: Callable[[BinaryIO], object]) -> str:
        """A file for the page to serve: its own unique name in Gradio's upload folder (two sessions
        exporting in the same second never share a file), complete before its name is handed out,
        removed if writing fails, replacing this session's previous one; Gradio deletes the rest
        when the server stops, and `forget` when the session ends."""
        folder = Path(get_upload_folder())
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        session = state.session if state is not None else "page"
        fd, name = tempfile.mkstemp(prefix=f"mendlab-{kind}-{stamp}-{session}-", suffix=suffix, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        if state is not None:
            old = state.exports.get(kind)
            if old and old != name:
                with contextlib.suppress(OSError):
                    Path(old).unlink()
            state.exports[kind] = name
        return name

"""The arena page: Gradio Blocks over `session` (the rules) and `pool` (the models).

Every handler takes the session's `ArenaState`, changes it through `session`, saves what changed in
the results store right away, and redraws all panes from the state: the chat views are a pure
picture of the conversations, so what a person sees is what is stored.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from mendlab.arena.pool import ModelPool
from mendlab.arena.ratings import Rating, leaderboard
from mendlab.arena.session import (
    PANE_NAMES,
    PERSON_MARKS,
    VOTES,
    ArenaState,
    Pane,
    add_user,
    drop_last_answer,
    fork_at,
    grades,
    pending_vote,
    start_battle,
    stream_turns,
    transplant,
)
from mendlab.conversation import Conversation
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
    if state.battle and not state.revealed:
        return f"Model {'ABCD'[pane.index]}"
    return pane.model or "no model"


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
            who = "another model" if state.battle and not state.revealed else m.origin
            badges.append(f"`↪ transplanted from {who}`")
        g = graded.get(i)
        if g is not None:
            badges.append(f"`grader {' '.join(g.marks)}{' ' + ', '.join(g.errors) if g.errors else ''}`")
        if i in pane.person:
            badges.append(f"`you {pane.person[i]}`")
        s = pane.stats.get(i)
        if s:
            window = f"/{s['context_window']}" if s.get("context_window") else ""
            badges.append(f"`{s['tokens_per_s']} tok/s · ctx {s['prompt_tokens'] + s['completion_tokens']}{window}`")
        text = m.content + ("\n```" if m.content.count("```") % 2 else "")  # a cut-off fence would swallow the badges
        out.append({"role": "assistant", "content": text + ("\n\n" + " ".join(badges) if badges else "")})
    if pane.partial is not None:
        out.append({"role": "assistant", "content": pane.partial + " ▌"})
    return out


def stats_line(pane: Pane) -> str:
    if pane.error:
        return f"⚠️ {pane.error}"
    answers = pane.assistant_indices()
    if pane.busy:
        return "generating…"
    if not answers or answers[-1] not in pane.stats:
        return "&nbsp;"
    s = pane.stats[answers[-1]]
    used = s["prompt_tokens"] + s["completion_tokens"]
    window = f" / {s['context_window']}" if s.get("context_window") else ""
    first = f" · first token {s['first_token_s']:.2f} s" if s.get("first_token_s") is not None else ""
    return f"{s['tokens_per_s']} tok/s · context {used}{window} tokens{first}"


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
        self.exports = Path(tempfile.mkdtemp(prefix="mendlab-arena-"))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, state: ArenaState, pane: Pane) -> None:
        if not pane.conv.messages:
            return
        meta = {
            "source": "arena",
            "session": state.session,
            "pane": pane.name,
            "scenario": state.scenario.name if state.scenario else None,
            "battle": state.battle,
            "stats": {str(i): s for i, s in pane.stats.items()},
            "updated": time.time(),
        }
        pane.conv = replace(pane.conv, model=pane.model, meta=meta)
        self.store.save_conversation(pane.conv)

    def on_answer(self, state: ArenaState, pane: Pane, completion: Completion) -> None:
        self.save(state, pane)
        idx = len(pane.conv.messages) - 1
        g = grades(state.scenario, pane.conv).get(idx)
        if g is not None:
            self.store.add_mark(pane.conv.id, idx, "grader", " ".join(g.marks), g.errors, pane.model)

    # ---- drawing -----------------------------------------------------------------------------
    def header(self, state: ArenaState, pane: Pane) -> str:
        status = self.pool.status(pane.model) if pane.model else "no model"
        paused = " · ⏸ paused" if pane.name not in state.targets else ""
        return f"**{pane.name}** · {model_label(state, pane)} · {_status_icon(status, pane.busy)}{paused}"

    def render(self, state: ArenaState) -> list[Any]:
        out: list[Any] = [state]
        for pane in state.panes:
            answers = pane.assistant_indices()
            users = pane.user_indices()
            out += [
                gr.update(visible=pane.index < state.shown),
                self.header(state, pane),
                gr.update(value=pane.model, visible=not state.battle),
                chat_view(state, pane),
                stats_line(pane),
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
            f"**{title}**" + (" (names are revealed after you vote)" if state.battle and not state.revealed else ""),
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
        with gr.Blocks(title="mendlab arena") as demo:
            state = gr.State()
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
                                    list(cfg.models),
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
                board_refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90)
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
                    headers=["When", "Model", "Messages", "First message", "Scenario", "Id"], interactive=False
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
            battle.input(self.set_battle, [state, battle], all_out)
            new_battle.click(self.new_battle, [state], [*all_out, battle])
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
            board_out = [board_fix, board_first, board_plot]
            board_refresh.click(self.board, None, board_out)
            board_tab.select(self.board, None, board_out)
            hist_out = [history_pick, history_table, history_pane, export]
            history_refresh.click(self.history, [state], hist_out)
            history_tab.select(self.history, [state], hist_out)
            history_open.click(self.open_conversation, [state, history_pick, history_pane], all_out)
        blocks: gr.Blocks = demo
        return blocks

    # ---- handlers ----------------------------------------------------------------------------
    def init(self, request: gr.Request) -> list[Any]:
        state = ArenaState(session=(request.session_hash or "")[:12] or ArenaState().session)
        for pane in state.panes:
            pane.model = self.config.models[pane.index % len(self.config.models)] if self.config.models else None
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
            state.battle, state.revealed = False, True
        return self.render(state)

    def _battle(self, state: ArenaState) -> None:
        try:
            start_battle(state, self.config.models, self.rng)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def new_battle(self, state: ArenaState) -> list[Any]:
        self._battle(state)
        return [*self.render(state), True]

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
        def handler(state: ArenaState, model: str) -> list[Any]:
            state.panes[i].model = model
            state.panes[i].error = ""
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
                pane.conv, pane.stats, pane.person, pane.error = Conversation(), {}, {}, ""
                state.fix_pending.pop(i, None)
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
            self.store.add_mark(pane.conv.id, index, "person", mark, (), pane.model)
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
        if panes[dst].busy:
            gr.Warning(f"{dst} is busy")
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
            left, right = state.panes[0], state.panes[1]
            if vote is None or left.model is None or right.model is None:
                gr.Warning("Nothing to vote on: both sides must answer the same message")
                return self.render(state)
            self.store.add_vote(
                Vote(
                    session=state.session,
                    kind=vote.kind,
                    winner=winner,
                    model_left=left.model,
                    model_right=right.model,
                    conversation_left=vote.left,
                    conversation_right=vote.right,
                    message_index=vote.message_index,
                    anonymous=state.battle,
                )
            )
            state.voted.add(vote.key)
            if state.battle:
                state.revealed = True
                gr.Info(f"Left was {left.model}, right was {right.model}")
            return self.render(state)

        return handler

    def board(self) -> list[Any]:
        votes = self.store.votes()
        boards = {kind: leaderboard(outcomes(votes, kind)) for kind in ("fix", "first")}
        png = ratings_figure(boards)
        path = None
        if png is not None:
            path = self.exports / f"ratings-{len(votes)}.png"
            path.write_bytes(png)
        return [ratings_table(boards["fix"]), ratings_table(boards["first"]), str(path) if path else None]

    def history(self, state: ArenaState | None) -> list[Any]:
        convs = [c for c in self.store.conversations() if c.meta.get("source") == "arena"]
        convs = sorted(convs, key=lambda c: -float(c.meta.get("updated", 0) or 0))[:300]
        rows, choices = [], []
        for c in convs:
            first = next((m.content for m in c.messages if m.role == "user"), "")
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(c.meta.get("updated", 0) or 0)))
            rows.append([when, c.model or "", len(c.messages), _short(first, 60), c.meta.get("scenario") or "", c.id])
            choices.append((f"{when} · {c.model} · {_short(first, 40)} · {c.id}", c.id))
        names = [p.name for p in state.visible()] if state else list(PANE_NAMES[:2])
        return [
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            rows,
            gr.update(choices=names),
            self.export(),  # the download button hands out the file it holds: refreshed with the list
        ]

    def open_conversation(self, state: ArenaState, conv_id: str | None, pane_name: str) -> list[Any]:
        conv = self.store.conversation(conv_id) if conv_id else None
        pane = next((p for p in state.visible() if p.name == pane_name), None)
        if conv is None or pane is None or pane.busy:
            gr.Warning("Pick a conversation and an idle pane")
            return self.render(state)
        pane.conv = conv
        if conv.model in self.config.models:
            pane.model = conv.model
        stats = conv.meta.get("stats", {})
        pane.stats = {int(k): v for k, v in stats.items()} if isinstance(stats, dict) else {}
        pane.person = {m.message_index: m.mark for m in self.store.marks(conv.id) if m.source == "person"}
        pane.error = ""
        scenario = conv.meta.get("scenario")
        if scenario and (state.scenario is None or state.scenario.name != scenario) and scenario in BUILTIN:
            state.scenario = load_scenario(scenario)
        return self.render(state)

    def export(self) -> str:
        out = self.exports / f"arena-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        tmp = out.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            self.store.export_arena_jsonl(f)
        tmp.replace(out)
        return str(out)

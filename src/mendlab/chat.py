"""A terminal chat for trying a model by hand: streamed answers, every turn saved in the store."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from mendlab.conversation import Conversation
from mendlab.models import ChatModel, Completion, Message, SamplingParams
from mendlab.store import GenerationRecord, ResultsStore

HELP = "commands: /reset (start over), /exit (quit); Ctrl-D quits too"


def chat_loop(
    model: ChatModel, params: SamplingParams, store: ResultsStore, console: Console, system: str | None = None
) -> Conversation:
    name = model.info.name
    start = (Message("system", system),) if system else ()
    conv = Conversation(messages=start, model=name)
    store.ensure_run(f"chat-{conv.id}", "chat", {"model": name, "params": params.as_dict()})
    console.print(f"[bold]{escape(name)}[/] ({model.info.backend}) — {HELP}")
    while True:
        try:
            line = console.input("[bold cyan]you>[/] ")
        except EOFError:
            console.print()
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            conv = Conversation(messages=start, model=name)
            store.ensure_run(f"chat-{conv.id}", "chat", {"model": name, "params": params.as_dict()})
            console.print("[dim]new conversation[/]")
            continue
        conv = conv.append(Message("user", text))
        console.print(f"[bold green]{escape(name)}>[/] ", end="")
        done: Completion | None = None
        for event in model.stream(conv.messages, params):
            if isinstance(event, Completion):
                done = event
            else:
                console.out(event.text, end="", highlight=False)
        console.print()
        assert done is not None
        window = model.info.context_window
        used = done.prompt_tokens + done.completion_tokens
        console.print(
            f"[dim]{done.completion_tokens} tokens, {done.tokens_per_s:.1f} tok/s, "
            f"context {used}{f'/{window}' if window else ''}[/]",
            highlight=False,
        )
        store.add(
            GenerationRecord.of(
                f"chat-{conv.id}",
                name,
                model.info.backend,
                conv.messages,
                params,
                done,
                0,
                meta={"conversation": conv.id},
            )
        )
        conv = conv.append(Message("assistant", done.text))
        store.save_conversation(conv)
    return conv

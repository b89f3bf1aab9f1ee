"""Time to first token in the arena page vs the same prompt sent to the backend directly, in one run.

    python bench/bench_arena.py [--model smollm2-135m] [--reps 5]

The page number is what a person sees: from pressing Enter in chromium (Playwright) until the first
streamed text shows in the pane, so it includes Gradio's queue, the websocket/SSE hop and the
browser's render. The direct number is `ChatModel.stream` to its first text, in this process. Both
sides answer the same prompts, alternating, from their own warm model (the system prompt is cached by
both), so the ratio is the arena's overhead. Goal: page / direct small enough not to be felt.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console
from rich.table import Table

from mendlab.arena import build_arena, launch
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import Message, SamplingParams, StreamDelta, load_model, load_registry

PROMPTS = (
    "Add a meeting with Fred on Nov 11 at 5PM",
    "Add lunch with Alice on May 3 at noon",
    "Add a call with Bob on June 4 at 10am",
    "Add a dentist visit on March 2 at 9am",
    "Add yoga on Friday at 7pm",
    "Add a review with Carol on Jan 9 at 3pm",
    "Add a flight to Oslo on Feb 14 at 6am",
    "Add dinner with Dan on Aug 8 at 8pm",
)


# The pane shows a cursor as soon as generation starts; the first token is the first text beside it.
FIRST_TEXT = """() => {
  const bots = document.querySelectorAll('#pane-0-chat [data-testid="bot"]');
  return bots.length > 0 && bots[bots.length - 1].innerText.replace('▌', '').trim().length > 0;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    console = Console()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    registry = load_registry()
    system = load_scenario("calendar").system_prompt
    params = SamplingParams(temperature=0.0, max_tokens=8)
    db = Path(tempfile.mkdtemp()) / "bench.db"
    demo, pool, store = build_arena(registry, db, (args.model,), memory_gb=4, max_tokens=8, temperature=0.0)
    url = launch(demo, port=free_port(), block=False)
    direct = load_model(registry.get(args.model))
    page_s: list[float] = []
    direct_s: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.locator("#scripted-0").wait_for(state="visible")
            page.locator("#targets").get_by_label("Right").uncheck()
            prompts = [PROMPTS[i % len(PROMPTS)] + f" ({i})" for i in range(args.reps + 1)]
            for i, prompt in enumerate(prompts):
                # direct: the same history the pane holds (system + this user turn, fresh each time)
                t0 = time.perf_counter()
                for ev in direct.stream([Message("system", system), Message("user", prompt)], params):
                    if isinstance(ev, StreamDelta) and ev.text:
                        break
                d = time.perf_counter() - t0
                page.locator("#pane-0-clear").click()
                page.wait_for_function("!document.querySelector('#pane-0-chat').innerText.includes('tok/s')")
                box = page.locator("#message textarea")
                box.fill(prompt)
                t0 = time.perf_counter()
                box.press("Enter")
                page.wait_for_function(FIRST_TEXT, polling=5)
                w = time.perf_counter() - t0
                page.wait_for_function("document.querySelector('#pane-0-chat').innerText.includes('tok/s')")
                if i > 0:  # the first round warms both sides
                    page_s.append(w)
                    direct_s.append(d)
            browser.close()
    finally:
        demo.close()
        pool.close()
        store.close()
        direct.close()
    table = Table(title=f"time to first token, {args.model}, median of {args.reps}")
    table.add_column("path")
    table.add_column("median s", justify="right")
    table.add_column("min s", justify="right")
    table.add_row("arena page (chromium)", f"{statistics.median(page_s):.3f}", f"{min(page_s):.3f}")
    table.add_row("backend directly", f"{statistics.median(direct_s):.3f}", f"{min(direct_s):.3f}")
    console.print(table)
    ratio = statistics.median(page_s) / statistics.median(direct_s)
    extra = statistics.median(page_s) - statistics.median(direct_s)
    console.print(f"ratio page / direct: [bold]{ratio:.2f}[/] (the page adds {extra * 1000:.0f} ms)")


if __name__ == "__main__":
    main()

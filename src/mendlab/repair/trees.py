"""Repair trees: programs from a code model, feedback on each failing one, repairs from the feedback.

Prompts follow SPEC §2: the feedback model sees the task, the wrong program and the error message of
the first failing test, and explains what is wrong without writing code; the repair model sees all of
that plus the explanation and writes a fixed program. When one model does both, a joint prompt asks
for the explanation and then the code. Feedback may also come from people, through a JSONL file keyed
by task and program. Every node keeps its code or text, verdict, error message and token count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mendlab.errors import InputError
from mendlab.jsonl import read_objects
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.repair.passk import Pair, Program, Tree
from mendlab.repair.sandbox import Sandbox, Verdict
from mendlab.repair.tasks import Task

SYSTEM = "You are an expert Python programmer."
CODE_RE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(reply: str) -> str:
    """The first fenced block, else the whole reply (models often skip the fence)."""
    m = CODE_RE.search(reply)
    return (m.group(1) if m else reply).strip("\n") + "\n"


_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def sanitize(code: str, entry_point: str) -> str:
    """Keep what a function task needs (imports, definitions, constants) and drop the demo code chat
    models append (prints, self-tests, `if __name__ == "__main__":`), as evalplus does. A reply cut
    off by the token limit loses its unfinished tail first. Parsed with `ast`, never run here."""
    lines = code.splitlines()
    for end in range(len(lines), 0, -1):
        try:
            tree = ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point for n in tree.body):
            kept = [ast.get_source_segment("\n".join(lines[:end]), n) or "" for n in tree.body if isinstance(n, _KEEP)]
            return "\n\n".join(kept) + "\n"
        break
    return code


def program_for(task: Task, code: str) -> str:
    """A chat model writes the whole function; keep the task's prompt above it for its imports and
    helpers (its stub is then redefined by the model's function). A bare body continues the prompt."""
    if task.entry_point is None:
        return code
    if re.search(rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", code, re.MULTILINE):
        code = sanitize(code, task.entry_point)
        return task.prompt + "\n" + code if task.meta.get("completion_continues_prompt") else code
    return task.prompt + code if task.meta.get("completion_continues_prompt") else code


def generation_prompt(task: Task) -> list[Message]:
    if task.entry_point is None:
        ask = "Write a Python program for this task. Reply with the program in a ```python code block.\n\n"
    else:
        ask = (
            f"Complete the Python function `{task.entry_point}`. "
            "Reply with the whole function in a ```python code block.\n\n"
        )
    return [Message("system", SYSTEM), Message("user", ask + task.prompt)]


def _context(task: Task, code: str, error: str) -> str:
    return f"### Task\n{task.prompt}\n\n### Incorrect program\n```python\n{code}```\n\n### Error\n{error}\n"


def feedback_prompt(task: Task, code: str, error: str) -> list[Message]:
    return [
        Message("system", SYSTEM),
        Message(
            "user",
            _context(task, code, error)
            + "\nExplain in a few sentences what is wrong with the program. Do not write any code.",
        ),
    ]


def repair_prompt(task: Task, code: str, error: str, feedback: str) -> list[Message]:
    return [
        Message("system", SYSTEM),
        Message(
            "user",
            _context(task, code, error)
            + f"\n### What is wrong\n{feedback}\n\nWrite the corrected program in a ```python code block.",
        ),
    ]


def joint_prompt(task: Task, code: str, error: str) -> list[Message]:
    return [
        Message("system", SYSTEM),
        Message(
            "user",
            _context(task, code, error)
            + "\nFirst explain briefly what is wrong, then write the corrected program in a ```python code block.",
        ),
    ]


@dataclass(frozen=True)
class Node:
    code: str
    tokens: int
    verdict: Verdict
    feedback: str = ""  # for a repair: the feedback it was written from
    feedback_tokens: int = 0
    # Which of its program's feedbacks it was written from (a joint answer is its own): the N_r repairs of
    # one feedback share it, so pass@t pays that feedback's tokens once. None in trees stored before.
    feedback_id: int | None = None


def _feedback_ids(repairs: Sequence[Node]) -> list[int | None]:
    """Which feedback each repair was written from: its recorded id or, in trees stored before ids were
    kept, its feedback's text (the repairs of one feedback share it word for word); None for its own."""
    by_text: dict[tuple[str, int], int] = {}
    return [
        r.feedback_id
        if r.feedback_id is not None
        else (by_text.setdefault((r.feedback, r.feedback_tokens), -1 - len(by_text)) if r.feedback else None)
        for r in repairs
    ]


@dataclass(frozen=True)
class TaskTree:
    task_id: str
    programs: tuple[Node, ...]
    repairs: tuple[tuple[Node, ...], ...]  # per program: its repairs (empty if it passed)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_tree(self) -> Tree:
        return Tree(
            self.task_id,
            tuple(
                Program(
                    p.verdict.passed,
                    p.tokens,
                    tuple(
                        Pair(r.verdict.passed, r.tokens, f, r.feedback_tokens)
                        for r, f in zip(reps, _feedback_ids(reps), strict=True)
                    ),
                )
                for p, reps in zip(self.programs, self.repairs, strict=True)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        def node(n: Node) -> dict[str, Any]:
            return {
                "code": n.code,
                "tokens": n.tokens,
                "verdict": n.verdict.to_json(),
                "feedback": n.feedback,
                "feedback_tokens": n.feedback_tokens,
                "feedback_id": n.feedback_id,
            }

        return {
            "task_id": self.task_id,
            "programs": [node(p) for p in self.programs],
            "repairs": [[node(r) for r in reps] for reps in self.repairs],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskTree:
        def node(d: dict[str, Any]) -> Node:
            v = d["verdict"]
            verdict = Verdict(v["status"], v["message"])
            return Node(d["code"], d["tokens"], verdict, d["feedback"], d["feedback_tokens"], d.get("feedback_id"))

        return cls(
            data["task_id"],
            tuple(node(p) for p in data["programs"]),
            tuple(tuple(node(r) for r in reps) for reps in data["repairs"]),
            data.get("meta", {}),
        )


@dataclass(frozen=True)
class TreeConfig:
    n_p: int = 5
    n_f: int = 2
    n_r: int = 1
    temperature: float = 0.8
    max_tokens: int = 512
    feedback_tokens: int = 192
    joint: bool = False
    seed: int = 0


HumanFeedback = dict[tuple[str, int], list[str]]


def load_human_feedback(path: Path) -> HumanFeedback:
    """JSONL of {"task_id": ..., "program": i, "feedback": "..."}; several lines may share a key."""
    out: HumanFeedback = {}
    for where, row in read_objects(path, "feedback file"):
        if (
            not isinstance(row.get("task_id"), str)
            or not isinstance(row.get("program"), int)
            or not isinstance(row.get("feedback"), str)
        ):
            raise InputError(f"{where}: needs task_id (string), program (integer) and feedback (string)")
        out.setdefault((row["task_id"], row["program"]), []).append(row["feedback"])
    return out


def grow_tree(
    task: Task,
    code_model: ChatModel,
    feedback_model: ChatModel | None,
    repair_model: ChatModel,
    sandbox: Sandbox,
    cfg: TreeConfig,
    human: HumanFeedback | None = None,
    on_node: Callable[[], None] = lambda: None,
) -> TaskTree:
    sample = SamplingParams(n=cfg.n_p, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    programs: list[Node] = []
    for comp in code_model.chat(generation_prompt(task), sample):
        code = extract_code(comp.text)
        programs.append(Node(code, comp.completion_tokens, sandbox.run(task, program_for(task, code))))
        on_node()
    repairs: list[tuple[Node, ...]] = []
    for i, prog in enumerate(programs):
        if prog.verdict.passed:
            repairs.append(())
            continue
        nodes: list[Node] = []
        error = prog.verdict.message or prog.verdict.status
        if human is not None:
            feedbacks = [(text, 0) for text in human.get((task.id, i), [])]  # people's words cost no tokens
        elif cfg.joint or feedback_model is None:
            p = replace(sample, n=cfg.n_f, seed=cfg.seed + 1000 * (i + 1))
            for j, comp in enumerate(repair_model.chat(joint_prompt(task, prog.code, error), p)):
                cut = CODE_RE.search(comp.text)
                explanation = comp.text[: cut.start()].strip() if cut else ""
                code = extract_code(comp.text)
                verdict = sandbox.run(task, program_for(task, code))
                nodes.append(Node(code, comp.completion_tokens, verdict, explanation, 0, j))  # its own feedback
                on_node()
            repairs.append(tuple(nodes))
            continue
        else:
            p = replace(sample, n=cfg.n_f, max_tokens=cfg.feedback_tokens, seed=cfg.seed + 1000 * (i + 1))
            asked = feedback_model.chat(feedback_prompt(task, prog.code, error), p)
            feedbacks = [(c.text.strip(), c.completion_tokens) for c in asked]
        for j, (text, fb_tokens) in enumerate(feedbacks):
            p = replace(sample, n=cfg.n_r, seed=cfg.seed + 1000 * (i + 1) + j + 1)
            for comp in repair_model.chat(repair_prompt(task, prog.code, error, text), p):
                code = extract_code(comp.text)
                nodes.append(
                    Node(code, comp.completion_tokens, sandbox.run(task, program_for(task, code)), text, fb_tokens, j)
                )
                on_node()
        repairs.append(tuple(nodes))
    return TaskTree(task.id, tuple(programs), tuple(repairs))

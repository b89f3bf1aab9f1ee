"""Self-repair as an engine task: one sample per benchmark task, played by growing its repair tree.

The sandbox is the scorer's instrument but the solver needs it too (only failing programs get
feedback), so the solver grows the whole tree and the scorer checks that every verdict is one the
sandbox really gave: a tree with a `sandbox_error` node is that sample's error, never a verdict, and
`--retry-errors` grows it again. Generations keep the keys trees had before the engine (no scope),
so a run stored then resumes from its answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mendlab.engine import Outcome, Sample, SampleFailed, Task
from mendlab.models import ChatModel
from mendlab.repair.sandbox import Sandbox
from mendlab.repair.tasks import Task as BenchmarkTask
from mendlab.repair.trees import HumanFeedback, TaskTree, TreeConfig, grow_tree


@dataclass(frozen=True)
class TreeSetup:
    """Everything but the code model (the engine's model) that grows a tree."""

    feedback_model: ChatModel | None  # None: joint (the repair model explains) or human feedback
    repair_model: ChatModel
    sandbox: Sandbox
    cfg: TreeConfig
    human: HumanFeedback | None = None


def repair_task(tasks: Sequence[BenchmarkTask], setup: TreeSetup) -> Task[BenchmarkTask, TaskTree]:
    def solve(sample: Sample[BenchmarkTask], code_model: ChatModel) -> TaskTree:
        return grow_tree(
            sample.input,
            code_model,
            setup.feedback_model,
            setup.repair_model,
            setup.sandbox,
            setup.cfg,
            human=setup.human,
        )

    return Task("repair", [Sample(t.id, t, scope="") for t in tasks], solve, score_tree)


def score_tree(sample: Sample[BenchmarkTask], tree: TaskTree) -> Outcome:
    nodes = [*tree.programs, *(n for rs in tree.repairs for n in rs)]
    broken = [n.verdict.message for n in nodes if n.verdict.status == "sandbox_error"]
    if broken:
        raise SampleFailed(f"the sandbox could not judge a program: {broken[0]}")
    repairs = [n for rs in tree.repairs for n in rs]
    return Outcome(
        data=tree.to_json(),
        score={
            "programs": len(tree.programs),
            "programs_passing": sum(p.verdict.passed for p in tree.programs),
            "repairs": len(repairs),
            "repairs_passing": sum(n.verdict.passed for n in repairs),
        },
    )

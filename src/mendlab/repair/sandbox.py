"""Run untrusted programs where they can neither forge a verdict, nor read the answers, nor jam the machine.

Each worker is one bubblewrap sandbox (new user, network, PID, IPC and UTS namespaces, no further user
namespaces) that sees only what the interpreter needs: the Python standard library with every
site-packages hidden, the system's shared libraries, a private /proc, /dev and /tmp. No benchmark data,
no results store, no file of the user's. Inside it a zygote (zygote.py) forks one process per program,
so that real isolation costs a fork, not a start-up. Per worker: a pids and a memory cgroup where the
machine allows it, else a user of its own; after each program, everything it started is killed.

A program is asked for results, never for a verdict: for a function task the sandbox receives only
arguments and returns only plain data; the tests run here, against that data. A stdin/stdout
program's output is compared here too. A pass needs at least one test that ran here and passed.

Without bubblewrap there is no sandbox: we refuse to run model code unless the caller explicitly
allows it (`--unsafe-no-sandbox`), and the isolation in force is reported with every result.
"""

from __future__ import annotations

import ast
import atexit
import json
import os
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from mendlab.errors import MendlabError
from mendlab.repair.cgroup import Cgroup, sweep
from mendlab.repair.seccomp import seccomp_filter
from mendlab.repair.tasks import Task
from mendlab.repair.zygote import decode, encode

Status = Literal["pass", "wrong_answer", "runtime_error", "compile_error", "timeout", "memory_limit", "sandbox_error"]
MAX_FEEDBACK = 300
ZYGOTE = resources.files("mendlab.repair").joinpath("zygote.py").read_text(encoding="utf-8")
# Imported once in the zygote, so that forked programs find them warm.
PRELOAD = (
    "math", "re", "itertools", "collections", "functools", "heapq", "string", "typing", "bisect", "random",
    "statistics", "fractions", "decimal", "operator", "copy", "json", "hashlib", "datetime", "fcntl", "resource",
)  # fmt: skip
INSTALL_HINT = "sudo apt-get install bubblewrap"
SPAWN_ATTEMPTS = 3


@dataclass(frozen=True)
class Limits:
    test_s: float = 4.0  # wall clock for one test (one call, or one stdin run)
    task_s: float = 20.0  # wall clock for all the tests of a task
    cpu_s: int = 20
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32
    output_kb: int = 1024


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str  # the feedback of SPEC §2: the first failing test only, strings cut to 300 chars
    tests_run: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message}


@dataclass(frozen=True)
class Execution:
    """One run of a stdin/stdout program."""

    exit_code: int | None
    signal: str | None
    stdout: str
    stderr: str
    timed_out: bool


@dataclass(frozen=True)
class Isolation:
    level: Literal["bwrap", "unsafe"]
    detail: str


class SandboxUnavailable(MendlabError):
    """No sandbox can be had here, and running model code without one was not allowed."""


class SandboxFailure(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


class _SpawnFailed(Exception):
    """The sandbox could not start a process; retried, then that sample's error."""


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_FEEDBACK else text[: MAX_FEEDBACK - 1] + "…"


# ------------------------------------------------------------------------------------ what the sandbox sees


@dataclass(frozen=True)
class _Interpreter:
    executable: str
    stdlib: tuple[str, ...]
    site_dirs: tuple[str, ...]
    libraries: tuple[str, ...]  # every shared library it or its extension modules load, and the loader


def _shared_libraries(binaries: list[str]) -> list[str]:
    """What `ldd` says these binaries load (the loader included), as the paths the loader opens."""
    ldd = shutil.which("ldd")
    if ldd is None or not binaries:
        return []
    try:
        text = subprocess.run([ldd, *binaries], capture_output=True, timeout=60, text=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in text.splitlines():
        path = line.split("=>", 1)[1] if "=>" in line else line
        path = path.split("(", 1)[0].strip()
        if path.startswith("/"):
            found.append(path)
    return list(dict.fromkeys(found))


@lru_cache(maxsize=4)
def _interpreter(python: str) -> _Interpreter | None:
    probe = (
        "import json, os, site, sys, sysconfig\n"
        "p = sysconfig.get_paths()\n"
        "sites = set(site.getsitepackages() + [p['purelib'], p['platlib']])\n"
        "print(json.dumps({'exe': os.path.realpath(sys.executable), 'stdlib': [p['stdlib'], p['platstdlib']],"
        " 'sites': sorted(sites)}))\n"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", probe], capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"}
        )
        info = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    stdlib = list(dict.fromkeys(info["stdlib"]))
    modules = [str(p) for d in stdlib for p in sorted(Path(d, "lib-dynload").glob("*.so"))]
    libs = _shared_libraries([info["exe"], *modules])
    for locale in ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"):
        if os.path.isdir(locale):
            libs.append(locale)
    return _Interpreter(info["exe"], tuple(stdlib), tuple(info["sites"]), tuple(libs))


TOP_LINKS = ("/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")


def _filesystem(interp: _Interpreter) -> list[str]:
    """bwrap arguments for a root that holds the interpreter, its standard library (every
    site-packages hidden) and the shared libraries they load, and nothing else: no installed packages
    (benchmark data lives there), no /home, /root, /work, /etc, /usr/share or /usr/local."""
    args: list[str] = []
    bound: list[str] = []

    def under(path: str) -> bool:
        return any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound)

    def bind(source: str, dest: str) -> None:
        if not under(dest) and os.path.exists(source):
            args.extend(["--ro-bind", source, dest])
            bound.append(dest)

    for d in TOP_LINKS:  # merged-/usr systems: /lib -> usr/lib, so that the loader's paths resolve
        if os.path.islink(d):
            args.extend(["--symlink", os.readlink(d), d])
    for path in (interp.executable, *interp.stdlib, "/etc/ld.so.cache"):
        bind(path, path)
    for lib in interp.libraries:  # at the path the loader opens (through /lib links) and at the real one
        real = os.path.realpath(lib)
        bind(real, os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib)))
        bind(real, real)
    for site_dir in interp.site_dirs:  # hide installed packages inside a bound standard library
        if under(site_dir) and os.path.isdir(site_dir):
            args.extend(["--tmpfs", site_dir, "--remount-ro", site_dir])
    return args


# ------------------------------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Plan:
    """How workers are started: decided once, when the sandbox is probed."""

    python: str
    bwrap: list[str] | None  # the bwrap command up to `--`, or None when running unsafe
    token: str
    limits: Limits
    use_cgroups: bool


def _worker_uid(index: int) -> int | None:
    """As root, each worker runs as a user of its own (no account needed): a per-user process limit or
    a signal from one worker's program never reaches another's."""
    if os.geteuid() != 0:
        return None
    return 400_000_000 + (os.getpid() % 1_000_000) * 64 + index % 64


class _Worker:
    """One zygote in one sandbox, with its cgroup and its channel."""

    def __init__(self, plan: _Plan, index: int) -> None:
        self.plan = plan
        self.index = index
        self.uid = _worker_uid(index)
        self.broken = False
        self.buf = bytearray()
        self.cgroup: Cgroup | None = None
        self.cgroup_note = "no cgroup"
        self.work: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] = {}
        # A reply holds at most a program's capped output, JSON-escaped (up to 6 bytes a byte).
        self.max_reply = 6 * (plan.limits.output_kb << 10) + (1 << 16)

    def start(self) -> None:
        plan, lim = self.plan, self.plan.limits
        if plan.use_cgroups:
            got = Cgroup.create(
                f"{plan.token}-{self.index}-{uuid.uuid4().hex[:6]}", lim.processes + 4, (lim.memory_mb + 256) << 20
            )
            if isinstance(got, Cgroup):
                self.cgroup, self.cgroup_note = got, "pids+memory cgroup per worker"
            else:
                self.cgroup_note = got
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
               "MENDLAB_SANDBOX": plan.token}  # fmt: skip
        argv = [plan.python, "-I", "-S", "-B", "-c", ZYGOTE]
        keep: tuple[int, ...] = ()
        if plan.bwrap is not None:
            work = "/tmp"
            setenv = [x for k, v in {**env, "HOME": "/tmp"}.items() for x in ("--setenv", k, v)]
            bpf = seccomp_filter()
            seccomp: list[str] = []
            if bpf is not None:  # bubblewrap reads the filter from a descriptor we hand it
                read_end, write_end = os.pipe()
                os.write(write_end, bpf)
                os.close(write_end)
                keep, seccomp = (read_end,), ["--seccomp", str(read_end)]
            cmd = [*plan.bwrap, *seccomp, "--clearenv", *setenv, "--chdir", "/tmp", "--", *argv]
            cwd = "/"
        else:
            self.work = Path(tempfile.mkdtemp(prefix="mendlab-sbx-"))
            if self.uid is not None:
                os.chown(self.work, self.uid, self.uid)
            work = str(self.work)
            cmd, cwd, env = argv, work, {**env, "HOME": work}
        kill_all = plan.bwrap is not None or self.uid is not None
        if self.cgroup is not None:
            nproc = None
        elif self.uid is not None:
            nproc = lim.processes + 4
        else:  # our own user, shared with everything else we run: only a cap above what it has now
            nproc = _process_count(os.getuid()) + lim.processes
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                preexec_fn=_preexec(self.cgroup, self.uid),
                close_fds=True,
                pass_fds=keep,
                env=env if plan.bwrap is None else {"PATH": "/usr/bin:/bin"},  # never ours (API keys)
            )
        except OSError as exc:
            self.kill()
            raise _SpawnFailed(f"could not start the sandbox: {exc.strerror or exc}") from None
        finally:
            for fd in keep:
                os.close(fd)
        scratch = ["/dev/shm"] if plan.bwrap is not None else []  # the sandbox's own, never the machine's
        cfg = {"limits": asdict(lim), "nproc": nproc, "kill_all": kill_all, "work": work, "scratch": scratch,
               "preload": PRELOAD, "pid1": plan.bwrap is not None}  # fmt: skip
        hello = self.request(cfg, 20.0)
        if hello is None or not hello.get("hello"):
            why = self._stderr() or "no answer"
            self.kill()
            raise _SpawnFailed(f"the sandbox did not start: {why}")
        if plan.bwrap is not None and hello.get("undumpable") is not True:
            self.kill()
            raise _SpawnFailed("the sandbox could not protect its channel (prctl PR_SET_DUMPABLE refused)")
        self.hello = hello
        assert self.proc.stderr is not None
        self.proc.stderr.close()  # only bubblewrap's own start-up errors ever go there

    def _stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.proc.stderr.closed:
            return ""
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        text = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return text[-1] if text else f"exit code {self.proc.returncode}"

    def request(self, obj: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """One message to the zygote and its answer; None (and the worker marked broken) when it died
        or did not answer in time."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdout is None or self.broken:
            self.broken = True
            return None
        try:
            proc.stdin.write((json.dumps(obj) + "\n").encode())
            proc.stdin.flush()
        except (OSError, ValueError):
            self.broken = True
            return None
        fd = proc.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.broken = True
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk or len(self.buf) + len(chunk) > self.max_reply:
                self.broken = True
                return None
            self.buf += chunk
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            self.broken = True
            return None
        if not isinstance(reply, dict):
            self.broken = True
            return None
        return reply

    def kill(self) -> None:
        self.broken = True
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        if self.plan.bwrap is None and self.uid is not None:
            _kill_user(self.uid)  # programs that left the process group: the next worker may get this user
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


def _preexec(cgroup: Cgroup | None, uid: int | None) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()
        if cgroup is not None:
            cgroup.enter()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return setup


def _kill_user(uid: int) -> None:
    """Every process of a worker's own user (only ever a sandbox's), until none is left."""
    for _ in range(100):
        left = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue  # dead already: its parent's to reap
                os.kill(int(entry), signal.SIGKILL)
                left += 1
            except (OSError, IndexError):
                continue
        if not left:
            return
        time.sleep(0.01)


def _process_count(uid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                n += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return n


def sandbox_processes(token: str) -> list[int]:
    """Live (non-zombie) processes started by the sandbox with this token."""
    found = []
    needle = f"MENDLAB_SANDBOX={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read():
                    continue
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _bwrap_base(disable_userns: bool, tmp_bytes: int) -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    return [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        *(["--disable-userns"] if disable_userns else []),
        "--new-session",
        "--as-pid-1",  # the zygote is PID 1: nothing else in the sandbox holds our channel
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
    ]


# ------------------------------------------------------------------------------------------------- sandbox


class Sandbox:
    """Runs programs for tasks, `workers` at a time (one warm zygote each, started on first use)."""

    def __init__(
        self,
        limits: Limits | None = None,
        workers: int = 2,
        allow_unsafe: bool = False,
        isolation: Literal["auto", "unsafe"] = "auto",
    ) -> None:
        self.token = uuid.uuid4().hex
        self.limits = limits or Limits()
        self.workers = max(1, workers)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._claimed: set[int] = set()  # indices of workers being started
        self._starting = 0
        self._closed = False
        self._plan, self.isolation = self._probe(allow_unsafe or isolation == "unsafe", isolation == "unsafe")
        atexit.register(self.close)

    def _probe(self, allow_unsafe: bool, force_unsafe: bool) -> tuple[_Plan, Isolation]:
        """Start the first worker with the best isolation this machine gives, and keep it warm."""
        pythons = list(dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"]))
        use_cgroups = os.geteuid() == 0
        if use_cgroups:
            sweep()
        why = f"bubblewrap is not installed ({INSTALL_HINT})"
        if not force_unsafe and shutil.which("bwrap"):
            for disable_userns in (True, False):
                for python in pythons:
                    interp = _interpreter(python)
                    base = _bwrap_base(disable_userns, max(64, 4 * self.limits.file_mb) << 20)
                    if interp is None or base is None:
                        continue
                    # Everything but /tmp and /dev/shm read-only: nothing else to leave for the next program.
                    view = [*base, *_filesystem(interp), "--remount-ro", "/dev", "--remount-ro", "/"]
                    plan = _Plan(interp.executable, view, self.token, self.limits, use_cgroups)
                    try:
                        worker = self._start(plan)
                    except _SpawnFailed as exc:
                        why = f"bubblewrap refused to start ({exc})"
                        continue
                    self._idle.put(worker)
                    userns = "no further user namespaces" if disable_userns else "user namespaces NOT disabled"
                    filtered = "a seccomp filter" if seccomp_filter() is not None else "NO seccomp filter (not x86-64)"
                    detail = (
                        f"bubblewrap ({interp.executable}): no network, own PID and user namespaces, {userns}, "
                        f"{filtered}, only the Python standard library and the libraries it loads visible, "
                        f"read-only but a private /tmp; {worker.cgroup_note}"
                    )
                    return plan, Isolation("bwrap", detail)
        if not allow_unsafe:
            raise SandboxUnavailable(
                f"{why}: mendlab runs model-written programs only inside bubblewrap "
                "(or pass --unsafe-no-sandbox to run them as your own user with resource limits only)"
            )
        for python in pythons:
            plan = _Plan(python, None, self.token, self.limits, use_cgroups)
            try:
                worker = self._start(plan)
            except _SpawnFailed:
                continue
            self._idle.put(worker)
            note = "" if force_unsafe else f" ({why})"
            detail = (
                f"UNSAFE, no sandbox{note}: programs run with resource limits only and can read your "
                f"files and use the network; {worker.cgroup_note}"
            )
            return plan, Isolation("unsafe", detail)
        raise SandboxUnavailable("no Python interpreter could be started to run programs")

    def _start(self, plan: _Plan) -> _Worker:
        with self._lock:  # the lowest index no live or starting worker holds: its uid is its own
            taken = {w.index for w in self._live} | self._claimed
            index = next(i for i in range(len(taken) + 1) if i not in taken)
            self._claimed.add(index)
        try:
            worker = _Worker(plan, index)
            worker.start()
            with self._lock:
                self._live.add(worker)
        finally:
            with self._lock:
                self._claimed.discard(index)
        return worker

    def _acquire(self) -> _Worker:
        """An idle worker, a new one while fewer than `workers` live, else wait for one."""
        while True:
            with self._lock:
                if self._closed:
                    raise SandboxFailure(Verdict("sandbox_error", "the sandbox is closed"))
                try:
                    return self._idle.get_nowait()
                except queue.Empty:
                    pass
                grow = len(self._live) + self._starting < self.workers
                if grow:
                    self._starting += 1
            if grow:
                try:
                    return self._start(self._plan)
                finally:
                    with self._lock:
                        self._starting -= 1
            try:
                return self._idle.get(timeout=0.2)
            except queue.Empty:
                continue

    def _release(self, worker: _Worker) -> None:
        if worker.broken or self._closed:  # a worker that misbehaved is replaced, never reused
            worker.kill()
            with self._lock:
                self._live.discard(worker)
            return
        self._idle.put(worker)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            live = list(self._live)
            self._live.clear()
        for worker in live:
            worker.kill()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running

    def run(self, task: Task, completion: str) -> Verdict:
        """The verdict for one program; a sandbox that cannot start is retried, then reported as
        `sandbox_error` for this program alone."""
        start = time.perf_counter()
        program = task.program(completion)
        verdict = Verdict("sandbox_error", "not run")
        for attempt in range(SPAWN_ATTEMPTS):
            try:
                verdict = self._run_io(task, program) if task.entry_point is None else self._run_calls(task, program)
            except SandboxFailure as failure:
                verdict = failure.verdict
            except _SpawnFailed as exc:
                verdict = Verdict("sandbox_error", _cut(f"{exc} (after {attempt + 1} attempts)"))
                time.sleep(0.1 * (attempt + 1) ** 2)
                continue
            except (RecursionError, MemoryError, ValueError) as exc:  # never a traceback for one sample
                verdict = Verdict("sandbox_error", _cut(f"{type(exc).__name__} while judging the program"))
            break
        return Verdict(verdict.status, verdict.message, verdict.tests_run, time.perf_counter() - start)

    def execute(self, program: str, stdin: str = "", timeout: float | None = None) -> Execution:
        """Run a whole program as a script: stdin fed and stdout drained together."""
        worker = self._acquire()
        try:
            return self._execute_on(worker, program, stdin, self.limits.test_s if timeout is None else timeout)
        finally:
            self._release(worker)

    def _execute_on(self, worker: _Worker, program: str, stdin: str, timeout: float) -> Execution:
        reply = worker.request({"op": "stdio", "source": program, "stdin": stdin, "timeout": timeout}, timeout + 5)
        if reply is None:
            return Execution(None, None, "", "the sandbox stopped answering (killed, or out of memory)", False)
        if reply.get("failed") == "spawn":  # this worker cannot start programs: another one will
            worker.broken = True
            raise _SpawnFailed(str(reply.get("error")))
        if reply.get("clean") is not True:  # its processes may live on, or the worker is dying: not reused
            worker.broken = True
        return Execution(
            reply.get("exit"), reply.get("signal"), str(reply.get("stdout", "")), str(reply.get("stderr", "")),
            bool(reply.get("timed_out")),
        )  # fmt: skip

    def _run_io(self, task: Task, program: str) -> Verdict:
        try:
            ast.parse(program)
        except SyntaxError as exc:
            return Verdict("compile_error", _cut(f"SyntaxError: {exc.msg} (line {exc.lineno})"))
        except (RecursionError, MemoryError, ValueError) as exc:  # a program built to choke the parser
            return Verdict("compile_error", _cut(f"{type(exc).__name__} while parsing the program"))
        if not task.io:
            return Verdict("sandbox_error", "the task has no tests: nothing can pass")
        # One worker for the whole task, taken before the clock starts: time spent waiting for a worker
        # while other trees use them is not the program's (concurrent trees judged programs `timeout`).
        held = [self._acquire()]
        try:
            return self._judge_io(task, program, held)
        finally:
            self._release(held[0])

    def _judge_io(self, task: Task, program: str, held: list[_Worker]) -> Verdict:
        deadline = time.monotonic() + self.limits.task_s
        for i, (stdin, expected) in enumerate(task.io):
            if held[0].broken:  # the last input left processes behind: that worker is replaced, not reused
                self._release(held[0])
                held[0] = self._acquire()
            timeout = max(0.1, min(self.limits.test_s, deadline - time.monotonic()))
            run = self._execute_on(held[0], program, stdin, timeout)
            if run.timed_out:
                return Verdict("timeout", _cut(f"Timed out after {timeout:.1f}s on input {_cut(stdin)}"), i)
            if run.exit_code != 0:
                tail = run.stderr.strip().splitlines()
                if run.signal is not None:
                    last = f"killed by {run.signal}" + (
                        " (CPU or memory limit)" if run.signal in ("SIGKILL", "SIGXCPU") else ""
                    )
                else:
                    last = tail[-1] if tail else f"exit code {run.exit_code}"
                line = next((t.strip() for t in reversed(tail) if t.strip().startswith('File "prog.py"')), "")
                status: Status = "memory_limit" if "MemoryError" in last else "runtime_error"
                if run.signal == "SIGXCPU":
                    status = "timeout"
                where = f" ({line.split(',')[1].strip()})" if line.count(",") >= 1 else ""
                return Verdict(status, _cut(f"Given input {stdin!r}, the program failed: {last}{where}"), i)
            if _norm(run.stdout) != _norm(expected):
                return _wrong_answer(stdin, run.stdout.strip(), expected.strip(), i + 1)
        return Verdict("pass", "", len(task.io))

    def _run_calls(self, task: Task, program: str) -> Verdict:
        assert task.entry_point is not None
        if task.check is None and not task.calls:
            return Verdict("sandbox_error", "the task has no tests: nothing can pass")
        worker = self._acquire()
        deadline = time.monotonic() + self.limits.task_s
        try:
            load_s = min(self.limits.test_s * 2, deadline - time.monotonic())
            reply = worker.request({"op": "load", "source": program, "entry": task.entry_point, "timeout": load_s},
                                   load_s + 5)  # fmt: skip
            if reply is None:
                return _sandbox_died()
            if reply.get("failed") == "spawn":  # this worker cannot start programs: another one will
                worker.broken = True
                raise _SpawnFailed(str(reply.get("error")))
            if reply.get("loaded") is not True:
                return _failure(reply, loading=True)
            channel = _Channel(worker, self.limits.test_s)
            if task.check is not None:
                return self._check(task, channel, deadline)
            for i, (args, expected) in enumerate(task.calls):
                got = channel.call(args, deadline)
                if got != expected or (type(got) is not type(expected) and not _num(got, expected)):
                    return _wrong_answer(_args(args), got, expected, i + 1)
            return Verdict("pass", "", len(task.calls))
        finally:
            if not worker.broken:
                end = worker.request({"op": "end"}, 10.0)
                if end is None or end.get("clean") is not True:
                    worker.broken = True
            self._release(worker)

    def _check(self, task: Task, channel: _Channel, deadline: float) -> Verdict:
        """Run HumanEval's check() here, with a candidate that forwards each call to the sandbox."""
        calls: list[tuple[tuple[Any, ...], Any]] = []

        def candidate(*args: Any) -> Any:
            result = channel.call(args, deadline)
            calls.append((args, result))
            return result

        namespace: dict[str, Any] = {"__name__": "mendlab_check"}
        assert task.check is not None and task.entry_point is not None
        source = task.helpers + "\n\n" + task.check
        exec(compile(source, f"<tests of {task.id}>", "exec"), namespace)  # the dataset's code, not the model's
        namespace[task.entry_point] = candidate  # tests that call the function by name get the program's
        try:
            namespace["check"](candidate)
        except SandboxFailure:
            raise
        except AssertionError:
            return self._wrong(source, calls, sys.exc_info()[2])
        except Exception as exc:  # the tests choked on what the program returned
            if not calls:
                return Verdict("runtime_error", _cut(f"{type(exc).__name__}: {exc}"))
            args, out = calls[-1]
            return Verdict(
                "wrong_answer",
                _cut(
                    f"Given input {_cut(_args(args))} the output was {_cut(out)}, which the tests cannot use "
                    f"({type(exc).__name__}: {exc})."
                ),
                len(calls),
            )
        if not calls:  # a check() that never called the program has tested nothing
            return Verdict("sandbox_error", "the tests never called the program: nothing was checked")
        return Verdict("pass", "", len(calls))

    @staticmethod
    def _wrong(source: str, calls: list[tuple[tuple[Any, ...], Any]], tb: Any) -> Verdict:
        lineno = 0
        for frame in traceback.extract_tb(tb):
            if frame.filename.startswith("<tests of") and frame.lineno:
                lineno = frame.lineno
        line = _statement_at(source, lineno)
        if not calls:
            return Verdict("wrong_answer", _cut(f"The test failed: {line}"))
        args, out = calls[-1]
        expected = _expected_from_assert(line)
        if expected is not None:
            return _wrong_answer(_args(args), out, expected, len(calls))
        msg = f"Given input {_cut(_args(args))} the output was {_cut(out)}, which fails the test: {_cut(line)}"
        return Verdict("wrong_answer", msg, len(calls))


_LOAD_KINDS: dict[str, Status] = {
    "compile_error": "compile_error",
    "runtime_error": "runtime_error",
    "memory_limit": "memory_limit",
    "timeout": "timeout",
}


def _sandbox_died() -> Verdict:
    return Verdict("runtime_error", "the sandbox stopped answering while the program ran (killed, or out of memory)")


def _failure(reply: dict[str, Any], loading: bool) -> Verdict:
    """A zygote's report of a failed program. Never a pass: the kind is looked up in a fixed table."""
    kind = _LOAD_KINDS.get(str(reply.get("failed")), "runtime_error")
    msg = str(reply.get("error") or "the program did not start")
    if kind == "timeout" and loading:
        msg = "Timed out while loading the program."
    line = f" (line {reply['line']})" if isinstance(reply.get("line"), int) else ""
    return Verdict(kind, _cut(f"{msg}{line}"))


def _wrong_answer(given: str, got: Any, expected: Any, tests_run: int) -> Verdict:
    """SPEC §2's message for a wrong answer, each part cut to 300 characters."""
    return Verdict(
        "wrong_answer",
        f"Given input {_cut(given)} the output was {_cut(got)} but the expected output is {_cut(expected)}.",
        tests_run,
    )


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _num(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and a == b


def _args(args: tuple[Any, ...]) -> str:
    return ", ".join(repr(a) for a in args)


def _statement_at(source: str, lineno: int) -> str:
    """The whole statement that starts at `lineno` (asserts often span several lines)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt) and node.lineno == lineno and not isinstance(node, ast.FunctionDef):
                return " ".join((ast.get_source_segment(source, node) or "").split())
    lines = source.splitlines()
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""


def _expected_from_assert(line: str) -> Any:
    """`assert candidate(...) == 3` gives 3: parsed with ast, read only if it is a literal."""
    try:
        node = ast.parse(line.strip()).body[0]
    except (SyntaxError, IndexError):
        return None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
        if isinstance(node.test.ops[0], ast.Eq):
            try:
                return ast.literal_eval(node.test.comparators[0])
            except ValueError:
                return None
    return None


class _Channel:
    """Calls of the loaded program, through the zygote, with the per-test and per-task clocks."""

    def __init__(self, worker: _Worker, test_s: float) -> None:
        self.worker = worker
        self.test_s = test_s

    def call(self, args: tuple[Any, ...], deadline: float) -> Any:
        timeout = min(self.test_s, deadline - time.monotonic())
        if timeout <= 0:
            raise SandboxFailure(Verdict("timeout", "Timed out: the task's time limit is spent."))
        try:
            payload = encode(list(args))
        except (TypeError, ValueError) as exc:
            raise SandboxFailure(Verdict("runtime_error", _cut(f"cannot send the test's arguments: {exc}"))) from None
        reply = self.worker.request({"op": "call", "args": payload, "timeout": timeout}, timeout + 5)
        if reply is None:
            raise SandboxFailure(_sandbox_died())
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
                raise SandboxFailure(Verdict("runtime_error", "the program returned something unreadable")) from None
        if "raised" in reply:
            line = f" (line {reply['line']})" if isinstance(reply.get("line"), int) else ""
            msg = str(reply["raised"])
            kind: Status = "memory_limit" if "MemoryError" in msg else "runtime_error"
            raise SandboxFailure(Verdict(kind, _cut(f"Given input {_args(args)}, the program raised {msg}{line}")))
        failed = _failure(reply, loading=False)
        if failed.status == "timeout":
            raise SandboxFailure(
                Verdict("timeout", _cut(f"Given input {_args(args)}, the program timed out after {timeout:.1f}s."))
            )
        raise SandboxFailure(
            Verdict(failed.status, _cut(f"Given input {_args(args)}, the program raised {failed.message}"))
        )

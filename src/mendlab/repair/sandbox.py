"""Run untrusted programs: each in its own process, never in ours, and judged by us, not by them.

Isolation, best available first:
- `bwrap` (bubblewrap): new user, network, PID, IPC and UTS namespaces, the filesystem read-only
  except a fresh empty folder, a private /tmp, no network at all;
- otherwise resource limits only, and we say so: the program still runs as another user when we are
  root, in its own session, with limits, but it shares the network.
Always: CPU, address-space, file-size and process-count limits, a scrubbed environment, a fresh
folder as working directory and home, output capped, a wall clock per test and per task.

A program is asked for results, never for a verdict: for a function task the sandbox receives only
arguments and returns only plain data (see harness.py), and the tests run here, against that data.
A stdin/stdout program's output is compared here too. Nothing it prints, returns or patches inside
the sandbox (`__eq__`, builtins, `exit(0)`) can turn into a pass.
"""

from __future__ import annotations

import ast
import json
import os
import pwd
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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from mendlab.repair.harness import decode, encode
from mendlab.repair.tasks import Task

Status = Literal["pass", "wrong_answer", "runtime_error", "compile_error", "timeout", "memory_limit"]
MAX_FEEDBACK = 300
HARNESS = resources.files("mendlab.repair").joinpath("harness.py").read_text(encoding="utf-8")


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


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_FEEDBACK else text[: MAX_FEEDBACK - 1] + "…"


class SandboxFailure(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


@dataclass(frozen=True)
class Isolation:
    level: Literal["bwrap", "rlimits"]
    detail: str


def _sandbox_user() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return 65534, 65534


def _user_process_count(uid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _become_subreaper() -> None:
    """Orphans of a killed sandbox (bwrap's inner process) come to us instead of to an init that may
    never reap them; unreaped zombies would count against the sandbox user's process limit."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


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


def _reap_orphans(tracked: set[int]) -> None:
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in tracked:
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


class Sandbox:
    """Runs programs for tasks. Keeps `warm` processes started ahead, since start-up dominates."""

    def __init__(self, limits: Limits | None = None, warm: int = 2, force_rlimits: bool = False) -> None:
        _become_subreaper()
        self.token = uuid.uuid4().hex
        self._tracked: set[int] = set()
        self._reap_lock = threading.Lock()
        self.limits = limits or Limits()
        self.user = _sandbox_user()
        self.python = self._pick_python()
        self.isolation = self._probe(force_rlimits)
        self._warm = warm
        self._pool: queue.Queue[tuple[subprocess.Popen[bytes], Path]] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ process start-up

    def _preexec(self, nproc: int) -> Callable[[], None]:
        lim = self.limits
        user = self.user

        def setup() -> None:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
            resource.setrlimit(resource.RLIMIT_AS, (lim.memory_mb << 20, lim.memory_mb << 20))
            resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb << 20, lim.file_mb << 20))
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if user is not None:
                os.setgroups([])
                os.setgid(user[1])
                os.setuid(user[0])

        return setup

    def _nproc(self) -> int:
        uid = self.user[0] if self.user else os.getuid()
        return self.limits.processes + (0 if self.user else _user_process_count(uid))

    def _pick_python(self) -> str:
        candidates = [os.path.realpath(sys.executable), "/usr/bin/python3"]
        for exe in candidates:
            try:
                r = subprocess.run(
                    [exe, "-I", "-S", "-c", "pass"],
                    preexec_fn=self._preexec(64 + self._nproc_base()),
                    capture_output=True,
                    timeout=10,
                )
                if r.returncode == 0:
                    return exe
            except (OSError, subprocess.SubprocessError):
                continue
        return candidates[0]

    def _nproc_base(self) -> int:
        return 0 if self.user else _user_process_count(os.getuid())

    def _probe(self, force_rlimits: bool) -> Isolation:
        if force_rlimits:
            return Isolation("rlimits", "bubblewrap disabled by request: resource limits only, network NOT isolated")
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return Isolation(
                "rlimits",
                "bubblewrap not installed: resource limits only, network NOT isolated (apt-get install bubblewrap)",
            )
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if self.user:
                os.chown(work, *self.user)
            try:
                r = subprocess.run(
                    self._command(work, [self.python, "-I", "-S", "-c", "pass"], use_bwrap=True),
                    preexec_fn=self._preexec(self._nproc()),
                    capture_output=True,
                    timeout=10,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return Isolation("rlimits", f"bubblewrap failed ({exc}): resource limits only, network NOT isolated")
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown"]
            return Isolation("rlimits", f"bubblewrap refused ({why[0]}): resource limits only, network NOT isolated")
        return Isolation("bwrap", "bubblewrap: no network, own PID space, read-only filesystem, private /tmp")

    def _command(self, work: Path, argv: list[str], use_bwrap: bool | None = None) -> list[str]:
        env = [
            "PATH=/usr/bin:/bin",
            "HOME=/tmp/w",
            "LANG=C.UTF-8",
            "PYTHONHASHSEED=0",
            "PYTHONDONTWRITEBYTECODE=1",
            f"MENDLAB_SANDBOX={self.token}",  # lets us find every process this sandbox started, forks included
        ]
        if use_bwrap if use_bwrap is not None else self.isolation.level == "bwrap":
            cmd = [
                "bwrap",
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--ro-bind",
                "/",
                "/",
                "--tmpfs",
                "/tmp",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--bind",
                str(work),
                "/tmp/w",
                "--chdir",
                "/tmp/w",
                "--clearenv",
            ]
            for kv in env:
                k, v = kv.split("=", 1)
                cmd += ["--setenv", k, v]
            return [*cmd, "--", *argv]
        return ["env", "-i", *[kv.replace("/tmp/w", str(work)) for kv in env], *argv]

    def _spawn(self, argv: list[str], stdin: int | None = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], Path]:
        work = Path(tempfile.mkdtemp(prefix="mendlab-sbx-"))
        if self.user:
            os.chown(work, *self.user)
        with self._reap_lock:  # a reaper must never take a child that Popen has not registered yet
            proc = subprocess.Popen(
                self._command(work, argv),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(work),
                preexec_fn=self._preexec(self._nproc()),
                close_fds=True,
                env={"PATH": "/usr/bin:/bin"},  # even the launcher never holds our environment (API keys)
            )
            self._tracked.add(proc.pid)
        return proc, work

    def _harness(self) -> tuple[subprocess.Popen[bytes], Path]:
        with self._lock:
            try:
                got = self._pool.get_nowait()
            except queue.Empty:
                got = self._spawn([self.python, "-I", "-S", "-B", "-c", HARNESS])
            while self._pool.qsize() < self._warm and not self._closed:
                self._pool.put(self._spawn([self.python, "-I", "-S", "-B", "-c", HARNESS]))
        return got

    def _kill(self, proc: subprocess.Popen[bytes], work: Path) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)
        with self._reap_lock:
            self._tracked.discard(proc.pid)
            _reap_orphans(self._tracked)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                proc, work = self._pool.get_nowait()
            except queue.Empty:
                break
            self._kill(proc, work)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running

    def run(self, task: Task, completion: str) -> Verdict:
        start = time.perf_counter()
        program = task.program(completion)
        if task.entry_point is None:
            verdict = self._run_io(task, program)
        else:
            verdict = self._run_calls(task, program)
        return Verdict(verdict.status, verdict.message, verdict.tests_run, time.perf_counter() - start)

    def _run_io(self, task: Task, program: str) -> Verdict:
        try:
            ast.parse(program)
        except SyntaxError as exc:
            return Verdict("compile_error", _cut(f"SyntaxError: {exc.msg} (line {exc.lineno})"))
        deadline = time.monotonic() + self.limits.task_s
        for i, (stdin, expected) in enumerate(task.io):
            proc, work = self._spawn([self.python, "-I", "-S", "-B", "prog.py"])
            try:
                (work / "prog.py").write_text(program, encoding="utf-8")
                os.chmod(work / "prog.py", 0o644)
                timeout = max(0.1, min(self.limits.test_s, deadline - time.monotonic()))
                out, err, timed_out = self._communicate(proc, stdin.encode(), timeout)
            finally:
                self._kill(proc, work)
            if timed_out:
                return Verdict("timeout", _cut(f"Timed out after {timeout:.1f}s on input {_cut(stdin)}"), i)
            if proc.returncode != 0:
                tail = err.decode(errors="replace").strip().splitlines()
                last = tail[-1] if tail else f"exit code {proc.returncode}"
                line = next(
                    (t.strip() for t in reversed(tail) if t.strip().startswith('File "') and "prog.py" in t), ""
                )
                status: Status = "memory_limit" if "MemoryError" in last else "runtime_error"
                where = f" ({line.split(',')[1].strip()})" if line.count(",") >= 1 else ""
                return Verdict(status, _cut(f"Given input {stdin!r}, the program failed: {last}{where}"), i)
            got = out.decode(errors="replace")
            if _norm(got) != _norm(expected):
                return _wrong_answer(stdin, got.strip(), expected.strip(), i + 1)
        return Verdict("pass", "", len(task.io))

    def _communicate(self, proc: subprocess.Popen[bytes], data: bytes, timeout: float) -> tuple[bytes, bytes, bool]:
        cap = self.limits.output_kb << 10
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        open_fds = set(bufs)
        end = time.monotonic() + timeout
        while open_fds:
            left = end - time.monotonic()
            if left <= 0:
                return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), True
            ready, _, _ = select.select(list(open_fds), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                elif len(bufs[fd]) < cap:
                    bufs[fd] += chunk[: cap - len(bufs[fd])]
        try:
            proc.wait(timeout=max(0.05, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), True
        return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), False

    def _run_calls(self, task: Task, program: str) -> Verdict:
        assert task.entry_point is not None
        proc, work = self._harness()
        channel = _Channel(proc, self.limits.output_kb << 10)
        deadline = time.monotonic() + self.limits.task_s
        try:
            channel.send({"source": program, "entry": task.entry_point})
            hello = channel.receive(min(self.limits.test_s * 2, deadline - time.monotonic()))
            if hello is None:
                return Verdict("timeout", "Timed out while loading the program.")
            if hello.get("status") != "ready":
                status = hello.get("status", "runtime_error")
                msg = hello.get("error", "the program did not start")
                line = f" (line {hello['line']})" if hello.get("line") else ""
                return Verdict(status if status in _STATUSES else "runtime_error", _cut(f"{msg}{line}"))
            if task.check is not None:
                return self._check(task, channel, deadline)
            for i, (args, expected) in enumerate(task.calls):
                got = channel.call(args, min(self.limits.test_s, deadline - time.monotonic()))
                if got != expected or (type(got) is not type(expected) and not _num(got, expected)):
                    return _wrong_answer(_args(args), got, expected, i + 1)
            return Verdict("pass", "", len(task.calls))
        except SandboxFailure as failure:
            return failure.verdict
        finally:
            self._kill(proc, work)

    def _check(self, task: Task, channel: _Channel, deadline: float) -> Verdict:
        """Run HumanEval's check() here, with a candidate that forwards each call to the sandbox."""
        calls: list[tuple[tuple[Any, ...], Any]] = []

        def candidate(*args: Any) -> Any:
            result = channel.call(args, min(self.limits.test_s, deadline - time.monotonic()))
            calls.append((args, result))
            return result

        namespace: dict[str, Any] = {"__name__": "mendlab_check"}
        assert task.check is not None
        source = task.helpers + "\n\n" + task.check
        exec(compile(source, f"<tests of {task.id}>", "exec"), namespace)  # the dataset's code, not the model's
        assert task.entry_point is not None
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


_STATUSES = {"pass", "wrong_answer", "runtime_error", "compile_error", "timeout", "memory_limit"}


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
    """Line-delimited JSON to and from the harness, with deadlines and a size cap."""

    def __init__(self, proc: subprocess.Popen[bytes], cap: int) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.cap = cap
        self.buf = bytearray()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the program is gone; receive() reports what happened

    def receive(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + max(0.0, timeout)
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return {"status": "runtime_error", "error": self._death()}
            self.buf += chunk
            if len(self.buf) > self.cap:
                return {"status": "runtime_error", "error": "output limit exceeded"}
        line, _, rest = self.buf.partition(b"\n")
        self.buf = bytearray(rest)
        try:
            data = json.loads(line)
        except ValueError:
            return {"status": "runtime_error", "error": "the program broke the answer channel"}
        return data if isinstance(data, dict) else {"status": "runtime_error", "error": "bad answer"}

    def _death(self) -> str:
        try:
            code = self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "the program closed its output"
        if code < 0:
            sig = signal.Signals(-code).name
            if sig in ("SIGXCPU", "SIGKILL"):
                return f"killed by {sig} (CPU or memory limit)"
            return f"killed by {sig}"
        return f"the program exited (code {code}) before answering"

    def call(self, args: tuple[Any, ...], timeout: float) -> Any:
        if timeout <= 0:
            raise SandboxFailure(Verdict("timeout", "Timed out: the task's time limit is spent."))
        try:
            self.send({"args": encode(list(args))})
        except (TypeError, ValueError) as exc:
            raise SandboxFailure(Verdict("runtime_error", _cut(f"cannot send the test's arguments: {exc}"))) from None
        reply = self.receive(timeout)
        if reply is None:
            raise SandboxFailure(
                Verdict("timeout", _cut(f"Given input {_args(args)}, the program timed out after {timeout:.1f}s."))
            )
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except (ValueError, TypeError, KeyError, AttributeError):
                raise SandboxFailure(Verdict("runtime_error", "the program returned something unreadable")) from None
        status = reply.get("status")
        msg = str(reply.get("error", "unknown error"))
        line = f" (line {reply['line']})" if reply.get("line") else ""
        kind: Status = "memory_limit" if status == "memory_limit" or "MemoryError" in msg else "runtime_error"
        if "SIGXCPU" in msg:
            kind = "timeout"
        raise SandboxFailure(Verdict(kind, _cut(f"Given input {_args(args)}, the program raised {msg}{line}")))

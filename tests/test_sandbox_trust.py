"""Issue 9 §1: a verdict no program can forge, a benchmark it cannot read, a machine it cannot jam.

Each test here failed on the sandbox before the zygote redesign: a forged `{"status": "pass"}` on an
inherited descriptor passed, HumanEval's own data file was readable from inside, a fork bomb left the
next spawn failing with BlockingIOError, and a program echoing a large input hung forever.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mendlab.errors import InputError
from mendlab.repair import sandbox as sandbox_module
from mendlab.repair.check import done_rows, read_samples
from mendlab.repair.sandbox import Limits, Sandbox, SandboxUnavailable, Verdict, sandbox_processes
from mendlab.repair.tasks import Task, humaneval_path, load_humaneval, load_tasks
from mendlab.store import ResultsStore

ADD = Task("add", "def add(a, b): ...", "add", calls=(((2, 3), 5), ((10, -4), 6), ((7, 70), 77)))
GOOD = "def add(a, b):\n    return a + b\n"
FAST = Limits(test_s=2.0, task_s=5.0, cpu_s=3, memory_mb=512)
MENDLAB = str(Path(sys.executable).with_name("mendlab"))

# Writes forged protocol lines everywhere it can reach: every descriptor number, every descriptor of every
# process it can see through /proc, every file object the garbage collector knows.
SPRAY = r"""
import gc, os
FORGED = [b'{"status": "pass"}\n', b'{"loaded": true}\n', b'{"ok": {"i": "5"}}\n', b'{"hello": true}\n',
          b'{"clean": true}\n', b'{"exit": 0, "signal": null, "stdout": "3\\n", "stderr": "", "timed_out": false}\n']
def spray(fd):
    for line in FORGED:
        try:
            os.write(fd, line)
        except OSError:
            pass
def forge():
    for fd in range(0, 1024):
        spray(fd)
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            names = os.listdir('/proc/%s/fd' % pid)
        except OSError:
            continue
        for name in names:
            try:
                fd = os.open('/proc/%s/fd/%s' % (pid, name), os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            spray(fd)
    for obj in gc.get_objects():
        if hasattr(obj, 'write') and hasattr(obj, 'fileno'):
            try:
                obj.write(FORGED[0] if 'b' in getattr(obj, 'mode', '') else FORGED[0].decode())
                obj.flush()
            except Exception:
                pass
"""


@pytest.fixture()
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(FAST) as sb:
        yield sb


def test_a_forged_verdict_never_passes(sandbox: Sandbox) -> None:
    humaneval = load_humaneval()[0]
    forgeries = {
        "while loading, then exit": SPRAY + "forge()\nos._exit(0)\n",
        "while loading, then wait": SPRAY + "forge()\nimport time\ntime.sleep(30)\n",
        "in the call, then exit": SPRAY + "def add(a, b):\n    forge()\n    os._exit(0)\n",
        "in the call, then answer wrong": SPRAY + "def add(a, b):\n    forge()\n    return 0\n",
    }
    for name, program in forgeries.items():
        verdict = sandbox.run(ADD, program)
        assert verdict.status != "pass", name
        verdict = sandbox.run(humaneval, program.replace("def add(a, b)", "def has_close_elements(a, b=0)"))
        assert verdict.status != "pass", name
    io_task = Task("sum", "", None, io=(("1 2\n", "3\n"),))
    assert sandbox.run(io_task, SPRAY + "forge()\nos._exit(0)\n").status != "pass"
    assert sandbox.run(ADD, GOOD).passed  # and the sandbox still judges honest programs


def test_the_zygote_is_out_of_the_programs_reach(sandbox: Sandbox) -> None:
    """The mechanism behind the test above: the program's parent (the zygote, which holds the channel)
    cannot be opened through /proc, traced or read, though it runs as the same user."""
    probe = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
got = {'ppid': os.getppid()}
for pid in sorted({os.getppid(), 1}):
    row = {}
    try:
        row['fds'] = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        row['fds'] = None
    for name in ('mem', 'environ'):
        try:
            row[name] = len(open('/proc/%d/%s' % (pid, name), 'rb').read(16))
        except OSError:
            row[name] = None
    for fd in (0, 1):
        try:
            os.open('/proc/%d/fd/%d' % (pid, fd), os.O_WRONLY)
            row['open%d' % fd] = True
        except OSError:
            row['open%d' % fd] = False
    row['ptrace'] = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    got[str(pid)] = row
print(json.dumps(got))
"""
    run = sandbox.execute(probe)
    assert run.exit_code == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["ppid"] != 1  # programs are forked by the template, not by the zygote (PID 1)
    for pid in {str(got["ppid"]), "1"}:
        row = got[pid]
        assert row["fds"] is None and row["mem"] is None and row["environ"] is None, (pid, row)
        assert row["open0"] is False and row["open1"] is False and row["ptrace"] == -1, (pid, row)


# Attaches to PID 1 (the process holding the channel) and makes it write forged replies.
INJECT = r"""
import ctypes, os
def _inject(data, pid=1, fd=1):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, pid, None, None) != 0:
        raise OSError(ctypes.get_errno(), 'attach')
    os.waitpid(pid, 0x40000000)
    regs = (ctypes.c_ulong * 27)()
    libc.ptrace(12, pid, None, ctypes.addressof(regs))
    saved = (ctypes.c_ulong * 27)(*regs)
    RAX, RDX, RSI, RDI, ORIG, RIP, RSP = 10, 12, 13, 14, 15, 16, 19
    mem = os.open('/proc/%d/mem' % pid, os.O_RDWR)
    sc = regs[RIP] - 2
    addr = regs[RSP] - 2048 - len(data)
    os.pwrite(mem, data, addr)
    regs[RAX], regs[RDI], regs[RSI], regs[RDX], regs[RIP], regs[ORIG] = 1, fd, addr, len(data), sc, 2**64 - 1
    libc.ptrace(13, pid, None, ctypes.addressof(regs))
    libc.ptrace(9, pid, None, None)
    os.waitpid(pid, 0x40000000)
    libc.ptrace(13, pid, None, ctypes.addressof(saved))
    libc.ptrace(17, pid, None, None)
    os.close(mem)
"""
PLANT = (
    INJECT
    + r"""
import json
lines = [{"ok": {"i": "5"}}, {"clean": True}, {"loaded": True}, {"ok": {"i": "5"}}, {"ok": {"i": "6"}},
         {"ok": {"i": "77"}}, {"clean": True}]
try:
    _inject("".join(json.dumps(x) + "\n" for x in lines).encode())
except OSError:
    pass
def add(a, b):
    return a + b
"""
)
WRONG = "def add(a, b):\n    return 0\n"

# Finds an earlier program's source in the memory it inherited, and runs that.
COPIER = r"""
import ctypes, re
def _steal():
    found = None
    with open('/proc/self/maps') as f:
        maps = [line.split() for line in f]
    for m in maps:
        lo, hi = (int(x, 16) for x in m[0].split('-'))
        if 'rw' not in m[1] or hi - lo > 256 << 20 or (len(m) > 5 and m[5].startswith('[v')):
            continue
        for hit in re.finditer(rb'def add\(a, b\):\\n    return ([^"\\]{1,80})\\n', ctypes.string_at(lo, hi - lo)):
            if b'_stolen' not in hit.group(0):
                found = hit.group(1).decode()
    return found
_stolen = _steal()
def add(a, b):
    return 0 if _stolen is None else eval(_stolen, {'a': a, 'b': b})
"""


def test_a_program_cannot_plant_replies_for_the_next_one() -> None:
    with Sandbox(FAST, workers=1) as sb:  # one worker: the next program runs where the planter ran
        sb.run(ADD, PLANT)
        assert sb.run(ADD, WRONG).status == "wrong_answer"
        assert sb.run(ADD, GOOD).passed


def test_a_program_cannot_copy_an_earlier_programs_answer_from_memory() -> None:
    honest = "# an honest sample, padded to stay out of small-object pools" + " " * 2000 + "\n" + GOOD
    with Sandbox(FAST, workers=1) as sb:
        assert sb.run(ADD, honest).passed
        for _ in range(2):
            assert sb.run(ADD, COPIER).status == "wrong_answer"


FIND = r"""
import json, os, sys, time
targets = json.loads(sys.stdin.read())
found = [p for p in targets if os.path.exists(p)]
print(json.dumps(found), flush=True)  # the first line: the paths it was told of
def listable(path):
    try:
        return bool(os.listdir(path))
    except OSError:
        return False
deadline = time.monotonic() + 1.5  # a big host tree must not run into the 3 s CPU limit
for root, dirs, files in os.walk('/'):
    if root in ('/proc', '/sys', '/dev') or time.monotonic() > deadline:
        dirs[:] = []
        continue
    for name in files + dirs:
        low = name.lower()
        if ('humaneval' in low or 'human_eval' in low or low.endswith(('.db', '.jsonl', '.jsonl.gz', '.toml'))
                or 'mendlab' in low or name in ('site-packages', 'dist-packages') and listable(os.path.join(root, name))):
            found.append(os.path.join(root, name))
print(json.dumps(sorted(found)))
"""


def test_the_program_cannot_read_the_benchmark_the_store_or_our_files(sandbox: Sandbox, tmp_path: Path) -> None:
    db = tmp_path / "mendlab.db"
    ResultsStore(db).close()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "t", "prompt": "", "entry_point": "f", "tests": []}\n')
    os.chmod(tmp_path, 0o755)
    targets = [str(humaneval_path()), str(db), str(tasks), os.getcwd(), str(Path(__file__).parent), sys.prefix]
    run = sandbox.execute(FIND, json.dumps(targets), timeout=30)
    assert run.exit_code == 0, run.stderr
    told, searched = (json.loads(line) for line in run.stdout.splitlines())
    assert told == [] and searched == []
    assert sandbox.run(ADD, GOOD).passed  # and the standard library it needs is all there


def test_without_a_sandbox_the_same_search_finds_the_data(tmp_path: Path) -> None:
    """The control: the search above does find the data when nothing hides it."""
    with Sandbox(FAST, isolation="unsafe") as unsafe:
        assert unsafe.isolation.level == "unsafe" and unsafe.isolation.detail.startswith("UNSAFE")
        run = unsafe.execute(FIND, json.dumps([str(humaneval_path())]), timeout=30)
    if not _readable_by_anyone(humaneval_path()):
        pytest.skip(f"{humaneval_path()} is not readable by other users here (the unsafe worker's own uid)")
    lines = run.stdout.splitlines()
    assert lines, run.stderr
    assert json.loads(lines[0]) == [str(humaneval_path())]  # the path the sandboxed program could not see
    if run.exit_code == 0:  # a huge host tree may stop the walk at the CPU limit: the first line is the proof
        assert json.loads(lines[1])  # and the walk finds files of ours unaided


def _readable_by_anyone(path: Path) -> bool:
    """Whether a process of another uid can read ``path`` (root's own access check always says yes)."""
    if os.geteuid() != 0:
        return os.access(path, os.R_OK)
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents)


BOMB = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n"
LINGER = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"


def test_a_fork_bomb_does_not_jam_the_next_programs() -> None:
    with Sandbox(FAST, workers=2) as sb:
        programs = [BOMB if i % 3 == 0 else GOOD for i in range(9)]
        with ThreadPoolExecutor(2) as pool:
            verdicts = list(pool.map(lambda p: sb.run(ADD, p), programs))
        for program, verdict in zip(programs, verdicts, strict=True):
            if program is BOMB:
                assert verdict.status in ("timeout", "runtime_error", "memory_limit"), verdict
            else:
                assert verdict.passed, verdict
        assert sb.run(ADD, LINGER + GOOD).passed
        time.sleep(0.2)
        assert len(sandbox_processes(sb.token)) == 2 * len(
            sb._live
        )  # a zygote and its template per worker: every program is gone


def test_a_spawn_that_fails_is_retried_then_that_samples_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(FAST, workers=1) as sb:
        killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + GOOD
        sb.run(ADD, killer)  # it killed the process that forks programs: this worker is done, a new one is needed
        calls = []

        def refuse(self: object) -> None:
            calls.append(1)
            raise sandbox_module._SpawnFailed("could not start the sandbox: Resource temporarily unavailable")

        with monkeypatch.context() as m:
            m.setattr(sandbox_module._Worker, "start", refuse)
            verdict = sb.run(ADD, GOOD)
        assert verdict.status == "sandbox_error" and "Resource temporarily unavailable" in verdict.message
        assert len(calls) == sandbox_module.SPAWN_ATTEMPTS
        assert sb.run(ADD, GOOD).passed  # and it heals once spawning works again


def test_a_large_input_is_fed_while_the_output_is_drained(sandbox: Sandbox) -> None:
    big = "".join(f"{i} {i * i}\n" for i in range(60_000))  # ~800 KB, far past a pipe's 64 KB
    task = Task("echo", "", None, io=((big, big), ("x\n", "x\n")))
    got: list[Verdict] = []
    worker = threading.Thread(
        target=lambda: got.append(sandbox.run(task, "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n"))
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "deadlocked on a large input"
    assert got[0].passed, got[0]


def test_no_bubblewrap_means_no_model_code_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None if name == "bwrap" else real(name))
    with pytest.raises(SandboxUnavailable) as refused:
        Sandbox(FAST)
    message = str(refused.value)
    assert "apt-get install bubblewrap" in message and "--unsafe-no-sandbox" in message and "\n" not in message
    with Sandbox(FAST, allow_unsafe=True) as unsafe:
        assert unsafe.isolation.level == "unsafe"
        assert "bubblewrap is not installed" in unsafe.isolation.detail
        assert unsafe.run(ADD, GOOD).passed


def _samples(path: Path, completions: list[tuple[str, str]]) -> None:
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in completions))


def test_check_refuses_without_bubblewrap_and_says_which_isolation(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    task = load_humaneval()[0]
    _samples(samples, [(task.id, task.meta["canonical_solution"])])
    no_bwrap = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # nothing on PATH, bubblewrap included
    r = subprocess.run([MENDLAB, "check", str(samples)], capture_output=True, text=True, env=no_bwrap, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert "apt-get install bubblewrap" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [MENDLAB, "check", str(samples), "--unsafe-no-sandbox"],
        capture_output=True,
        text=True,
        env=no_bwrap,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "UNSAFE" in r.stderr
    row = json.loads(r.stdout)
    assert row["passed"] is True and row["isolation"] == "unsafe"
    r = subprocess.run([MENDLAB, "check", str(samples)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["isolation"] == "bwrap"


def test_check_streams_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    tasks = load_humaneval()[:6]
    slow = "    import time\n    time.sleep(30)\n"
    completions = [(t.id, t.meta["canonical_solution"]) for t in tasks[:3]]
    completions += [(tasks[3].id, slow), (tasks[4].id, "    return None\n"), (tasks[5].id, BOMB)]
    samples, out = tmp_path / "samples.jsonl", tmp_path / "out.jsonl"
    _samples(samples, completions)
    cmd = [MENDLAB, "check", str(samples), "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # while the slow sample runs
    proc.wait()
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sample"] for r in first] == [1, 2, 3] and all(r["passed"] for r in first)  # streamed, kept
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 of 6 samples already checked" in r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["sample"] for row in rows] == [1, 2, 3, 4, 5, 6]  # each once, in order
    assert [row["passed"] for row in rows] == [True, True, True, False, False, False]
    assert rows[3]["result"]["status"] == "timeout"
    _samples(samples, [(t.id, "    return 1\n") for t in tasks])  # other samples, same output file
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "made from other samples" in r.stderr and "Traceback" not in r.stderr


def test_nothing_a_program_writes_survives_it() -> None:
    with Sandbox(FAST, workers=1) as sb:  # one worker: the second program runs where the first ran
        first = sb.execute("import os\nfor p in ('/tmp/left', '/dev/shm/left', 'left'):\n    open(p, 'w').write('x')\n")
        assert first.exit_code == 0, first.stderr
        second = sb.execute("import os\nprint((sorted(os.listdir('/tmp')), os.listdir('/dev/shm'), os.listdir('.')))")
    tmp, shm, cwd = ast.literal_eval(second.stdout)
    assert shm == [] and cwd == [] and "left" not in tmp and len(tmp) == 1  # only the new program's own folder


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups of our own need root")
def test_cgroups_left_by_a_killed_run_are_swept() -> None:
    from mendlab.repair.cgroup import Cgroup, sweep

    stale = Cgroup.create("test-stale", 8, 64 << 20)
    young = Cgroup.create("test-young", 8, 64 << 20)
    assert isinstance(stale, Cgroup) and isinstance(young, Cgroup)
    hour_ago = time.time() - 3600
    for d in stale.dirs:
        os.utime(d, (hour_ago, hour_ago))
    sweep()
    assert not any(d.exists() for d in stale.dirs)  # empty and old: a killed run's
    assert all(d.exists() for d in young.dirs)  # a sandbox may be moving into it right now
    young.remove()
    assert not any(d.exists() for d in young.dirs)


LOCK_OUT = "import os\nopen('/dev/shm/left', 'w').write('x')\nos.chmod('/dev/shm', 0)\nos.chmod('/tmp', 0)\n"
HIDE = "import os\nos.makedirs('/tmp/d', exist_ok=True)\nopen('/tmp/d/left', 'w').write('x')\nos.chmod('/tmp', 0o300)\n"


def test_a_program_that_locks_tmp_jams_nothing_and_hides_nothing() -> None:
    """chmod 0 on /tmp used to make every later program of the worker fail to start (stored as its
    runtime error); mode 0o300 let files survive the wipe for the next program to find."""
    look = "import os\nos.chmod('/tmp', 0o777)\nos.chmod('/dev/shm', 0o777)\nprint(os.listdir('/tmp'), os.listdir('/dev/shm'))\n"
    with Sandbox(FAST, workers=1) as sb:
        for bad in (LOCK_OUT, HIDE):
            assert sb.run(ADD, bad + GOOD).passed
            assert sb.run(ADD, GOOD).passed
            run = sb.execute(look)
            assert run.exit_code == 0, run.stderr
            tmp, shm = run.stdout.strip().split("] [")
            assert "left" not in shm and "'d'" not in tmp, run.stdout
        assert sb.execute("print(6 * 7)").stdout == "42\n"


KEEP = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
print(libc.syscall(248, b"user", b"left-by-a", b"secret", 6, -4), libc.mq_open(b"/left", os.O_CREAT | os.O_RDWR, 0o600, None))
"""


def test_no_keyring_or_message_queue_to_leave_anything_in() -> None:
    """Kernel keyrings and POSIX message queues are not files: no wipe would empty them. add_key and
    mq_open used to succeed, and the next program (or another sandbox of the same user) read them."""
    with Sandbox(FAST, workers=1) as sb:
        run = sb.execute(KEEP)
        assert run.exit_code == 0, run.stderr
        assert run.stdout.split() == ["-1", "-1"]
        assert "seccomp" in sb.isolation.detail


def test_leftover_processes_and_signals_to_pid_1_cost_no_worker() -> None:
    """A program that leaves a grandchild behind, or sends SIGINT to PID 1, used to cost its worker
    (a 2 s wait for a zombie, or a dead zygote): the same worker goes on judging."""
    sigint = "import os, signal\nos.kill(1, signal.SIGINT)\n"
    with Sandbox(FAST, workers=1) as sb:
        assert sb.run(ADD, GOOD).passed
        (worker,) = sb._live
        for program in (LINGER + GOOD, sigint + GOOD, LINGER + GOOD):
            assert sb.run(ADD, program).passed
            assert sb._live == {worker} and not worker.broken


def test_check_output_made_against_other_tests_is_refused(tmp_path: Path) -> None:
    """Same task ids, same completions, other tests: the verdicts in the output file are not these."""

    def tasks(expected: int) -> str:
        row = {"task_id": "t1", "prompt": "def f(x): ...", "entry_point": "f",
               "tests": [{"args": [1], "expected": expected}]}  # fmt: skip
        return json.dumps(row) + "\n"

    (tmp_path / "a.jsonl").write_text(tasks(2))
    (tmp_path / "b.jsonl").write_text(tasks(3))
    samples, out = tmp_path / "samples.jsonl", tmp_path / "out.jsonl"
    _samples(samples, [("t1", "def f(x):\n    return x + 1\n")])
    cmd = [MENDLAB, "check", str(samples), "-o", str(out), "--tasks"]
    r = subprocess.run([*cmd, str(tmp_path / "a.jsonl")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(out.read_text())["passed"] is True, r.stderr
    r = subprocess.run([*cmd, str(tmp_path / "b.jsonl")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "made from other samples" in r.stderr and "Traceback" not in r.stderr
    # The same samples and tests, resumed without a sandbox: the bwrap verdicts are not mixed in.
    todo = read_samples(load_tasks(str(tmp_path / "a.jsonl")), samples)
    assert len(done_rows(out, todo, "bwrap")) == 1
    with pytest.raises(InputError, match="judged with isolation 'bwrap', this run has 'unsafe'"):
        done_rows(out, todo, "unsafe")


def test_a_replaced_worker_takes_a_free_index_so_no_two_live_workers_share_a_user() -> None:
    """Worker users were index % 64: after 64 replacements a new worker shared the user of a live one
    (and, unsandboxed as root, a kill-by-user sweep reached the other's programs)."""
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + GOOD
    with Sandbox(FAST, workers=2) as sb:
        for _ in range(3):
            sb.run(ADD, killer)  # retires its worker
            assert sb.run(ADD, GOOD).passed  # on a new one
            assert {w.index for w in sb._live} <= {0, 1}
        uids = [w.uid for w in sb._live]
        assert len(uids) == len(set(uids))


def test_a_script_that_kills_the_process_that_forked_it_costs_the_next_script_nothing() -> None:
    killer = ("import os, signal, time, sys\nprint(3)\nsys.stdout.flush()\nos.close(1); os.close(2)\n"
              "time.sleep(0.2)\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(1)\n")  # fmt: skip
    task = Task("sum", "", None, io=(("1 2\n", "3\n"),))
    honest = "a, b = map(int, input().split())\nprint(a + b)\n"
    with Sandbox(FAST, workers=1) as sb:
        for _ in range(3):
            sb.run(task, killer)  # it answered before it killed the template: its own verdict may be a pass
            verdict = sb.run(task, honest)
            assert verdict.passed, verdict


SLOW_DOUBLE = "import time\ntime.sleep(0.25)\nprint(int(input()) * 2)\n"


def test_waiting_for_a_worker_is_not_the_programs_time() -> None:
    """Six trees judging at once on two workers: a correct stdin/stdout program passes as it does alone
    (each input used to queue for a worker on the task's clock, and the program was judged `timeout`)."""
    task = Task("io", "double", None, io=tuple((str(i), str(2 * i)) for i in range(4)))
    with Sandbox(Limits(test_s=1.0, task_s=2.0, cpu_s=3, memory_mb=512), workers=2) as sb:
        assert sb.run(task, SLOW_DOUBLE).passed
        with ThreadPoolExecutor(6) as pool:
            verdicts = list(pool.map(lambda _: sb.run(task, SLOW_DOUBLE), range(6)))
    assert [v.status for v in verdicts] == ["pass"] * 6, [v.message for v in verdicts]

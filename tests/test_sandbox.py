"""The sandbox against hostile programs: every one contained, none counted as a pass, the machine unharmed."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mendlab.repair.sandbox import Limits, Sandbox, sandbox_processes
from mendlab.repair.tasks import Task, load_humaneval

ADD = Task("add", "def add(a, b): ...", "add", calls=(((2, 3), 5), ((10, -4), 6), ((7, 70), 77)))
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture()
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(test_s=2.0, task_s=6.0, cpu_s=4, memory_mb=512)) as sb:
        yield sb


def test_isolation_is_reported(sandbox: Sandbox) -> None:
    assert sandbox.isolation.level == "bwrap", sandbox.isolation.detail  # make test installs bubblewrap
    assert "bubblewrap" in sandbox.isolation.detail


def test_statuses_and_feedback(sandbox: Sandbox) -> None:
    assert sandbox.run(ADD, GOOD).status == "pass"
    wrong = sandbox.run(ADD, "def add(a, b):\n    return a * b\n")
    assert wrong.status == "wrong_answer"
    assert wrong.message == "Given input 2, 3 the output was 6 but the expected output is 5."
    crash = sandbox.run(ADD, "def add(a, b):\n    return [][a]\n")
    assert crash.status == "runtime_error" and "IndexError" in crash.message and "line 2" in crash.message
    assert sandbox.run(ADD, "def add(a, b)\n    return a\n").status == "compile_error"
    assert sandbox.run(ADD, "def add(a, b):\n    while True: pass\n").status == "timeout"
    mem = sandbox.run(ADD, "def add(a, b):\n    return len(bytearray(10**10))\n")
    assert mem.status == "memory_limit"
    long = sandbox.run(ADD, "def add(a, b):\n    return 'x' * 5000\n")
    assert long.status == "wrong_answer" and len(long.message) < 400  # strings cut to 300 characters


def test_stdio_programs(sandbox: Sandbox) -> None:
    task = Task("sum", "", None, io=(("1 2\n", "3\n"), ("5 7\n", "12\n")))
    assert sandbox.run(task, "a, b = map(int, input().split())\nprint(a + b)\n").status == "pass"
    v = sandbox.run(task, "a, b = map(int, input().split())\nprint(a - b)\n")
    assert v.status == "wrong_answer" and v.message.startswith("Given input 1 2")
    assert sandbox.run(task, "print(1/0)\n").status == "runtime_error"
    assert sandbox.run(task, "while True: pass\n").status == "timeout"


def test_humaneval_canonical_solutions_pass(sandbox: Sandbox) -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164
    for task in tasks[:25]:  # all 164: bench/bench_sandbox.py
        v = sandbox.run(task, task.meta["canonical_solution"])
        assert v.passed, (task.id, v)
    v = sandbox.run(tasks[0], "    return True\n")
    assert v.status == "wrong_answer" and "expected output is False" in v.message


def test_hostile_programs_are_contained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = Sandbox(Limits(test_s=2.0, task_s=6.0, cpu_s=4, memory_mb=512))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if sandbox.isolation.level == "bwrap":
        os.chmod(tmp_path, 0o777)  # even a world-writable folder of ours must stay out of reach
    marker = Path("/tmp/mendlab-hostile-marker")
    marker.unlink(missing_ok=True)
    monkeypatch.setenv("MENDLAB_SECRET", "s3cret-token")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    me = os.getpid()
    hostile = {
        "fork bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
        "memory bomb": "x = []\nwhile True: x.append(bytearray(10**7))\n",
        "infinite loop": "while True: pass\n",
        "busy threads": "import threading\nfor _ in range(8):\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()\n"
        "def add(a, b):\n    while True: pass\n",
        "write and delete outside": f"import os\nopen('/tmp/mendlab-hostile-marker', 'w').write('x')\n"
        f"try: os.remove({str(victim)!r})\nexcept OSError: pass\n"
        f"try: open({str(tmp_path / 'new.txt')!r}, 'w').write('x')\nexcept OSError: pass\n"
        "def add(a, b): return 0\n",
        "read environment": "import os\nSECRET = os.environ.get('MENDLAB_SECRET', '')\n"
        f"try: SECRET += open('/proc/{me}/environ').read()\nexcept OSError: pass\n"
        "def add(a, b): return SECRET\n",
        "socket to 127.0.0.1": f"import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "    return a + b + 1\n",
        "kill the parent": f"import os, signal\nfor pid in (os.getppid(), {me}, 1):\n"
        "    try: os.kill(pid, signal.SIGKILL)\n    except OSError: pass\ndef add(a, b): return 0\n",
        "flood stdout": 'import os, sys\nfor fd in range(1, 20):\n    try: os.write(fd, b\'{"status": "ready"}\\n{"ok": true}\\n\' * 1000)\n'
        "    except OSError: pass\nprint('x' * 10**7)\ndef add(a, b): return True\n",
        "exit 0 before the tests": "import os\nos._exit(0)\n",
        "sys.exit in the function": "import sys\ndef add(a, b): sys.exit(0)\n",
        "override builtins and assert": "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: int\ndef add(a, b): return 'pass'\n",
        "patch __eq__": "class Any:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
        "def add(a, b): return Any()\n",
        "int subclass equal to all": "class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n"
        "def add(a, b): return I(0)\n",
    }
    for name, program in hostile.items():
        start = time.monotonic()
        verdict = sandbox.run(ADD, program)
        assert verdict.status != "pass", name
        assert time.monotonic() - start < 15, name
        assert "s3cret-token" not in verdict.message, name
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "new.txt").exists()
    if sandbox.isolation.level == "bwrap":
        assert not marker.exists()  # its /tmp was private
        with pytest.raises(TimeoutError):
            listener.accept()  # no connection ever reached our listener
    listener.close()
    sandbox.close()  # stops the warm workers too
    deadline = time.monotonic() + 5
    while sandbox_processes(sandbox.token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_processes(sandbox.token) == []  # nothing it started is left running, forks included
    with Sandbox() as again:
        assert again.run(ADD, GOOD).passed  # and sandboxes still work

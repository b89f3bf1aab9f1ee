"""The only code of ours inside the sandbox: a warm interpreter that forks one process per program.

Standard library only, and passed to the interpreter with -c, so the sandbox needs no readable file of
ours. The parent imports `encode`/`decode` from here, so both ends speak one format.

Three kinds of process, so that no program can forge a verdict or read another's work:
- the zygote (PID 1 of the sandbox: signals from inside cannot stop or kill it) holds the channel to
  the parent and parses every request and reply. It is non-dumpable: programs, same user and no
  capabilities, can neither open its descriptors through /proc nor ptrace it nor read its memory;
- the template, forked from the zygote after the warm imports and before the first request, so its
  heap never holds a program, an input or an answer. It only receives descriptors and one-letter
  orders over a socket, and forks each program from that clean heap (a program forked from the
  zygote could find earlier programs' sources and results in the memory it inherits, and copy them);
- the program, with only its own pipes: it gets its source and arguments through them and writes
  values back. What it writes is read by the zygote as untrusted data; values are passed on to the
  parent wrapped in a message the zygote builds, and nothing from here is ever a verdict: the parent
  runs the tests and decides.

Protocol with the parent, one JSON object per line each way:
  {"op": "load", "source": S, "entry": NAME, "timeout": T}   -> {"loaded": true} | {"failed": KIND, ...}
  {"op": "call", "args": ENCODED, "timeout": T}              -> {"ok": ENCODED} | {"raised": MSG, "line": N}
                                                                | {"failed": KIND, "error": MSG}
  {"op": "stdio", "source": S, "stdin": TEXT, "timeout": T}  -> {"exit": CODE, "signal": NAME|null,
                                                                 "stdout": TEXT, "stderr": TEXT, "timed_out": B}
  {"op": "end"}                                              -> {"clean": B}
"""

import base64
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

_dumps, _loads, _type, _repr = json.dumps, json.loads, type, repr
MAX_DEPTH = 64
FAIL_KINDS = ("compile_error", "runtime_error", "memory_limit", "timeout", "spawn")


def encode(x: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError("result nested too deeply")
    t = _type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return {"i": str(x)}
    if t is float:
        return {"f": _repr(x)}
    if t is bytes:
        return {"b": base64.b64encode(x).decode()}
    if t is list:
        return {"l": [encode(v, depth + 1) for v in x]}
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in x]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    raise TypeError("the result is a " + t.__name__ + ", which cannot leave the sandbox")


def decode(x: Any) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    ((tag, v),) = x.items()
    if tag == "i":
        return int(v)
    if tag == "f":
        return float(v)
    if tag == "b":
        return base64.b64decode(v)
    if tag == "l":
        return [decode(e) for e in v]
    if tag == "t":
        return tuple(decode(e) for e in v)
    if tag == "s":
        return {decode(e) for e in v}
    if tag == "fs":
        return frozenset(decode(e) for e in v)
    if tag == "d":
        return {decode(k): decode(val) for k, val in v}
    raise ValueError("bad tag")


# ---------------------------------------------------------------------------------------- the child


def _describe(exc: BaseException, filename: str) -> dict[str, Any]:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return {"error": _type(exc).__name__ + ": " + str(exc)[:300], "line": line}


def _become_child(fds: dict[int, int], cfg: dict[str, Any]) -> None:
    """In the forked child: keep only `fds` (target -> source), drop everything else, apply limits."""
    import fcntl
    import resource

    os.setsid()
    high = {target: fcntl.fcntl(source, fcntl.F_DUPFD, 256) for target, source in fds.items()}
    for target, source in high.items():  # via high numbers, so that no source is overwritten before use
        os.dup2(source, target)
    os.closerange(max(fds) + 1, 1 << 16)  # the channel to the parent and every pipe of the zygote
    limits = cfg["limits"]
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] << 20, limits["memory_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] << 20, limits["file_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    work = cfg["work"] + "/" + str(os.getpid())
    os.mkdir(work, 0o700)
    os.chdir(work)
    os.environ["HOME"] = work
    sys.argv = ["prog.py"]


def _reap() -> None:
    """Collect every child that has exited (orphans come to PID 1 too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_line(fd: int, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def _function_child() -> None:
    """fd 3: the program, then requests, from the zygote; fd 4: replies to it; 0, 1, 2: /dev/null."""
    out = os.fdopen(4, "wb", buffering=0)
    buf = bytearray()
    first = _read_line(3, buf)
    if first is None:
        return
    header = _loads(first)
    source, entry = str(header["source"]), str(header["entry"])

    def send(obj: dict[str, Any]) -> None:
        out.write((_dumps(obj) + "\n").encode())

    try:
        code = compile(source, "solution.py", "exec")
    except (SyntaxError, ValueError) as exc:
        send(
            {
                "failed": "compile_error",
                "error": _type(exc).__name__ + ": " + str(exc)[:300],
                "line": getattr(exc, "lineno", None),
            }
        )
        return
    namespace: dict[str, Any] = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except MemoryError as exc:
        send({"failed": "memory_limit", **_describe(exc, "solution.py")})
        return
    except BaseException as exc:
        send({"failed": "runtime_error", **_describe(exc, "solution.py")})
        return
    fn = namespace.get(entry)
    if not callable(fn):
        send({"failed": "runtime_error", "error": "NameError: " + entry + " is not defined", "line": None})
        return
    send({"loaded": True})
    while True:
        line = _read_line(3, buf)
        if line is None:
            return
        args = decode(_loads(line))
        try:
            payload = encode(fn(*args))
        except MemoryError as exc:
            send({"failed": "memory_limit", **_describe(exc, "solution.py")})
            return
        except BaseException as exc:
            send({"raised": True, **_describe(exc, "solution.py")})
            continue
        send({"ok": payload})


def _stdio_child() -> None:
    """fd 0, 1, 2: the program's own stdin, stdout and stderr, as if it were run as a script; fd 3
    brings its source."""
    chunks = []
    while True:
        chunk = os.read(3, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(3)
    source = b"".join(chunks).decode("utf-8", "replace")
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
    code = 0
    try:
        exec(compile(source, "prog.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 1
    os._exit(code)


# ---------------------------------------------------------------------------------------- the zygote


class Template:
    """Forks programs from a heap that never held one. Orders, one datagram each:
    F + descriptors (request, reply): a function program;  S + descriptors (stdin, stdout, stderr,
    source): a script;  W pid timeout: its exit status;  K: kill every program process."""

    def __init__(self, sock: socket.socket, cfg: dict[str, Any]) -> None:
        self.sock = sock
        self.cfg = cfg

    def serve(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 256, 8)
            except OSError:
                return
            if not msg:
                return
            kind = msg[:1]
            if kind in (b"F", b"S"):
                self.sock.send(str(self.spawn(kind, fds)).encode())
            elif kind == b"W":
                pid, timeout = msg[1:].split()
                self.sock.send(_dumps(self.wait(int(pid), float(timeout))).encode())
            elif kind == b"K":
                self.sock.send(b"clean" if self.kill_all() else b"dirty")

    def spawn(self, kind: bytes, fds: list[int]) -> int:
        """The program's pid; -1 when it could not be forked, -2 when its process could not be set up
        (say a program before it made /tmp unusable): the sandbox's failure, never the program's."""
        if kind == b"F":
            null = os.open(os.devnull, os.O_RDWR)
            mapping = {0: null, 1: null, 2: null, 3: fds[0], 4: fds[1]}
        else:
            null = -1
            mapping = {0: fds[0], 1: fds[1], 2: fds[2], 3: fds[3]}
        ready_r, ready_w = os.pipe()
        ready = max(mapping) + 1
        mapping[ready] = ready_w  # written once set up, closed before the program's first line runs
        pid = -1
        for attempt in range(5):
            try:
                pid = os.fork()
            except OSError:
                time.sleep(0.02 * (attempt + 1))
                self.kill_all()
                continue
            if pid == 0:
                try:
                    self.sock.close()
                    os.close(ready_r)
                    _become_child(mapping, self.cfg)
                    os.write(ready, b"1")
                    os.close(ready)
                except BaseException:
                    os._exit(70)
                try:
                    if kind == b"F":
                        _function_child()
                    else:
                        _stdio_child()
                finally:
                    os._exit(70)
            break
        for fd in [*fds, null, ready_w]:
            if fd >= 0:
                os.close(fd)
        set_up = pid > 0 and os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        if pid > 0 and not set_up:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return -2
        return pid

    @staticmethod
    def wait(pid: int, timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return {"gone": True}
            if got:
                if os.WIFSIGNALED(status):
                    return {"signal": signal.Signals(os.WTERMSIG(status)).name}
                return {"exit": os.WEXITSTATUS(status)}
            if time.monotonic() >= end:
                return {"running": True}
            time.sleep(0.0005)

    def kill_all(self) -> bool:
        """Every process of the sandbox but the zygote and us. In a PID namespace where the zygote is
        PID 1, kill(-1) spares exactly those two; with a user of our own, every process of that user."""
        end = time.monotonic() + 2.0
        me, zygote = os.getpid(), os.getppid()
        while time.monotonic() < end:
            self.reap()
            if self.cfg.get("pid1"):
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    return True
                except OSError:
                    return False
                if not self.live_others(me, zygote):  # orphans left as zombies are PID 1's to reap
                    return True
            elif self.cfg.get("kill_all"):
                uid, left = os.getuid(), 0
                for entry in os.listdir("/proc"):
                    if not entry.isdigit() or int(entry) in (me, zygote):
                        continue
                    try:
                        if os.stat("/proc/" + entry).st_uid != uid:
                            continue
                        with open("/proc/" + entry + "/stat") as fh:
                            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                                continue
                        os.kill(int(entry), signal.SIGKILL)
                        left += 1
                    except (OSError, IndexError):
                        continue
                if not left:
                    return True
            else:
                return True  # our own user, shared with the rest of the machine: the process group only
            time.sleep(0.001)
        return False

    @staticmethod
    def reap() -> None:
        _reap()

    @staticmethod
    def live_others(*spare: int) -> bool:
        """Is a process other than `spare` alive (not a zombie) in this PID namespace?"""
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in spare:
                continue
            try:
                with open("/proc/" + entry + "/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except (OSError, IndexError):
                continue
        return False


class Zygote:
    def __init__(self, cfg: dict[str, Any], chan_in: int, chan_out: int, template: socket.socket) -> None:
        self.cfg = cfg
        self.chan_in = chan_in
        self.chan_out = chan_out
        self.template = template
        self.inbuf = bytearray()
        self.child: int | None = None
        self.req_w: int | None = None
        self.rep_r: int | None = None
        self.rep_buf = bytearray()
        # The scratch folders' modes, put back before each wipe: a program may chmod /tmp to 0.
        self.modes: dict[str, int] = {}
        for folder in (cfg["work"], *cfg.get("scratch", ())):
            try:
                self.modes[folder] = os.stat(folder).st_mode & 0o7777
            except OSError:
                pass

    def send(self, obj: dict[str, Any]) -> None:
        data = (_dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(self.chan_out, data) :]

    # -- processes, through the template

    def order(self, msg: bytes, fds: list[int] = ()) -> bytes:  # type: ignore[assignment]
        try:
            socket.send_fds(self.template, [msg], list(fds))
            reply = self.template.recv(4096)
        except OSError:
            reply = b""
        finally:
            for fd in fds:
                os.close(fd)
        if not reply:  # the template is gone (a program killed it): this worker is done
            self.send({"failed": "runtime_error", "error": "the sandbox's template process died"})
            os._exit(3)
        return reply

    def spawn(self, kind: bytes, fds: list[int]) -> int | None:
        pid = int(self.order(kind, fds))
        return pid if pid > 0 else None

    def clean(self) -> bool:
        """Kill the program and everything it started; True when nothing of it is left."""
        if self.child is not None:
            try:
                os.killpg(self.child, signal.SIGKILL)
            except OSError:
                pass
        for fd in (self.req_w, self.rep_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.child = self.req_w = self.rep_r = None
        self.rep_buf = bytearray()
        clean = self.order(b"K") == b"clean"
        self.reap()  # orphans come to PID 1
        self.ipc_clean()
        return clean and self.wipe()

    @staticmethod
    def reap() -> None:
        _reap()

    def ipc_clean(self) -> None:
        """System V shared memory, queues and semaphores outlive their process: remove them."""
        if not self.cfg.get("pid1"):
            return
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
        except (OSError, ImportError):
            return
        for name, rm in (("shm", libc.shmctl), ("msg", libc.msgctl)):
            for ident in self._ipc_ids(name, 1):
                rm(ident, 0, None)  # IPC_RMID
        for ident in self._ipc_ids("sem", 1):
            libc.semctl(ident, 0, 0)

    @staticmethod
    def _ipc_ids(name: str, column: int) -> list[int]:
        try:
            with open("/proc/sysvipc/" + name) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            return []
        return [int(r.split()[column]) for r in rows if len(r.split()) > column]

    def wipe(self) -> bool:
        """Nothing a program wrote survives it: the next program starts from an empty /tmp."""
        import shutil
        import stat

        def writable(func: Any, path: str, _: Any) -> None:
            try:
                os.chmod(os.path.dirname(path), stat.S_IRWXU)
                os.chmod(path, stat.S_IRWXU)
                func(path)
            except OSError:
                pass

        empty = True
        for folder in (self.cfg["work"], *self.cfg.get("scratch", ())):
            try:
                if folder in self.modes:
                    os.chmod(folder, self.modes[folder])
                names = os.listdir(folder)
            except OSError:
                empty = False  # a folder we cannot empty: this worker is done
                continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.chmod(path, stat.S_IRWXU)
                        shutil.rmtree(path, onerror=writable)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
            try:
                empty = empty and not os.listdir(folder)
            except OSError:
                empty = False
        return empty

    def child_status(self, pid: int, wait_s: float = 1.0) -> str:
        got = _loads(self.order(b"W%d %f" % (pid, wait_s)))
        if got.get("running"):  # alive, but it closed its answer channel
            return "the program closed its answer channel"
        if got.get("gone"):
            return "the program's process is gone"
        if "signal" in got:
            sig = str(got["signal"])
            if sig in ("SIGXCPU", "SIGKILL"):
                return "killed by " + sig + " (CPU or memory limit)"
            return "killed by " + sig
        return "the program exited (code " + str(got.get("exit")) + ") before answering"

    def write_all(self, fd: int, data: bytes, end: float) -> bool:
        """Write to a program's pipe without ever blocking on a program that does not read."""
        os.set_blocking(fd, False)
        while data:
            left = end - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return False
            try:
                data = data[os.write(fd, data[: 1 << 16]) :]
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    # -- function programs

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        self.clean()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        pid = self.spawn(b"F", [req_r, rep_w])
        if pid is None:
            os.close(req_w)
            os.close(rep_r)
            return {"failed": "spawn", "error": "could not fork the program"}
        self.child, self.req_w, self.rep_r = pid, req_w, rep_r
        timeout = float(req["timeout"])
        header = (_dumps({"source": req["source"], "entry": req["entry"]}) + "\n").encode()
        if not self.write_all(req_w, header, time.monotonic() + timeout):
            self.clean()
            return {"failed": "timeout", "error": "timed out while loading"}
        return self.answer(timeout, loading=True)

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.child is None or self.req_w is None:
            return {"failed": "runtime_error", "error": "no program is loaded"}
        timeout = float(req["timeout"])
        if not self.write_all(self.req_w, (_dumps(req["args"]) + "\n").encode(), time.monotonic() + timeout):
            why = self.child_status(self.child, 0.2)
            self.clean()
            return {"failed": "runtime_error", "error": why}
        return self.answer(timeout, loading=False)

    def answer(self, timeout: float, loading: bool) -> dict[str, Any]:
        """One line from the child, read as untrusted data; the reply to the parent is built here."""
        assert self.rep_r is not None and self.child is not None
        end = time.monotonic() + timeout
        cap = self.cfg["limits"]["output_kb"] << 10
        while b"\n" not in self.rep_buf:
            left = end - time.monotonic()
            ready = select.select([self.rep_r], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self.clean()
                return {"failed": "timeout", "error": "timed out after " + format(timeout, ".1f") + "s"}
            chunk = os.read(self.rep_r, 1 << 16)
            if not chunk:
                why = self.child_status(self.child)
                self.child = None
                self.clean()
                kind = "timeout" if "SIGXCPU" in why else "runtime_error"
                return {"failed": kind, "error": why}
            self.rep_buf += chunk
            if len(self.rep_buf) > cap:
                self.clean()
                return {"failed": "runtime_error", "error": "output limit exceeded"}
        line, _, rest = bytes(self.rep_buf).partition(b"\n")
        self.rep_buf = bytearray(rest)
        try:
            msg = _loads(line)
        except (ValueError, RecursionError):
            msg = None
        if not isinstance(msg, dict):
            self.clean()
            return {"failed": "runtime_error", "error": "the program broke its answer channel"}
        line_no = msg.get("line")
        line_no = line_no if _type(line_no) is int else None
        error = str(msg.get("error", ""))[:400]
        if loading and msg.get("loaded") is True and len(msg) == 1:
            return {"loaded": True}
        if not loading and "ok" in msg and len(msg) == 1:
            return {"ok": msg["ok"]}
        if not loading and msg.get("raised") is True:
            return {"raised": error, "line": line_no}
        failed = msg.get("failed")
        if failed in ("compile_error", "runtime_error", "memory_limit"):
            self.clean()
            return {"failed": failed, "error": error, "line": line_no}
        self.clean()
        return {"failed": "runtime_error", "error": "the program broke its answer channel"}

    # -- stdin/stdout programs

    def stdio(self, req: dict[str, Any]) -> dict[str, Any]:
        """Feed stdin and drain stdout/stderr together: a program that echoes a large input must
        never deadlock on a full pipe."""
        self.clean()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        src_r, src_w = os.pipe()
        pid = self.spawn(b"S", [in_r, out_w, err_w, src_r])
        if pid is None:
            for fd in (in_w, out_r, err_r, src_w):
                os.close(fd)
            return {"failed": "spawn", "error": "could not fork the program"}
        self.child = pid
        timeout = float(req["timeout"])
        end = time.monotonic() + timeout
        loaded = self.write_all(src_w, str(req["source"]).encode(), end)
        os.close(src_w)
        cap = self.cfg["limits"]["output_kb"] << 10
        pending = str(req["stdin"]).encode()
        outs = {out_r: bytearray(), err_r: bytearray()}
        readers = [out_r, err_r]
        writer: int | None = in_w
        os.set_blocking(in_w, False)
        if not pending:
            os.close(in_w)
            writer = None
        timed_out = not loaded
        while readers and not timed_out:
            left = end - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            r, w, _ = select.select(readers, [writer] if writer is not None else [], [], left)
            if writer is not None and w:
                try:
                    n = os.write(writer, pending[: 1 << 16])
                    pending = pending[n:]
                except BlockingIOError:
                    pass
                except OSError:  # the program closed its stdin
                    pending = b""
                if not pending:
                    os.close(writer)
                    writer = None
            for fd in r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    readers.remove(fd)
                elif len(outs[fd]) < cap:
                    outs[fd] += chunk[: cap - len(outs[fd])]
        code, sig = None, None
        if not timed_out:
            got = _loads(self.order(b"W%d %f" % (pid, max(0.0, end - time.monotonic()))))
            if got.get("running"):
                timed_out = True
            elif "signal" in got:
                sig = str(got["signal"])
            elif "exit" in got:
                code = int(got["exit"])
            self.child = None if not timed_out else self.child
        if writer is not None:
            os.close(writer)
        for fd in (out_r, err_r):
            os.close(fd)
        clean = self.clean()
        return {
            "exit": code,
            "signal": sig,
            "stdout": outs[out_r].decode("utf-8", "replace"),
            "stderr": outs[err_r][-4000:].decode("utf-8", "replace"),
            "timed_out": timed_out,
            "clean": clean,
        }

    # -- the loop

    def serve(self) -> None:
        while True:
            line = _read_line(self.chan_in, self.inbuf)
            if line is None:  # the parent is gone
                self.clean()
                return
            req = _loads(line)
            op = req.get("op")
            if op == "load":
                reply = self.load(req)
            elif op == "call":
                reply = self.call(req)
            elif op == "stdio":
                reply = self.stdio(req)
            elif op == "end":
                reply = {"clean": self.clean()}
            else:
                reply = {"failed": "runtime_error", "error": "unknown op"}
            self.send(reply)


def _undumpable() -> bool:
    """PR_SET_DUMPABLE 0: our /proc/PID/fd, mem and environ become unreachable to the programs we
    fork (same user, no capabilities), and so does ptrace."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            return False
        return bool(libc.prctl(3, 0, 0, 0, 0) == 0)  # PR_GET_DUMPABLE
    except (OSError, AttributeError, ImportError):
        return False


def main() -> None:
    # As PID 1 we receive only the signals we handle: Python's SIGINT handler would let a program kill us.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    chan_in, chan_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    buf = bytearray()
    line = _read_line(chan_in, buf)
    if line is None:
        return
    cfg = _loads(line)
    for name in cfg.get("preload", ()):  # warm imports, shared with every fork
        try:
            __import__(name)
        except ImportError:
            pass
    undumpable = _undumpable()  # before the template is forked: it inherits the protection
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:  # the template: its heap holds nothing but the warm imports
        ours.close()
        os.close(chan_in)
        os.close(chan_out)
        Template(theirs, cfg).serve()
        os._exit(0)
    theirs.close()
    zygote = Zygote(cfg, chan_in, chan_out, ours)
    zygote.inbuf = buf
    zygote.send({"hello": True, "undumpable": undumpable, "pid": os.getpid(), "python": sys.version.split()[0]})
    zygote.serve()


if __name__ == "__main__":  # in the sandbox (python -c); the parent imports encode/decode only
    main()
    sys.exit(0)

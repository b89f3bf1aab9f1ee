"""Runs inside the sandbox, before and around the untrusted program. Standard library only; it is
passed to the interpreter with -c, so it needs no readable file. The parent imports the same
`encode`/`decode`, so both ends speak one format.

It loads the program, then answers calls: a line of tagged JSON arguments in, a line with the
tagged JSON result (or the exception) out. It never sees a test or an expected value, so nothing the
program does here can make a wrong answer pass: the comparison happens in the parent.
"""

import base64
import json
import os
import sys
import traceback
from typing import Any

_dumps, _loads, _type, _repr, _len = json.dumps, json.loads, type, repr, len
MAX_DEPTH = 64


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


def describe(exc: BaseException) -> dict[str, Any]:
    """Exception type, message and the line in the program where it happened."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "solution.py":
            line = frame.lineno
    msg = _type(exc).__name__ + ": " + str(exc)[:300]
    return {"error": msg, "type": _type(exc).__name__, "line": line}


def main() -> None:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.fdopen(os.dup(0), "r")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the program cannot read requests or write into the answer channel by accident
        os.dup2(null, fd)

    def send(obj: dict[str, Any]) -> None:
        out.write(_dumps(obj) + "\n")
        out.flush()

    header = _loads(requests.readline())
    try:
        code = compile(header["source"], "solution.py", "exec")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        send({"status": "compile_error", "error": _type(exc).__name__ + ": " + str(exc)[:300], "line": line})
        return
    namespace: dict[str, Any] = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except MemoryError as exc:
        send({"status": "memory_limit", **describe(exc)})
        return
    except BaseException as exc:
        send({"status": "runtime_error", **describe(exc)})
        return
    fn = namespace.get(header["entry"])
    if not callable(fn):
        send({"status": "runtime_error", "error": "NameError: " + header["entry"] + " is not defined", "line": None})
        return
    send({"status": "ready"})
    for line in requests:
        args = decode(_loads(line)["args"])
        try:
            result = fn(*args)
            payload = encode(result)
        except MemoryError as exc:
            send({"status": "memory_limit", **describe(exc)})
            return
        except BaseException as exc:
            send(describe(exc))
            continue
        send({"ok": payload})


if __name__ == "__main__":  # in the sandbox (python -c); the parent imports encode/decode only
    main()
    sys.exit(0)

"""A seccomp filter for the sandbox: the few system calls through which one program could leave
something for the next (or reach another process) fail with EPERM.

Namespaces give each sandbox its own view, but the programs of one worker share it: POSIX message
queues and kernel keyrings live beside the files we wipe and are not wiped with them, and a keyring
belongs to a user, whom two sandboxes may share. Tracing and reading other processes' memory are
refused too (the zygote is non-dumpable already: this is a second lock), and io_uring, which runs
system calls that the filter never sees. Classic BPF, built here, handed to bubblewrap's `--seccomp`.
"""

from __future__ import annotations

import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_EPERM = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM

# x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl)
DENIED = {
    "ptrace": 101,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "perf_event_open": 298,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "pidfd_getfd": 438,
}

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def seccomp_filter() -> bytes | None:
    """The filter as bubblewrap reads it (an array of `struct sock_filter`); None off x86-64, where
    these numbers do not hold. Calls of another ABI (32-bit, x32) are refused outright."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    numbers = sorted(DENIED.values())
    n = 4 + len(numbers) + 2  # loads and checks, one test per call, allow, deny
    deny = n - 1
    prog = [
        _insn(_LD_W_ABS, 0, 0, 4),  # arch
        _insn(_JEQ_K, 0, deny - 1 - 1, AUDIT_ARCH_X86_64),
        _insn(_LD_W_ABS, 0, 0, 0),  # nr
        _insn(_JGE_K, deny - 3 - 1, 0, X32_BIT),
    ]
    for i, nr in enumerate(numbers):
        at = 4 + i
        prog.append(_insn(_JEQ_K, deny - at - 1, 0, nr))
    prog += [_insn(_RET_K, 0, 0, RET_ALLOW), _insn(_RET_K, 0, 0, RET_EPERM)]
    assert len(prog) == n
    return b"".join(prog)

"""Run untrusted Python (code a model wrote) in a contained child process (PRIME_SPEC §3).

Two layers, so that one failing does not let the program out:

1. The operating system. The child is a new session (its own process group, killed as a
   whole when the run ends, on time or not), with resource limits: CPU seconds, address
   space, file size (which also caps its output files), open files, no core dumps and no new
   processes (bounded when we run as root). Its environment is empty but for PATH/HOME/LANG, its working directory a fresh
   temporary one. When we run as root (CI does) the child also gets a network namespace of
   its own (no interfaces, so no network) and then drops to the `nobody` user, so it cannot
   read root's files, signal our processes or raise its limits back.
2. The interpreter. Before the program runs, an audit hook (PEP 578, which Python code cannot
   remove) refuses sockets, process creation, signals, limit changes, ctypes, and any file
   access outside the temporary directory and Python's own library.

What is not contained: a program may forge its own test results from inside the interpreter
(it shares it with the test runner); the reward is only as honest as the tests. Programs
that do so still cannot affect anything outside their directory.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NOBODY = 65534
CLONE_NEWNET = 0x40000000

# The child's test runner. It reads {program, tests} from stdin, installs the audit hook,
# runs the program, then each test, writing one JSON line per test to an inherited file descriptor.
_RUNNER = r'''
import json, os, sys
payload = json.loads(sys.stdin.read())
results = os.fdopen(payload["fd"], "w")
tmp = os.path.realpath(os.getcwd())
readable = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                os.path.dirname(os.__file__)}) + (tmp,)
BLOCKED = frozenset({"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
    "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "sys.remote_exec",
    "os.chroot", "os.setuid", "os.setgid", "os.setreuid", "os.setregid", "os.setgroups"})
FILE_EVENTS = frozenset({"os.remove", "os.unlink", "os.rmdir", "os.rename", "os.replace", "os.mkdir",
    "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile",
    "shutil.move", "os.listdir", "os.scandir", "os.chdir"})
def inside(path, roots):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "/")
    except Exception:
        return False
    return any(p == r or p.startswith(r + os.sep) for r in roots)
def hook(event, args, BLOCKED=BLOCKED, FILE_EVENTS=FILE_EVENTS, inside=inside, tmp=tmp, readable=readable):
    if event in BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and args[0] in ("ctypes", "_ctypes", "_posixsubprocess", "socket", "_socket", "pty", "mmap"):
        raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
    if event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or bool(
            flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
        if not inside(path, (tmp,) if writing else readable):
            raise PermissionError(f"sandbox: {'writing' if writing else 'reading'} {path!r} is not allowed")
    elif event in FILE_EVENTS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)) and not inside(a, (tmp,)):
                raise PermissionError(f"sandbox: {event} on {a!r} is not allowed")
import traceback
program, tests = payload["program"], payload["tests"]
sys.setrecursionlimit(payload["recursion_limit"])
del payload
sys.addaudithook(hook)
namespace = {"__name__": "__main__"}
def report(i, ok, detail):
    results.write(json.dumps({"test": i, "ok": ok, "detail": detail[:300]}) + "\n")
    results.flush()
def why(e):
    return traceback.format_exception_only(type(e), e)[-1].strip()
try:
    exec(compile(program, "<solution>", "exec"), namespace)
except BaseException as e:
    report(-1, False, "program: " + why(e))
    raise SystemExit(0)
for i, test in enumerate(tests):
    try:
        exec(compile(test, f"<test {i}>", "exec"), namespace)
        report(i, True, "ok")
    except BaseException as e:
        report(i, False, why(e))
'''


@dataclass
class SandboxResult:
    """What happened to one sandboxed run.

    results: one dict per test that reported ({test, ok, detail}); test -1 is the program itself.
    reason: "ok", "timeout", "cpu limit", "memory limit", "output limit", "crashed (SIGSEGV)", "exit N".
    """

    reason: str
    results: list[dict] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    seconds: float = 0.0


def _limits(timeout_s: float, memory_mb: int, output_bytes: int, as_root: bool):
    """The child's preexec: new session, network namespace (root), rlimits, then drop to nobody."""

    def apply():
        os.setsid()
        if as_root:
            import ctypes

            # Best effort: a container without CAP_SYS_ADMIN refuses; the audit hook still
            # blocks sockets (layer 2).
            ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET)
        cpu = max(1, int(timeout_s + 1))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (output_bytes, output_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if as_root:
            os.setgroups([])
            os.setgid(NOBODY)
            # Counts every process of `nobody`: concurrent sandboxes must fit (exec fails above
            # it); forking is refused by layer 2, this bounds what a bypass could start.
            resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
            os.setuid(NOBODY)
        else:
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # counts the user's processes: no forks

    return apply


def run_python(program: str, tests: list[str], timeout_s: float = 5.0, memory_mb: int = 512,
               output_bytes: int = 64 * 1024, recursion_limit: int = 2000) -> SandboxResult:
    """Run `program` then each test snippet in one contained child; see the module docstring.

    The wall-clock `timeout_s` covers the whole run; the CPU limit is one second more.
    """
    as_root = os.geteuid() == 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="prime-sandbox-") as outer:
        work = Path(outer) / "work"  # the child's directory; `outer` holds our files, out of its reach
        work.mkdir()
        if as_root:
            os.chown(work, NOBODY, NOBODY)
            os.chmod(outer, 0o711)
        out_path, err_path, res_path = (Path(outer) / n for n in ("stdout", "stderr", "results"))
        with open(out_path, "wb") as out, open(err_path, "wb") as err, open(res_path, "wb") as res:
            payload = json.dumps({"program": program, "tests": tests, "recursion_limit": recursion_limit,
                                  "fd": res.fileno()})
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
            try:
                proc = subprocess.Popen(
                    [interpreter(as_root), "-I", "-S", "-B", "-c", _RUNNER], stdin=subprocess.PIPE, stdout=out, stderr=err,
                    pass_fds=(res.fileno(),), cwd=work, env=env, close_fds=True,
                    preexec_fn=_limits(timeout_s, memory_mb, output_bytes, as_root))
            except OSError as e:
                return SandboxResult(f"could not start: {e}")
            timed_out = False
            try:
                proc.communicate(payload.encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            except (BrokenPipeError, OSError):
                pass
            finally:
                _kill_group(proc.pid)
                proc.wait()
        results = _read_results(res_path)
        capped = any(p.stat().st_size >= output_bytes for p in (out_path, err_path))
        stdout, stderr = (p.read_bytes()[:output_bytes].decode("utf-8", "replace") for p in (out_path, err_path))
    reason = _reason(proc.returncode, timed_out, capped, " ".join(r["detail"] for r in results) + stderr)
    return SandboxResult(reason, results, stdout, stderr, proc.returncode, time.monotonic() - start)


def interpreter(as_root: bool) -> str:
    """The Python the child runs: ours, or, when the child drops to `nobody`, the first one that
    `nobody` can execute (ours often lives under /root, which it cannot enter)."""
    if not as_root:
        return sys.executable
    for candidate in (os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"):
        if candidate and _world_executable(Path(os.path.realpath(candidate))):
            return candidate
    raise RuntimeError("no Python interpreter that the sandbox user `nobody` may execute; install python3 "
                       "system-wide (apt-get install python3) or run as a non-root user")


def _world_executable(path: Path) -> bool:
    try:
        if not path.is_file() or not path.stat().st_mode & 0o001:
            return False
        return all(p.stat().st_mode & 0o001 for p in path.parents)
    except OSError:
        return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_results(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes()[: 1 << 20].decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("test"), int) and isinstance(row.get("ok"), bool):
            out.append(row)
    return out


def _reason(returncode: int | None, timed_out: bool, capped: bool, errors: str) -> str:
    """Why the run ended, most specific first: a limit that was hit beats a clean exit."""
    if timed_out:
        return "timeout"
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode)
        return {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "output limit",
                signal.SIGKILL: "killed"}.get(sig, f"crashed ({sig.name})")
    if "MemoryError" in errors:
        return "memory limit"
    if capped:
        return "output limit"
    if "RecursionError" in errors:
        return "recursion limit"
    if "sandbox:" in errors:
        return "blocked: " + errors.split("sandbox:", 1)[1].split(" is not allowed")[0].strip() + " is not allowed"
    return "ok" if returncode == 0 else f"exit {returncode}"

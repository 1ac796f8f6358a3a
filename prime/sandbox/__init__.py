"""Untrusted code (programs a model wrote) runs here, isolated by the kernel (PRIME_SPEC §3).

Every run is a fresh bubblewrap (`bwrap`) container:

- new user, pid, network, ipc, uts and cgroup namespaces; inside, the program is uid 65534
  with no capabilities and cannot create further user namespaces;
- the file system is read-only `/usr` and the Python installation, a fresh `/proc` and a
  minimal `/dev`; the only writable place is a size-capped tmpfs (`/tmp`); nothing of the
  host's home, /tmp, the project or its data is visible;
- the network namespace has only its own loopback; abstract unix sockets are per namespace;
- rlimits on CPU seconds, address space, file size, open files and processes, and a wall-clock
  deadline; `--die-with-parent` and the pid namespace mean that when we kill `bwrap` at the end
  of a run, every process the program started is gone with it (setsid or not).

The tests never enter the container: prime.sandbox.harness runs them in this (trusted) process and
talks to the program over a pipe in plain data only (prime.sandbox.plaindata). What runs next to the
program is prime/sandbox/child.py. Without `bwrap`, or where it cannot create namespaces, a
SandboxUnavailable error says what to install or enable; there is no weaker fallback.

A container's start takes ~50 ms, mostly waiting (bwrap, joining the run's cgroups, the
interpreter) rather than computing, so call-mode containers are started ahead of need (_Pool):
each waits, with the same namespaces, mounts, limits and cgroups as any run, for the one program
it will ever receive over its pipe, and is destroyed after that program's tests like any run.
"""

from __future__ import annotations

import atexit
import collections
import functools
import importlib.util
import itertools
import marshal
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prime.errors import UserError
from prime.sandbox import plaindata

HERE = Path(__file__).resolve().parent
INSIDE = "/sandbox"  # where the program and the child script appear (read-only)
_run_ids = itertools.count()


class SandboxUnavailable(UserError):
    """bubblewrap is missing or cannot create namespaces here."""


class SandboxEnded(Exception):
    """The sandboxed program's run is over (timeout, a limit, exit); `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """What one run may use. The wall-clock deadline covers the whole run (load and every call)."""

    timeout_s: float = 5.0
    memory_mb: int = 512
    disk_mb: int = 16
    """size of the writable tmpfs (/tmp), the only place it can write"""
    processes: int = 16
    """at most this many processes (threads count) at once, inside the sandbox's user namespace"""
    output_bytes: int = 1 << 20
    """stdout (io tests) and each protocol reply; more ends the run ("output limit")"""
    open_files: int = 64


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------- bubblewrap

@functools.lru_cache(maxsize=1)
def bwrap_path() -> str:
    """The bwrap binary, checked once to be able to create the namespaces we need."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable("the code sandbox needs bubblewrap: `apt-get install bubblewrap` (make setup installs it "
                                 "when run as root), or `--task` other than code")
    probe = subprocess.run([path, *_namespace_flags(), "--ro-bind", "/usr", "/usr", *_system_links(), "/usr/bin/true"],
                           check=False, capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot create its namespaces here ({probe.stderr.strip()[:200]}); enable "
                                 "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                                 "user.max_user_namespaces > 0) or run as root")
    return path


def _namespace_flags() -> list[str]:
    return ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534"]


def _system_links() -> list[str]:
    """/bin, /lib, /lib64, /sbin as on the host: symlinks into /usr (merged /usr) or read-only binds."""
    out = []
    for d in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(d):
            out += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            out += ["--ro-bind", d, d]
    return out


def python_install() -> tuple[str, str]:
    """(interpreter, installation prefix) of the Python we run, resolved past any venv."""
    exe = os.path.realpath(sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _data_fd(text: str | bytes) -> int:
    """An in-memory file holding `text`, for bwrap's --ro-bind-data (never on the host's disk)."""
    fd = os.memfd_create("prime-sandbox")
    os.write(fd, text.encode() if isinstance(text, str) else text)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _command(files: dict[str, int], argv: list[str], limits: Limits, run_id: str) -> list[str]:
    exe, prefix = python_install()
    cmd = [bwrap_path(), *_namespace_flags(), "--hostname", "sandbox", "--clearenv",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
           "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PRIME_SANDBOX", run_id,
           "--ro-bind", "/usr", "/usr", *_system_links()]
    if not prefix.startswith("/usr/"):
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp",
            "--dir", INSIDE]
    for name, fd in files.items():
        cmd += ["--ro-bind-data", str(fd), f"{INSIDE}/{name}"]
    return cmd + ["--chdir", "/tmp", "--", exe, "-I", "-S", "-B", *argv]


CGROUP_ROOTS = {"pids": ("/sys/fs/cgroup/pids", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"),
                "memory": ("/sys/fs/cgroup/memory", "/sys/fs/cgroup", "/sys/fs/cgroup/unified")}


@functools.lru_cache(maxsize=1)
def _cgroups() -> dict[str, Path]:
    """As root: controller -> a directory under which each run gets its own cgroup (v1 or v2).

    pids (required as root): RLIMIT_NPROC does not bound processes in a user namespace that
    root created, so pids.max is the only bound on a fork bomb. memory (when available): caps
    everything the run makes the kernel hold, its tmpfs pages and inodes included, which no
    rlimit does. Not root: {} (rlimits only; RLIMIT_NPROC is enforced for other users).
    """
    if os.geteuid() != 0:
        return {}
    found = {}
    for controller, roots in CGROUP_ROOTS.items():
        for root in map(Path, roots):
            try:
                v2 = (root / "cgroup.controllers").exists()
                if v2:
                    if controller not in (root / "cgroup.controllers").read_text().split():
                        continue
                    (root / "cgroup.subtree_control").write_text(f"+{controller}")
                elif not (root / "tasks").exists():
                    continue
                base = root / "prime-sandbox"
                base.mkdir(exist_ok=True)
                _remove_orphans(base)
                if v2:
                    (base / "cgroup.subtree_control").write_text(f"+{controller}")
                found[controller] = base
                break
            except OSError:
                continue
    if "pids" not in found:
        raise SandboxUnavailable("running as root, the code sandbox bounds processes with the pids cgroup controller, and "
                                 "none is writable under /sys/fs/cgroup; mount it, or run as a non-root user")
    return found


def _remove_orphans(base: Path) -> None:
    """Remove the run cgroups of processes that ended without removing them (killed while
    containers waited in their pool, say); their sandboxes died with them, so they are empty."""
    for cg in base.glob("run-*"):
        if not Path(f"/proc/{cg.name.split('-')[1]}").exists():
            try:
                cg.rmdir()
            except OSError:  # not empty after all: leave it
                pass


def _make_cgroups(run_id: str, limits: Limits) -> list[Path]:
    """This run's cgroups (root only), limits written, empty until the launcher joins them."""
    made = []
    for controller, base in _cgroups().items():
        cg = base / f"run-{run_id}"
        cg.mkdir()
        made.append(cg)
        if controller == "pids":
            (cg / "pids.max").write_text(str(limits.processes))
        else:  # the process's own memory plus its tmpfs: both budgets
            limit = str((limits.memory_mb + limits.disk_mb) << 20)
            (cg / ("memory.max" if (cg / "memory.max").exists() else "memory.limit_in_bytes")).write_text(limit)
    return made


def _user_processes() -> int:
    uid, n = os.getuid(), 0
    for p in Path("/proc").iterdir():
        try:
            n += p.name.isdigit() and p.stat().st_uid == uid
        except OSError:
            pass
    return n


def _rlimits(limits: Limits, cgroups: list[Path]) -> dict[int, tuple[int, int]]:
    """resource -> (soft, hard): what bwrap and everything in the sandbox inherit."""
    cpu = max(1, int(limits.timeout_s + 1))
    # not root: RLIMIT_NPROC counts all of this user's processes, so allow those plus ours
    nproc = limits.processes if cgroups else _user_processes() + limits.processes
    return {resource.RLIMIT_CPU: (cpu, cpu + 1), resource.RLIMIT_AS: (limits.memory_mb << 20,) * 2,
            resource.RLIMIT_FSIZE: (limits.disk_mb << 20,) * 2, resource.RLIMIT_NOFILE: (limits.open_files,) * 2,
            resource.RLIMIT_CORE: (0, 0), resource.RLIMIT_NPROC: (nproc, nproc)}


def _launcher(cgroups: list[Path]) -> list[str]:
    """The shell in front of bwrap: joins the run's cgroups (root), then waits for a "go" line
    on stdin (we set its rlimits meanwhile, which bwrap and the sandbox inherit) and becomes
    bwrap; an end of file instead (we died) ends it. `read` takes no byte past the line, so the
    rest of stdin is the sandbox's. No preexec_fn: sandboxes start from threads."""
    join = "".join(f'echo $$ > "${i + 1}" && ' for i in range(len(cgroups)))
    return ["/bin/sh", "-c", f'{join}read -r go && [ "$go" = go ] && shift {len(cgroups)} && exec "$@"', "sh",
            *(str(cg / "cgroup.procs") for cg in cgroups)]


def _start(files: dict[str, str | bytes], argv: list[str], limits: Limits) -> subprocess.Popen:
    run_id = f"{os.getpid()}-{next(_run_ids)}"
    cgroups = _make_cgroups(run_id, limits)
    fds = {name: _data_fd(text) for name, text in files.items()}
    try:
        proc = subprocess.Popen([*_launcher(cgroups), *_command(fds, argv, limits, run_id)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=tuple(fds.values()), start_new_session=True)
    except OSError:
        _remove_cgroups(cgroups)
        raise
    finally:
        for fd in fds.values():
            os.close(fd)
    proc.cgroups = cgroups
    try:  # the shell waits for "go": nothing has started bwrap yet
        for kind, limit in _rlimits(limits, cgroups).items():
            resource.prlimit(proc.pid, kind, limit)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    except BaseException:
        _end(proc)
        raise
    return proc


def _remove_cgroups(cgroups: list[Path]) -> None:
    """Kill anything still in the run's cgroups, then remove them (busy for a moment while the
    killed processes are reaped)."""
    for cg in cgroups:
        for _ in range(400):
            try:
                for pid in (cg / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                cg.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.005)


def _end(proc: subprocess.Popen) -> None:
    """Kill bwrap's process group (--die-with-parent then takes the whole pid namespace) and, as
    root, anything left in the run's cgroups."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    _remove_cgroups(getattr(proc, "cgroups", []))


def _reason(returncode: int | None, stderr: str) -> str:
    """Why a run ended, from bwrap's exit status (128 + signal when the program was killed)."""
    if returncode is not None and returncode > 128:
        try:
            sig = signal.Signals(returncode - 128)
        except ValueError:
            return f"exit {returncode}"
        return {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "file size limit",
                signal.SIGKILL: "killed"}.get(sig, f"crashed ({sig.name})")
    if "MemoryError" in stderr:
        return "memory limit"
    if "RecursionError" in stderr:
        return "recursion limit"
    return "ok" if returncode == 0 else f"exit {returncode}"


class _Tail:
    """Drains a pipe in a thread, keeping the last `keep` bytes (stderr must never block the child)."""

    def __init__(self, stream, keep: int = 4096):
        self.data, self.keep = b"", keep
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        try:
            for chunk in iter(lambda: stream.read1(65536), b""):
                self.data = (self.data + chunk)[-self.keep:]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        self.thread.join(timeout=1)
        return self.data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- calls (assert-style tests)

def _bytecode(source: Path, inside: str) -> bytes:
    """`source` compiled for this interpreter (the sandbox runs the same one) as a .pyc (PEP 552,
    unchecked hash: no source beside it to check against)."""
    text = source.read_bytes()
    code = compile(text, inside, "exec", dont_inherit=True)
    return importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little") + importlib.util.source_hash(text) + marshal.dumps(code)


@functools.lru_cache(maxsize=1)
def _child_files() -> dict[str, bytes]:
    """What runs beside the program in call mode, compiled once per process: a fresh interpreter
    compiling them from source would spend ~4 ms of CPU in every container."""
    return {"child.pyc": _bytecode(HERE / "child.py", f"{INSIDE}/child.py"),
            "plaindata.pyc": _bytecode(HERE / "plaindata.py", f"{INSIDE}/plaindata.py")}


def _start_call(limits: Limits) -> subprocess.Popen:
    """A call-mode container: child.py, waiting for its program on the pipe."""
    return _start(_child_files(), [f"{INSIDE}/child.pyc"], limits)


class _Pool:
    """Call-mode containers started ahead of need: up to `size` waiting per Limits while
    sessions with those limits keep coming.

    Each waiting container is handed out once (popped under the lock) and destroyed after its
    one program like any run; one that waits `idle_s` is destroyed unused, and refilling stops
    `idle_s` after the last take. All of them are started from one long-lived thread: bwrap's
    --die-with-parent is Linux's parent-death signal, which fires when the *thread* that started
    the process ends, so a worker thread that finishes must not be the parent of a container
    another thread will use. After a fork the child starts an empty pool: the containers and
    their pipes are the parent's.
    """

    def __init__(self, size: int, idle_s: float):
        self.size, self.idle_s = size, idle_s
        self.waiting: dict[Limits, collections.deque] = {}  # limits -> (started at, container), oldest first
        self.wanted: dict[Limits, float] = {}  # limits -> when a session last asked for them
        self.busy = False  # the launcher is starting or destroying containers, outside the lock
        self.cond = threading.Condition()
        self.launcher: threading.Thread | None = None

    def take(self, limits: Limits) -> subprocess.Popen | None:
        """A waiting container for `limits`, never handed out before, or None; either way the
        launcher then keeps `size` waiting for these limits."""
        taken, dead = None, []
        with self.cond:
            if self.launcher is None:
                self.launcher = threading.Thread(target=self._launch, name="prime-sandbox-pool", daemon=True)
                self.launcher.start()
            self.wanted[limits] = time.monotonic()
            self.cond.notify_all()
            queue = self.waiting.get(limits, collections.deque())
            while taken is None and queue:
                proc = queue.popleft()[1]
                if proc.poll() is None:
                    taken = proc
                else:  # killed while it waited (the OOM killer, say): not the next program's failure
                    dead.append(proc)
        for proc in dead:
            _end(proc)
        return taken

    def close(self) -> None:
        """Destroy every waiting container and stop refilling (until the next take)."""
        with self.cond:
            self.wanted.clear()
            while self.busy:  # a container being started now is in `waiting` when this ends
                self.cond.wait()
            left = [proc for queue in self.waiting.values() for _, proc in queue]
            self.waiting.clear()
        for proc in left:
            _end(proc)

    def count(self) -> int:
        """Containers waiting now (tests)."""
        with self.cond:
            return sum(map(len, self.waiting.values()))

    def _launch(self) -> None:
        """The launcher thread: start what is wanted, destroy what waited too long, else sleep."""
        while True:
            with self.cond:
                need, stale, wake = self._plan(time.monotonic())
                if need is None and not stale:
                    self.cond.wait(timeout=wake)
                    continue
                self.busy = True
            for proc in stale:
                _end(proc)
            try:
                started = _start_call(need) if need is not None else None
            except Exception:  # noqa: BLE001 - sessions then start their own, and raise the error there
                started = None
            with self.cond:
                if started is not None:
                    self.waiting.setdefault(need, collections.deque()).append((time.monotonic(), started))
                elif need is not None:  # failed: no retry until the next take
                    self.wanted.pop(need, None)
                self.busy = False
                self.cond.notify_all()

    def _plan(self, now: float) -> tuple[Limits | None, list[subprocess.Popen], float | None]:
        """Under the lock: (limits to start a container for, containers to destroy, seconds
        until something expires)."""
        stale = []
        for queue in self.waiting.values():
            while queue and now - queue[0][0] > self.idle_s:
                stale.append(queue.popleft()[1])
        for limits, asked in list(self.wanted.items()):
            if now - asked > self.idle_s:
                del self.wanted[limits]
        need = next((lim for lim in self.wanted if len(self.waiting.get(lim, ())) < self.size), None)
        times = [*self.wanted.values(), *(queue[0][0] for queue in self.waiting.values() if queue)]
        wake = max(0.0, min(times) + self.idle_s - now) + 0.01 if times else None
        return need, stale, wake

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's containers (close our copies of their pipes only)."""
        for queue in self.waiting.values():
            for _, proc in queue:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    stream.close()
        self.__init__(self.size, self.idle_s)


_pool = _Pool(size=2 * (os.cpu_count() or 1), idle_s=2.0)
atexit.register(_pool.close)
os.register_at_fork(after_in_child=_pool.forget_after_fork)


def close_pool() -> None:
    """Destroy the containers waiting for programs (tests: before counting leftover processes)."""
    _pool.close()


class CallSession:
    """The program loaded in a sandbox, answering calls with plain data until closed.

        with CallSession(program, limits) as s:
            if s.ready: value = s.call("add", [1, 2])   # raises CallFailed / SandboxEnded

    The container is one the pool started ahead of need for these limits, or, when none is
    waiting, one started here; either way no other program ever enters it.
    """

    def __init__(self, program: str, limits: Limits = DEFAULT_LIMITS):
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.proc = _pool.take(limits) or _start_call(limits)
        self.stderr = _Tail(self.proc.stderr)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer, self.ids, self.ended = b"", itertools.count(), None
        try:
            self._send(plaindata.dumps({"program": program}))
            hello = self._receive()
        except SandboxEnded as e:
            hello = {"ready": False, "error": "", "message": e.reason}
        self.ready = hello.get("ready") is True and isinstance(hello.get("names"), list)
        self.names = [n for n in hello.get("names", []) if isinstance(n, str)] if self.ready else []
        self.load_error = "" if self.ready else f"{hello.get('error', '')}: {hello.get('message', '')}".strip(": ")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.proc.returncode is None:
            _end(self.proc)
        self.selector.close()

    def reason(self) -> str:
        """How the run ended so far: "ok" while it runs normally."""
        return self.ended or "ok"

    def _fail(self, reason: str):
        if self.ended is None:
            self.ended = reason
            _end(self.proc)
        raise SandboxEnded(self.ended)

    def _send(self, line: str) -> None:
        """One protocol line to the child; SandboxEnded if the run is over."""
        if self.ended:
            raise SandboxEnded(self.ended)
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.proc.wait()
            self._fail(_reason(self.proc.returncode, self.stderr.text()))

    def _receive(self) -> dict:
        """The next protocol message; SandboxEnded on timeout, exit, garbage or an oversized reply."""
        if self.ended:
            raise SandboxEnded(self.ended)
        while b"\n" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._fail("timeout")
            if not self.selector.select(timeout=left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self.proc.wait()
                self._fail(_reason(self.proc.returncode, self.stderr.text()) if self.proc.returncode else "exited")
            self.buffer += chunk
            if len(self.buffer) > self.limits.output_bytes:
                self._fail("output limit")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = plaindata.loads(line)
        except plaindata.PlainDataError as e:
            self._fail(f"protocol error ({e})")
        if type(message) is not dict:
            self._fail("protocol error (not a message)")
        return message

    def call(self, name: str, args: list | tuple = (), kwargs: dict | None = None):
        """The program's `name(*args, **kwargs)`, as plain data. CallFailed when it raised (or
        returned something that is not plain data); PlainDataError when an argument is not."""
        call_id = next(self.ids)
        self._send(plaindata.dumps({"id": call_id, "name": name, "args": list(args), "kwargs": dict(kwargs or {})}))
        reply = self._receive()
        if reply.get("id") != call_id or type(reply.get("ok")) is not bool:
            self._fail("protocol error (a reply out of order)")
        if not reply["ok"]:
            raise CallFailed(str(reply.get("error", "")), str(reply.get("message", "")))
        return reply.get("value")


class CallFailed(Exception):
    """The program's function raised `error` (a type name) with `message`."""

    def __init__(self, error: str, message: str):
        super().__init__(f"{error}: {message}" if message else error)
        self.error, self.message = error, message


# ---------------------------------------------------------------------------- stdin / stdout runs

@dataclass
class IoRun:
    stdout: str
    stderr: str
    reason: str  # ok, timeout, output limit, cpu limit, memory limit, killed, crashed (…), exit N
    seconds: float


def run_io(program: str, stdin: str, limits: Limits = DEFAULT_LIMITS) -> IoRun:
    """Run the program as a script (`__main__`) with `stdin`; its output comes back as text."""
    start = time.monotonic()
    proc = _start({"main.py": program}, [f"{INSIDE}/main.py"], limits)
    stderr = _Tail(proc.stderr)
    out, reason = bytearray(), None
    data = stdin.encode()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if data:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    try:
        while reason is None:
            left = start + limits.timeout_s - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            for key, _ in sel.select(timeout=left):
                if key.fileobj is proc.stdin:
                    try:
                        data = data[os.write(proc.stdin.fileno(), data[:65536]):]
                    except (BrokenPipeError, OSError):
                        data = b""
                    if not data:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    proc.wait()
                    reason = _reason(proc.returncode, stderr.text())
                    break
                out += chunk
                if len(out) > limits.output_bytes:
                    reason = "output limit"
                    break
    finally:
        sel.close()
        _end(proc)
    return IoRun(out[: limits.output_bytes].decode("utf-8", "replace"), stderr.text(), reason,
                 time.monotonic() - start)


def leftover_processes() -> list[int]:
    """Host pids of sandboxed processes still alive (tests: there must be none after a run).
    Containers waiting in the pool count too: close_pool() first."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"PRIME_SANDBOX=" in (p / "environ").read_bytes() and int(p.name) != os.getpid():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids

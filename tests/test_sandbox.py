"""The code sandbox and its harness against hostile programs: nothing forges a score, nothing
gets out, nothing outlives its verdict; correct programs that use the standard library pass.

A program can only ever influence the *values* the harness receives, so the most a tampering
program achieves is what returning those values itself would: a forged reply with a constant
scores like the constant (the "guess" case).

Every attack is a program with the outcome it must have. The tests they face are always

    assert add(1, 2) == 3 / assert add(-1, 1) == 0 / assert add(2, 2) == 4

so an attack that "wins" scores above 0 with a wrong (or no) `add`. Escapes are checked on the
host after the verdicts: a canary file, paths that must not appear, servers on the host's
loopback and abstract unix sockets that must see no connection, no process left behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prime import sandbox
from prime.sandbox import CallSession, Limits, close_pool, leftover_processes, plaindata, run_io
from prime.sandbox.harness import run_assert_tests, run_io_tests
from prime.verifiers import verify, verify_code

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
WRONG = "def add(a, b):\n    return None\n"
FAST = Limits(timeout_s=3.0)

# ---------------------------------------------------------------------------- forging a score

FORGERIES = {  # name -> program; each must score 0
    "always-equal object": "class Yes:\n    def __eq__(self, o): return True\ndef add(a, b):\n    return Yes()",
    "int subclass that equals anything": "class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n"
                                         "def add(a, b):\n    return I(0)",
    "list subclass": "class L(list):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return L()",
    "str subclass": "class S(str):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return S('x')",
    "float nan trick": "def add(a, b):\n    return float('nan')",
    "patch the child's send": WRONG + "import sys\nm = sys.modules['__main__']\n"
                              "real = m.send\nm.send = lambda msg: real({**msg, 'ok': True, 'value': True})",
    "patch plaindata.dumps": WRONG + "import sys\npd = sys.modules['plaindata']\nreal = pd.dumps\n"
                             "pd.dumps = lambda m: real({**m, 'ok': True, 'value': 'pass'}) if isinstance(m, dict) else real(m)",
    "patch builtins": WRONG + "import builtins\nbuiltins.AssertionError = SystemExit\nbuiltins.isinstance = lambda *a: True",
    "patch json": WRONG + "import json\njson.dumps = lambda *a, **k: '{\"id\":0,\"ok\":true,\"value\":true}'",
    "walk the frames for the tests": WRONG + "import sys\nf = sys._getframe()\nwhile f:\n"
                                     "    f.f_globals.get('tests', []).clear() if isinstance(f.f_globals.get('tests'), list) else None\n"
                                     "    f = f.f_back",
    "gc hunt for the test list": WRONG + "import gc\nfor o in gc.get_objects():\n"
                                 "    if isinstance(o, list) and any('assert' in str(x) for x in o[:3]): o.clear()",
    "inspect the stack": WRONG + "import inspect\nfor fr in inspect.stack():\n    fr.frame.f_locals.clear()",
    "trace every call": WRONG + "import sys\nsys.settrace(lambda *a: None)\nsys.setprofile(lambda *a: None)",
    "forged replies on the protocol fd": WRONG + "import os\nfor fd in range(3, 20):\n    try:\n"
                                         "        os.write(fd, b'{\"$dict\":[[\"id\",0],[\"ok\",true],[\"value\",3]]}\\n')\n"
                                         "    except OSError:\n        pass",
    "forged replies on stdout": WRONG + "import os\nos.write(1, b'{\"$dict\":[[\"id\",0],[\"ok\",true],[\"value\",3]]}\\n')",
    "forging thread": WRONG + "import os, threading, time\ndef spam():\n    for i in range(50):\n"
                      "        for fd in (1, 3, 4, 5):\n            try:\n"
                      "                os.write(fd, ('{\"$dict\":[[\"id\",%d],[\"ok\",true],[\"value\",4]]}\\n' % (i % 3)).encode())\n"
                      "            except OSError:\n                pass\n        time.sleep(0.001)\n"
                      "threading.Thread(target=spam, daemon=True).start()",
    "atexit forger": WRONG + "import atexit, os\natexit.register(lambda: os.write(4, b'{\"id\":1}\\n'))",
    "__del__ forger": WRONG + "import os\nclass D:\n    def __del__(self):\n        os.write(4, b'{\"$dict\":[[\"id\",1],[\"ok\",true],[\"value\",0]]}\\n')\n"
                      "d = D()\ndel d",
    "signal-handler forger": WRONG + "import signal, os\nsignal.signal(signal.SIGALRM, lambda *a: os.write(4, b'ok\\n'))\n"
                             "signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)",
    "forge then crash": "import os\nos.write(4, b'{\"$dict\":[[\"id\",0],[\"ok\",true],[\"value\",3]]}\\n')\nos._exit(0)",
    "forge then hang": "import os\nos.write(4, b'{\"$dict\":[[\"id\",0],[\"ok\",true],[\"value\",3]]}\\n')\nwhile True:\n    pass",
    "exit inside the call": "def add(a, b):\n    raise SystemExit(0)",
    "hard exit inside the call": "import os\ndef add(a, b):\n    os._exit(0)",
    "read the tests from disk": "import os\nfound = []\nfor root, dirs, files in os.walk('/'):\n"
                                "    if root.startswith('/proc'): continue\n"
                                "    found += [f for f in files if f.endswith(('.jsonl', '.gz'))]\n"
                                "def add(a, b):\n    return len(found)  # 0 when no test file is visible",
    "read the tests from /proc": "import os\nseen = ''\nfor p in os.listdir('/proc'):\n    try:\n"
                                 "        seen += open(f'/proc/{p}/cmdline').read() + open(f'/proc/{p}/environ').read()\n"
                                 "    except OSError:\n        pass\n"
                                 "def add(a, b):\n    return 3 if 'assert add' in seen else None",
    "guess from the arguments (only one test can match)": "def add(a, b):\n    return 3",
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forgeries_score_zero_and_say_so(name):
    v = verify_code("", TESTS, program=FORGERIES[name], limits=FAST)
    expected = 1 / 3 if name.startswith("guess") else 0.0  # a constant honestly passes one test
    if name == "forging thread":
        # its replies carry the constant 4: when one lands on a live call (timing: containers
        # start ahead of need), the harness receives 4 as add's value, which passes
        # add(2, 2) == 4 as returning 4 would: at most the constant's 1/3, never more
        assert v.score in (0.0, pytest.approx(1 / 3)), (name, v.detail)
    else:
        assert v.score == pytest.approx(expected), (name, v.detail)
    assert v.detail.startswith(f"{v.passed}/3 passed"), v.detail  # score and detail agree


# ---------------------------------------------------------------------------- escaping

@pytest.fixture
def host(tmp_path):
    """Things on the host an escaped program would touch: a canary file, a TCP server on the
    host's loopback and an abstract unix socket, each recording any connection."""
    canary = tmp_path / "canary.txt"
    canary.write_text("untouched")
    hits = []
    servers = []
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(f"\0prime-sandbox-test-{os.getpid()}")
    fs_unix = socket.socket(socket.AF_UNIX)
    fs_unix.bind(str(tmp_path / "host.sock"))
    for s in (tcp, unix, fs_unix):
        s.listen()
        s.settimeout(0.2)
        servers.append(s)

    def accept():
        while servers:
            for s in servers:
                try:
                    hits.append(s.accept())
                except OSError:
                    pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    info = {"canary": canary, "created": tmp_path / "created.txt", "port": tcp.getsockname()[1],
            "abstract": f"prime-sandbox-test-{os.getpid()}", "fs_sock": str(tmp_path / "host.sock"), "hits": hits}
    yield info
    servers.clear()
    t.join(timeout=2)
    for s in (tcp, unix, fs_unix):
        s.close()


def escapes(h) -> dict[str, str]:
    """name -> program. None may change anything on the host; all score 0 on the add tests."""
    target, created = str(h["canary"]), str(h["created"])
    return {
        "write the canary": f"open({target!r}, 'w').write('pwned')",
        "create a file next to it": f"import os\nos.makedirs(os.path.dirname({created!r}), exist_ok=True)\n"
                                    f"open({created!r}, 'w').write('pwned')",
        "dir_fd write": f"import os\nd = os.open(os.path.dirname({target!r}), os.O_RDONLY)\n"
                        f"os.open('canary.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=d)",
        "rename race": f"import os\nos.rename({target!r}, {target!r} + '.x')",
        "write under /usr": "open('/usr/pwned', 'w').write('x')",
        "write the project": "open('/work/main/README.md', 'a').write('pwned')",
        "read /etc/shadow": "print(open('/etc/shadow').read())",
        "read root's ssh key": "print(open('/root/.ssh/id_rsa').read())",
        "read the host environment": "print(open('/proc/1/environ').read())",
        "tcp to the internet": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
        "tcp to the host's loopback": f"import socket\nsocket.create_connection(('127.0.0.1', {h['port']}), timeout=1)",
        "abstract unix socket to the host": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0{h['abstract']}')",
        "filesystem unix socket to the host": f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({h['fs_sock']!r})",
        "setsid daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                         "        time.sleep(60)\n    os._exit(0)",
        "double-forked sleeper via subprocess": "import subprocess\nsubprocess.Popen(['sleep', '60'], start_new_session=True)",
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "kill everything": "import os, signal\nos.kill(-1, signal.SIGKILL)",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "thread bomb": "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        "disk fill": "f = open('/tmp/fill', 'wb')\nwhile True:\n    f.write(b'x' * 10**6)",
        "inode fill": "i = 0\nwhile True:\n    open(f'/tmp/{i}', 'w').close()\n    i += 1",
        "output flood": "while True:\n    print('x' * 10000)",
        "raise the limits": "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))",
        "new user namespace": "import os\nos.unshare(os.CLONE_NEWUSER)",
        "mount": "import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.mount(b'none', b'/usr', b'tmpfs', 0, None) == 0",
        "mkfifo and mknod": "import os, stat\nos.mkfifo('/tmp/f')\nos.mknod('/tmp/dev', stat.S_IFCHR | 0o600, os.makedev(1, 3))",
        "posixsubprocess fork_exec": "import _posixsubprocess, os\nprint(os.system('touch /tmp/prime-sandbox-pwned'))",
        "ctypes segfault": "import ctypes\nctypes.string_at(0)",
        "sqlite in /tmp": "import sqlite3\nsqlite3.connect('/tmp/x.db').execute('create table t(x)')",
        "subinterpreter": "import _xxsubinterpreters as s\ni = s.create()\ns.run_string(i, \"open('/tmp/x', 'w')\")",
        "chroot": "import os\nos.chroot('/tmp')",
        "ptrace the host": "import ctypes\nprint(ctypes.CDLL(None).ptrace(16, 1, 0, 0))",
        "reboot": "import ctypes\nctypes.CDLL(None).reboot(0x1234567)",
        "sleep past the deadline": "import time\ntime.sleep(60)",
    }


@pytest.mark.slow
def test_escapes_are_contained(host):
    programs = escapes(host)
    assert len(programs) + len(FORGERIES) >= 40
    scores = {name: verify_code("", TESTS, program=p, limits=FAST).score for name, p in programs.items()}
    assert {n: s for n, s in scores.items() if s != 0.0} == {}
    for p in programs.values():  # and once more as a script, the way io tests run programs
        run_io(p, "", FAST)
    time.sleep(0.3)
    assert host["canary"].read_text() == "untouched"
    assert not host["created"].exists() and not Path(str(host["canary"]) + ".x").exists()
    assert not Path("/tmp/prime-sandbox-pwned").exists() and not Path("/usr/pwned").exists()
    assert "pwned" not in Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    assert host["hits"] == []
    close_pool()  # the containers still waiting for a program are sandboxed processes too
    assert leftover_processes() == []
    assert os.system("true") == 0  # the host can still start processes after the bombs


def test_what_a_program_sees():
    r = run_io("import os\nprint(os.getuid(), sorted(os.listdir('/')), sorted(os.environ))", "", FAST)
    uid, *_rest = r.stdout.split(" ", 1)
    assert r.reason == "ok" and uid == "65534"
    assert "'work'" not in r.stdout and "'home'" not in r.stdout and "'etc'" not in r.stdout
    assert "PRIME_SANDBOX" in r.stdout and "PATH" in r.stdout and "HOME" in r.stdout


def test_the_rlimits_are_the_runs():
    """Set on the launcher before it becomes bwrap; the program inherits them, in both modes."""
    limits = Limits(timeout_s=3.0, memory_mb=300, disk_mb=8, open_files=40, processes=12)
    names = ["CPU", "AS", "FSIZE", "NOFILE", "CORE"] + (["NPROC"] if os.geteuid() == 0 else [])  # not root: + the user's
    expected = [(4, 5),  # CPU seconds: deadline + 1 (soft: SIGXCPU), + 2 (hard: SIGKILL)
                (300 << 20, 300 << 20), (8 << 20, 8 << 20), (40, 40), (0, 0), (12, 12)][:len(names)]
    program = ("import resource\ndef limits():\n"
               f"    return [resource.getrlimit(getattr(resource, 'RLIMIT_' + n)) for n in {names!r}]\n")
    assert run_io(program + "print(limits())", "", limits).stdout.strip() == repr(expected)
    with CallSession(program, limits) as s:
        assert s.call("limits") == expected


def test_the_environment_is_not_inherited(monkeypatch):
    monkeypatch.setenv("PRIME_TEST_SECRET", "hunter2")
    assert "hunter2" not in run_io("import os\nprint(os.environ)", "", FAST).stdout


# ---------------------------------------------------------------------------- false negatives

IMPORTS = ["pathlib", "xml.etree.ElementTree", "concurrent.futures", "unittest", "email", "http", "urllib", "asyncio",
           "sqlite3", "multiprocessing", "importlib.util", "zoneinfo", "tomllib", "collections", "itertools",
           "functools", "heapq", "bisect", "re", "json", "math", "fractions", "decimal", "datetime", "string"]


@pytest.mark.parametrize("module", IMPORTS)
def test_correct_programs_that_import_the_standard_library_pass(module):
    program = f"import {module}\ndef add(a, b):\n    return a + b\n"
    assert verify_code("", TESTS, program=program, limits=FAST).score == 1.0


def test_standard_library_that_touches_files_and_threads_works():
    program = ("import pathlib, tempfile, concurrent.futures, sqlite3, zoneinfo\n"
               "def add(a, b):\n"
               "    p = pathlib.Path(tempfile.mkdtemp()) / 'x.txt'\n    p.write_text(str(a))\n"
               "    db = sqlite3.connect(':memory:')\n"
               "    with concurrent.futures.ThreadPoolExecutor(2) as ex:\n"
               "        s = sum(ex.map(int, [p.read_text(), str(b)]))\n"
               "    zoneinfo.ZoneInfo('UTC')\n    return db.execute('select ?', (s,)).fetchone()[0]\n")
    v = verify_code("", TESTS, program=program, limits=FAST)
    assert v.score == 1.0, v.detail


# ---------------------------------------------------------------------------- the plain-data contract

@pytest.mark.parametrize("value, test", [
    ("(1, 'a')", "assert f() == (1, 'a') and type(f()) is tuple"),
    ("{1, 2}", "assert f() == {1, 2}"),
    ("frozenset({3})", "assert f() == frozenset({3})"),
    ("{1: 'a', (2, 3): [4.5]}", "assert f() == {1: 'a', (2, 3): [4.5]}"),
    ("b'\\x00\\xff'", "assert f() == b'\\x00\\xff'"),
    ("float('nan')", "import math\nassert math.isnan(f())"),
    ("float('-inf')", "assert f() == float('-inf')"),
    ("2 ** 200", "assert f() == 2 ** 200"),
    ("1 + 2j", "assert f() == 1 + 2j"),
    ("None", "assert f() is None"),
    ("[[[]]]", "assert f() == [[[]]]"),
])
def test_plain_values_cross_exactly(value, test):
    assert verify_code("", [test], program=f"def f():\n    return {value}", limits=FAST).score == 1.0


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.binary(max_size=10)
    | st.complex_numbers(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.text(max_size=5) | st.tuples(st.integers()), inner, max_size=3)
    | st.frozensets(st.integers() | st.text(max_size=5), max_size=3) | st.sets(st.integers(), max_size=3),
    max_leaves=12)


def _same(a, b) -> bool:
    """Equal, of the same types all the way down, NaN equal to NaN (set members and keys hold no floats)."""
    if type(a) is not type(b):
        return False
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return a == b


@settings(max_examples=300, deadline=None)
@given(plain_values)
def test_dumps_is_json_dumps_and_loads_inverts_it(value):
    """The C encoder called directly (no `json` import in the sandbox) against json.dumps itself."""
    text = plaindata.dumps(value)
    assert text == json.dumps(plaindata.encode(value), allow_nan=False, separators=(",", ":"))
    assert text.isascii() and "\n" not in text  # one protocol line
    assert _same(plaindata.loads(text), value) and _same(plaindata.loads(text.encode()), value)


@pytest.mark.parametrize("line, why", [
    ("NaN", "a bare constant is not our encoding (non-finite floats are tagged)"),
    ('{"$float":"nan"} 1', "extra data after the value"),
    ('{"$bytes":"AP8"}', "base64 without its padding"),
    ('{"$bytes":"AP8=\\n"}', "base64 with a character outside the alphabet"),
    ('{"$tuple":1}', "a tag whose body is not a list"),
    ('{"$set":[[1]]}', "an unhashable member of a set"),
    ('{"a":1}', "an untagged object"),
    ('{"$code":"x"}', "an unknown tag"),
    ("[1,", "truncated"),
    (b"\xff", "not UTF-8"),
    ("[" * 200 + "]" * 200, "nested deeper than MAX_DEPTH"),
])
def test_loads_refuses_what_dumps_never_writes(line, why):
    with pytest.raises(plaindata.PlainDataError):
        plaindata.loads(line)


def test_values_cross_the_pipe_both_ways_unchanged():
    """The child's json-free decoder and the C encoder, on values of every kind, in one session."""
    values = [None, True, -(2 ** 100), 0.1, math.inf, -math.inf, "é\u2028\x00", b"\x00\xff" * 5, 1 - 2j, (1, (2,)),
              {1, 2}, frozenset({"a"}), {(1, 2): [3.5, {"k": None}]}, [[[]]], {"": b""}]
    with CallSession("def echo(x):\n    return x", FAST) as s:
        assert s.ready, s.load_error
        for v in values:
            assert _same(s.call("echo", [v]), v), v
        assert math.isnan(s.call("echo", [math.nan]))


def test_exceptions_cross_as_builtin_types():
    program = "def div(a, b):\n    return a // b"
    tests = ["try:\n    div(1, 0)\n    assert False\nexcept ZeroDivisionError:\n    pass", "assert div(7, 2) == 3"]
    v = verify_code("", tests, program=program, limits=FAST)
    assert v.score == 1.0, v.detail


def test_tests_count_one_by_one_and_details_say_why():
    v = verify_code("", ["assert f(1) == 2", "assert f(2) == 4", "assert f(0) == 1"], program="def f(x):\n    return x + 1",
                    limits=FAST)
    assert (v.passed, v.total) == (2, 3) and "first failure test 1: AssertionError" in v.detail
    assert "NotPlainData" in verify_code("", ["assert f() == 1"], program="def f():\n    return object()").detail
    assert "[timeout]" in verify_code("", ["assert f() == 1"], program="def f():\n    while True: pass",
                                      limits=Limits(timeout_s=1)).detail
    assert "program: SyntaxError" in verify_code("", TESTS, program="def add(:").detail


def test_a_timeout_keeps_the_tests_that_finished():
    r = run_assert_tests("import time\ndef f(x):\n    if x: time.sleep(60)\n    return x",
                         ["assert f(0) == 0", "assert f(1) == 1", "assert f(0) == 0"], limits=Limits(timeout_s=1.5))
    assert [o.ok for o in r.outcomes] == [True, False, False] and r.reason == "timeout"


def test_the_prelude_is_trusted_and_wins_over_the_program():
    """HumanEval/32 style: the test uses a helper from the task's prompt; a program that
    redefines that helper to make every answer look right does not change it."""
    prelude = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef find_zero(xs):\n    ..."
    test = "candidate = find_zero\nassert abs(poly([-6, 11, -6, 1], candidate([-6, 11, -6, 1]))) < 1e-6"
    cheat = "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 123.0"
    honest = "def find_zero(xs):\n    return 1.0"
    assert verify_code("", [test], program=cheat, prelude=prelude, entry_point="find_zero").score == 0.0
    assert verify_code("", [test], program=honest, prelude=prelude, entry_point="find_zero").score == 1.0


# ---------------------------------------------------------------------------- containers started ahead of need

FRESH = ("import builtins, os\n"
         "seen = (sorted(os.listdir('/tmp')), hasattr(builtins, 'was_here'))\n"
         "open('/tmp/was-here', 'w').close()\nbuiltins.was_here = True\n"
         "def seen_before():\n    return seen\n")


def _wait_for(condition, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _run_cgroups() -> list[Path]:
    """The per-run cgroups of this process that exist now (as root; none otherwise)."""
    return [d for base in sandbox._cgroups().values() for d in base.glob(f"run-{os.getpid()}-*")]


def test_a_container_serves_one_program_only(monkeypatch):
    """Programs in a row and from several threads at once: each finds its container untouched
    (nothing in /tmp, no state in the interpreter), every session has a container of its own,
    dead after the verdict, and most came from the pool."""
    close_pool()
    pooled = []
    take = sandbox._pool.take
    monkeypatch.setattr(sandbox._pool, "take", lambda limits: pooled.append(take(limits)) or pooled[-1])
    procs = []

    def one(_):
        with CallSession(FRESH, FAST) as s:
            assert s.ready, s.load_error
            procs.append(s.proc)
            return s.call("seen_before")

    seen = [one(i) for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        seen += list(pool.map(one, range(12)))
    assert seen == [([], False)] * 18
    assert len({p.pid for p in procs}) == 18 and all(p.returncode is not None for p in procs)
    assert sum(p is not None for p in pooled) >= 9, "the pool did not serve"


def test_a_pooled_container_is_the_same_container_as_any_run():
    """What a program sees from a container that waited in the pool equals what it sees from a
    fresh run: uid, hostname, rlimits, capabilities, mounts, network; as root, its cgroups hold it
    with the run's limits."""
    close_pool()
    # not root, RLIMIT_NPROC counts the user's processes at the start, which differ from run to run
    rlimits = ["CPU", "AS", "FSIZE", "NOFILE", "CORE"] + (["NPROC"] if os.geteuid() == 0 else [])
    program = ("import os, resource, socket\n"
               "def sees():\n"
               f"    limits = [resource.getrlimit(getattr(resource, 'RLIMIT_' + n)) for n in {rlimits!r}]\n"
               "    status = [l for l in open('/proc/self/status')\n"
               "              if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp', 'Uid', 'Gid'))]\n"
               "    mounts = sorted(l.split()[4] for l in open('/proc/self/mountinfo')\n"
               "                    if not l.split()[4].startswith('/sandbox'))\n"
               "    net = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:])\n"
               "    return [os.getuid(), os.getgid(), socket.gethostname(), limits, status, mounts, net, os.getcwd()]\n")
    fresh = run_io(program + "print(repr(sees()))", "", FAST)
    assert fresh.reason == "ok", fresh.stderr
    verify_code("", ["assert True"], program=program, limits=FAST)  # asks the pool for FAST containers
    assert _wait_for(lambda: sandbox._pool.count() > 0)
    with CallSession(program, FAST) as s:
        assert s.ready, s.load_error
        assert repr(s.call("sees")) == fresh.stdout.strip()
        assert len(s.proc.cgroups) == len(sandbox._cgroups())
        for cg in s.proc.cgroups:  # as root: the container's processes are in the run's cgroups, with its limits
            assert (cg / "cgroup.procs").read_text().split(), cg
            if (cg / "pids.max").exists():
                assert int((cg / "pids.max").read_text()) == FAST.processes
            if (cg / "memory.limit_in_bytes").exists():
                assert int((cg / "memory.limit_in_bytes").read_text()) == (FAST.memory_mb + FAST.disk_mb) << 20
    close_pool()
    assert _run_cgroups() == [] and leftover_processes() == []


def test_waiting_containers_expire_and_close_leaves_nothing(monkeypatch):
    pool = sandbox._Pool(size=3, idle_s=1.0)
    monkeypatch.setattr(sandbox, "_pool", pool)
    close_pool()
    assert pool.take(FAST) is None  # none waiting yet; now it keeps 3 waiting
    assert _wait_for(lambda: pool.count() == 3)
    assert _wait_for(lambda: pool.count() == 0, 5)  # no session came for 1 s: destroyed unused
    assert _wait_for(lambda: leftover_processes() == [] and _run_cgroups() == [], 5)
    pool.take(FAST)
    assert _wait_for(lambda: pool.count() == 3)
    pool.close()
    assert pool.count() == 0 and leftover_processes() == [] and _run_cgroups() == []


def test_a_waiting_container_outlives_the_thread_that_asked_for_it():
    """The parent-death signal follows the thread that started a process: containers must be
    started by the pool's own thread, not by a worker that may end before they are used."""
    close_pool()
    worker = threading.Thread(target=verify_code, args=("", TESTS), kwargs={"program": WRONG, "limits": FAST})
    worker.start()
    worker.join()
    assert _wait_for(lambda: sandbox._pool.count() == sandbox._pool.size)
    time.sleep(0.3)  # a container the worker had started would be dead by now
    assert all(proc.poll() is None for _, proc in sandbox._pool.waiting[FAST])
    assert verify_code("", TESTS, program="def add(a, b):\n    return a + b", limits=FAST).score == 1.0
    close_pool()


def test_a_container_killed_while_waiting_is_not_handed_out():
    close_pool()
    verify_code("", TESTS, program=WRONG, limits=FAST)
    assert _wait_for(lambda: sandbox._pool.count() == sandbox._pool.size)
    waiting = [proc for _, proc in sandbox._pool.waiting[FAST]]
    for proc in waiting:
        os.killpg(proc.pid, signal.SIGKILL)
    assert _wait_for(lambda: all(proc.poll() is not None for proc in waiting))
    v = verify_code("", TESTS, program="def add(a, b):\n    return a + b", limits=FAST)
    assert v.score == 1.0, v.detail
    close_pool()
    assert leftover_processes() == [] and _run_cgroups() == []


def test_run_cgroups_of_dead_processes_are_removed():
    """A process killed while containers waited for it leaves their (empty) cgroups behind: the
    next process to use the sandbox removes them; those of live processes stay."""
    if not sandbox._cgroups():
        pytest.skip("cgroups are used as root only")
    dead = subprocess.Popen(["true"])
    dead.wait()
    for base in sandbox._cgroups().values():
        (base / f"run-{dead.pid}-0").mkdir()
        (base / f"run-{os.getpid()}-test").mkdir()
        sandbox._remove_orphans(base)
        assert not (base / f"run-{dead.pid}-0").exists() and (base / f"run-{os.getpid()}-test").exists()
        (base / f"run-{os.getpid()}-test").rmdir()


def test_a_forked_process_starts_with_an_empty_pool():
    """The containers and their pipes are the parent's: a forked child must not hand them out."""
    close_pool()
    verify_code("", TESTS, program=WRONG, limits=FAST)
    assert _wait_for(lambda: sandbox._pool.count() > 0)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if sandbox._pool.count() == 0 and not sandbox._pool.waiting else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert all(proc.poll() is None for _, proc in sandbox._pool.waiting[FAST])  # the parent's are untouched
    assert verify_code("", TESTS, program="def add(a, b):\n    return a + b", limits=FAST).score == 1.0
    close_pool()


# ---------------------------------------------------------------------------- stdin / stdout tests

IO = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 -5\n", "output": "0"}, {"input": "2 2\n", "output": "4  \n\n"}]


@pytest.mark.parametrize("program, score", [
    ("a, b = map(int, input().split())\nprint(a + b)", 1.0),  # trailing whitespace and newlines do not matter
    ("a, b = map(int, input().split())\nprint(a - b)", 0.0),  # 1 - 2 = -1 ≠ 3, 5 - -5 = 10 ≠ 0, 2 - 2 = 0 ≠ 4
    ("print(3)", 1 / 3),
    ("import sys\nsys.exit(1)", 0.0),
    ("while True: pass", 0.0),
])
def test_io_cases_are_judged_outside(program, score):
    v = verify_code(f"```python\n{program}\n```", io=IO, limits=Limits(timeout_s=2))
    assert v.score == pytest.approx(score), v.detail


def test_io_rows_dispatch_and_outputs_compare_outside():
    row = {"answer": "", "io": IO}
    assert verify("```python\na, b = map(int, input().split())\nprint(a + b)\n```", row).score == 1.0
    r = run_io_tests("print(open('/proc/self/cmdline').read())", IO, limits=FAST)
    assert r.passed == 0  # the expected output never enters the sandbox: nothing to copy it from


def test_bubblewrap_missing_is_a_clear_error(monkeypatch):
    from prime import sandbox
    from prime.errors import UserError

    sandbox.bwrap_path.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.raises(UserError, match="apt-get install bubblewrap"):
            sandbox.bwrap_path()
    finally:
        sandbox.bwrap_path.cache_clear()

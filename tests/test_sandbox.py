"""The code sandbox: hostile programs end contained, with a recorded reason and no effect outside
their temporary directory; no process outlives a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prime.sandbox import run_python

RUNNER_MARK = "sys.addaudithook(hook)"  # appears in every sandbox child's command line


def sandbox_processes() -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if RUNNER_MARK.encode() in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


@pytest.fixture
def canary(tmp_path):
    """A file outside the sandbox that no program may change, and a path it may not create."""
    f = tmp_path / "canary.txt"
    f.write_text("untouched")
    return f


def hostile(canary: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (program, accepted reasons)."""
    target, created = str(canary), str(canary.parent / "created.txt")
    return {
        "infinite loop": ("while True:\n    pass", ("timeout", "cpu limit")),
        "fork bomb": ("import os\nwhile True:\n    os.fork()", ("blocked: os.fork is not allowed",)),
        "memory bomb": ("x = []\nwhile True:\n    x.append(bytearray(10**7))", ("memory limit", "killed")),
        "huge output": ("while True:\n    print('x' * 10000)", ("output limit",)),
        "write outside": (f"open({created!r}, 'w').write('pwned')", (f"blocked: writing {created!r} is not allowed",)),
        "low-level write outside": (f"import os\nos.open({created!r}, os.O_WRONLY | os.O_CREAT)",
                                    (f"blocked: reading {created!r} is not allowed",
                                     f"blocked: writing {created!r} is not allowed")),
        "delete outside": (f"import os\nos.remove({target!r})", (f"blocked: os.remove on {target!r} is not allowed",)),
        "truncate outside": (f"open({target!r}, 'w')", (f"blocked: writing {target!r} is not allowed",)),
        "read ssh key": ("open(__import__('os').path.expanduser('~root/.ssh/id_rsa')).read()",
                         ("blocked: reading '/root/.ssh/id_rsa' is not allowed",)),
        "read /etc/shadow": ("open('/etc/shadow').read()", ("blocked: reading '/etc/shadow' is not allowed",)),
        "network": ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
                    ("blocked: importing socket is not allowed",)),
        "detached child": ("import subprocess\nsubprocess.Popen(['sleep', '100'], start_new_session=True)",
                           ("blocked: importing _posixsubprocess is not allowed", "blocked: subprocess.Popen is not allowed")),
        "os.system": ("import os\nos.system('touch /tmp/prime-sandbox-pwned')", ("blocked: os.system is not allowed",)),
        "kill the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", ("blocked: os.kill is not allowed",)),
        "kill everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)", ("blocked: os.kill is not allowed",)),
        "raise limits": ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))",
                         ("blocked: resource.setrlimit is not allowed",)),
        "unbounded recursion": ("def f(n):\n    return f(n + 1)\nf(0)", ("recursion limit",)),
        "ctypes crash": ("import ctypes\nctypes.string_at(0)", ("blocked: importing ctypes is not allowed",)),
        "ctypes via importlib": ("import importlib\nimportlib.import_module('_ctypes')",
                                 ("blocked: importing _ctypes is not allowed",)),
        "interpreter crash": ("import faulthandler\nfaulthandler._sigsegv()", ("crashed (SIGSEGV)",)),
        "sleep past the timeout": ("import time\ntime.sleep(60)", ("timeout",)),
    }


def test_hostile_programs_are_contained(canary, tmp_path):
    programs = hostile(canary)
    outcomes = {name: run_python(program, [], timeout_s=3.0).reason for name, (program, _) in programs.items()}
    wrong = {name: reason for name, reason in outcomes.items() if reason not in programs[name][1]}
    assert not wrong, wrong
    assert canary.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]
    assert not Path("/tmp/prime-sandbox-pwned").exists()
    assert sandbox_processes() == []


def test_environment_is_not_inherited(monkeypatch):
    monkeypatch.setenv("PRIME_TEST_SECRET", "hunter2")
    result = run_python("import os\nprint(sorted(os.environ))", [])
    assert result.reason == "ok"
    assert "PRIME_TEST_SECRET" not in result.stdout and "hunter2" not in result.stdout


def test_files_inside_the_sandbox_work_and_vanish():
    result = run_python("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())", [])
    assert (result.reason, result.stdout.strip()) == ("ok", "ok")


def test_tests_are_counted_one_by_one():
    result = run_python("def f(x):\n    return x + 1", ["assert f(1) == 2", "assert f(2) == 4", "assert f(0) == 1"])
    assert [r["ok"] for r in result.results] == [True, False, True]
    assert result.results[1]["detail"] == "AssertionError"


def test_a_timeout_keeps_the_tests_that_finished():
    result = run_python("import time", ["assert True", "while True: pass", "assert True"], timeout_s=2.0)
    assert result.reason in ("timeout", "cpu limit")
    assert [r["test"] for r in result.results] == [0]


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop applies only when running as root")
def test_root_runs_drop_to_nobody():
    result = run_python("import os\nprint(os.getuid(), os.getgid())", [])
    assert result.stdout.split() == ["65534", "65534"]

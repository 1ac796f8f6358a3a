"""What runs inside the sandbox (prime.sandbox) next to the model's program: it waits for the
program, loads it, then answers calls from the trusted harness (prime.sandbox.harness) with plain data.

Standard library only; copied into the sandbox as /sandbox/child.py beside plaindata.py.
Nothing here is trusted: the program shares this interpreter and may rewrite any of it. That
is fine, because all it can change is what comes back over the pipe, and what comes back is
checked outside as plain data (prime.sandbox.plaindata), where the tests run.

Protocol (one JSON line each way, plaindata-encoded):
    harness -> child   {"program": source}                       (first, once)
    child -> harness   {"ready": True, "names": [...]}  or  {"ready": False, "error": ..., "message": ...}
    harness -> child   {"id": n, "name": f, "args": [...], "kwargs": {...}}
    child -> harness   {"id": n, "ok": True, "value": v}  or  {"id": n, "ok": False, "error": ..., "message": ...}

The program comes over the pipe, not as a file, so that a container can be started before its
program is known. Every module imported here is CPU that every program pays: so `posix` rather
than `os`, and json's C scanner rather than `json` (which pulls in `re`); what the harness sends
is always plaindata.dumps output, so the scanner needs none of json's error reporting.
"""

import posix
import sys
from _json import make_scanner

sys.path.insert(0, sys.argv[0].rpartition("/")[0])  # -I leaves the script's own directory off sys.path
import plaindata

# the protocol keeps private copies of stdin/stdout; the program's own stdin is empty and its
# stdout goes to stderr, so print() cannot garble the channel by accident
proto_in = open(posix.dup(0), "rb")  # noqa: SIM115 - open for the life of the process
proto_out = open(posix.dup(1), "wb")  # noqa: SIM115
posix.dup2(posix.open("/dev/null", posix.O_RDONLY), 0)
posix.dup2(2, 1)


class _JsonOptions:
    """What json's C scanner reads from its decoder: json.loads's defaults."""

    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


_scan = make_scanner(_JsonOptions())


def receive(line):
    value, _ = _scan(line.decode("utf-8"), 0)
    return plaindata.decode(value)


def send(msg):
    proto_out.write((plaindata.dumps(msg) + "\n").encode())
    proto_out.flush()


def failure(e):
    return {"error": type(e).__name__, "message": str(e)[:300]}


namespace = {"__name__": "solution"}  # not "__main__": a `if __name__ == "__main__":` block stays out of it
try:
    program = receive(proto_in.readline())["program"]
    exec(compile(program, "main.py", "exec"), namespace)  # noqa: S102 - running the program is this child's job
except BaseException as e:  # noqa: BLE001 - whatever the program does, say so and stop
    send({"ready": False, **failure(e)})
    raise SystemExit(0)
send({"ready": True, "names": sorted(n for n, v in list(namespace.items())
                                     if type(n) is str and not n.startswith("__") and callable(v))})

for line in proto_in:
    call_id = None
    try:
        request = receive(line)
        call_id = request["id"]
        value = namespace[request["name"]](*request["args"], **request["kwargs"])
        try:
            send({"id": call_id, "ok": True, "value": value})
        except plaindata.PlainDataError as e:
            send({"id": call_id, "ok": False, "error": "NotPlainData", "message": f"returned {e}"})
    except BaseException as e:  # noqa: BLE001 - the call's failure is the test's verdict
        send({"id": call_id, "ok": False, **failure(e)})

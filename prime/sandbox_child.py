"""What runs inside the sandbox (prime.sandbox) next to the model's program: it loads the
program, then answers calls from the trusted harness (prime.harness) with plain data.

Standard library only; copied into the sandbox as /sandbox/child.py beside plaindata.py.
Nothing here is trusted: the program shares this interpreter and may rewrite any of it. That
is fine, because all it can change is what comes back over the pipe, and what comes back is
checked outside as plain data (prime.plaindata), where the tests run.

Protocol (one JSON line each way, plaindata-encoded):
    child -> harness   {"ready": True, "names": [...]}  or  {"ready": False, "error": ..., "message": ...}
    harness -> child   {"id": n, "name": f, "args": [...], "kwargs": {...}}
    child -> harness   {"id": n, "ok": True, "value": v}  or  {"id": n, "ok": False, "error": ..., "message": ...}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plaindata  # noqa: E402

# the protocol keeps private copies of stdin/stdout; the program's own stdin is empty and its
# stdout goes to stderr, so print() cannot garble the channel by accident
proto_in = os.fdopen(os.dup(0), "rb")
proto_out = os.fdopen(os.dup(1), "wb")
os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
os.dup2(2, 1)


def send(msg):
    proto_out.write((plaindata.dumps(msg) + "\n").encode())
    proto_out.flush()


def failure(e):
    return {"error": type(e).__name__, "message": str(e)[:300]}


namespace = {"__name__": "solution"}  # not "__main__": a `if __name__ == "__main__":` block stays out of it
try:
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        exec(compile(f.read(), "main.py", "exec"), namespace)
except BaseException as e:  # noqa: BLE001 - whatever the program does, say so and stop
    send({"ready": False, **failure(e)})
    raise SystemExit(0)
send({"ready": True, "names": sorted(n for n, v in list(namespace.items())
                                     if type(n) is str and not n.startswith("__") and callable(v))})

for line in proto_in:
    call_id = None
    try:
        request = plaindata.loads(line)
        call_id = request["id"]
        value = namespace[request["name"]](*request["args"], **request["kwargs"])
        try:
            send({"id": call_id, "ok": True, "value": value})
        except plaindata.PlainDataError as e:
            send({"id": call_id, "ok": False, "error": "NotPlainData", "message": f"returned {e}"})
    except BaseException as e:  # noqa: BLE001 - the call's failure is the test's verdict
        send({"id": call_id, "ok": False, **failure(e)})

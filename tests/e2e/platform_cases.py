"""The platform walk a new user takes, on a voxflow server of its own (SQLite, then PostgreSQL
when VOXFLOW_TEST_POSTGRES_URL names a server):

make an account and its token as the administrator, create a flow, a number and a signed
webhook, place an outbound call to a pjsua2 callee, and receive the call's events at a local
recorder that checks every X-Voxflow-Signature; take the recorder down, queue events, kill -9
the server mid-queue, restart it and bring the recorder back: every queued event arrives; try
to read the call with another account's token (404); break request bodies (400s naming the bad
field in the one error shape).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import harness
from events import wait_call_status
from harness import log

SECRET = "e2e-webhook-secret-0123456789"
SPOKEN = "this is the platform walk"


@dataclass
class Context:
    binary: str
    ports: Any
    out: str
    server_class: Any
    api_class: Any
    api_error: Any
    follow_call: Callable
    originate: Callable


class Sink:
    """An HTTP server on a fixed loopback port that records signed webhook deliveries; it can be
    taken down (connections refused) and brought back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict] = []
        self.bad: list[str] = []  # signature problems
        self.changed = threading.Condition()
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.up()

    def _handler(self):
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                problem = verify(self.headers.get("X-Voxflow-Signature", ""), body)
                with sink.changed:
                    if problem:
                        sink.bad.append(problem)
                    else:
                        try:
                            sink.events.append(json.loads(body))
                        except ValueError as e:
                            sink.bad.append(f"not JSON: {e}")
                    sink.changed.notify_all()
                # No keep-alive: once the sink is down, nothing reaches it.
                self.close_connection = True
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

        return Handler

    def up(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            if self.thread is not None:
                self.thread.join(timeout=5)
            self.httpd = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, pred: Callable[[list[dict]], bool], timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: pred(self.events), timeout_s)

    def ids(self) -> set[str]:
        with self.changed:
            return {e.get("id") for e in self.events}


def verify(header: str, body: bytes) -> str:
    """'' when `header` is a valid signature of `body` made now, else what is wrong."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return f"no t= in {header!r}"
    want = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(parts.get("v1", ""), want):
        return f"bad v1 in {header!r}"
    if abs(time.time() - t) > 300:
        return f"stale t={t}"
    return ""


def start_postgres() -> tuple[str | None, str | None, str]:
    """A throwaway PostgreSQL server inside this run's namespace (scripts/pg-test.sh): its URL
    and directory, or None and why not."""
    script = os.path.join(harness.REPO, "scripts", "pg-test.sh")
    try:
        done = subprocess.run(["bash", script, "start"], capture_output=True, text=True,
                              timeout=90)
    except (OSError, subprocess.SubprocessError) as e:
        return None, None, str(e)
    env = dict(line.removeprefix("export ").split("=", 1)
               for line in done.stdout.splitlines() if line.startswith("export "))
    url, data = env.get("VOXFLOW_TEST_POSTGRES_URL"), env.get("VOXFLOW_TEST_POSTGRES_DIR")
    if done.returncode != 0 or not url:
        return None, data, done.stderr[-800:]
    return url, data, ""


def stop_postgres(data: str | None) -> None:
    if data:
        script = os.path.join(harness.REPO, "scripts", "pg-test.sh")
        subprocess.run(["bash", script, "stop", data], capture_output=True, timeout=90)


def run(rep, ctx: Context) -> None:
    walk(rep, ctx, "sqlite", None)
    # PostgreSQL: started here, inside the run's network namespace, so that its loopback is
    # the server's. Required in CI; elsewhere only when the server binaries are installed.
    have_pg = any(os.path.exists(f"/usr/lib/postgresql/{v}/bin/initdb")
                  for v in os.listdir("/usr/lib/postgresql")) \
        if os.path.isdir("/usr/lib/postgresql") else False
    if not have_pg and not os.environ.get("CI"):
        log("platform: no PostgreSQL server installed; the walk ran on SQLite only")
        return
    url, data, why = start_postgres()
    try:
        if rep.check("platform: a throwaway PostgreSQL server for the walk", url is not None,
                     why):
            walk(rep, ctx, "postgres", url)
    finally:
        stop_postgres(data)


def walk(rep, ctx: Context, backend: str, db_url: str | None) -> None:
    name = f"platform-{backend}"
    # Short retry and pause ceilings so that the walk waits seconds, not minutes, for the
    # retries after the restart (the defaults are 60 s and 30 s).
    extra = ["--webhook-max-retry-delay", "3", "--webhook-breaker-pause", "3"]
    if db_url:
        extra += ["--database-url", db_url]
    http_port = ctx.ports.http2
    server = ctx.server_class(ctx.binary, ctx.ports, ctx.out, name=name, http=http_port,
                              sip=ctx.ports.sip2, rtp=ctx.ports.rtp2, extra=extra)
    sink = Sink(ctx.ports.media_port())
    servers = [server]  # the last one is running: steps() restarts it
    try:
        if not rep.check(f"{name}: server ready", server.wait_ready(30), server.log_tail(20)):
            return
        admin = ctx.api_class(http_port)
        steps(rep, ctx, name, servers, admin, sink, extra)
    finally:
        sink.down()
        servers[-1].stop()


def steps(rep, ctx: Context, name: str, servers: list, admin, sink: Sink,
          extra: list[str]) -> None:
    server = servers[0]
    err = ctx.api_error
    account = admin.call("POST", "/v1.0/accounts", {"name": f"e2e {name}"})
    token = account.get("token", "")
    rep.check(f"{name}: POST /v1.0/accounts returns the account with its token",
              bool(account.get("id")) and token.startswith("vf_"), json.dumps(account)[:300])
    user = ctx.api_class(ctx.ports.http2, token=token)
    user.events()  # the account's events from here on, over the WebSocket
    flow = user.call("POST", "/v1.0/flows", {"name": "walk", "actions": [
        {"type": "answer"}, {"type": "talk", "option": {"text": SPOKEN}}, {"type": "hangup"}]})
    number = user.call("POST", "/v1.0/numbers", {"number": "+15550777",
                                                  "call_flow_id": flow["id"]})
    hook = user.call("POST", "/v1.0/webhooks", {"uri": sink.url(), "event_types": ["*"],
                                                 "secret": SECRET})
    rep.check(f"{name}: flow, number and webhook created",
              all(x.get("id") for x in (flow, number, hook)) and "secret" in hook,
              json.dumps([flow.get("id"), number.get("id"), hook.get("status")]))

    # A real outbound call to a pjsua2 callee, and its events, signed.
    port = ctx.ports.sip_port()
    record = os.path.join(ctx.out, f"{name}_callee.wav")
    proc = harness.start_callee(port, "answer", record, rtp_port=ctx.ports.media_port(),
                                timeout=30, log_file=os.path.join(ctx.out, f"{name}.pjsip.log"))
    if not harness.wait_udp_bound(port, 10, proc):
        rep.check(f"{name}: callee listens", False, json.dumps(harness.finish_callee(proc, 5)))
        return
    placed = user.call("POST", "/v1.0/calls", {
        "source": {"type": "tel", "target": "+15550100"},
        "destinations": [{"type": "sip", "target": f"sip:bob@127.0.0.1:{port}"}],
        "flow_id": flow["id"]})
    call_id = placed[0]["id"] if isinstance(placed, list) and placed else None
    rec, seen, why = ctx.follow_call(user, call_id, 30) if call_id else (None, [], "no call")
    res = harness.finish_callee(proc, 40)
    rep.check(f"{name}: the callee answered and was hung up by voxflow",
              res.get("connected") is True and res.get("hung_up_by") == "remote",
              json.dumps(res)[:300])
    # (no call_ringing: the callee answers at once, without a 180)
    want = ["call_created", "call_answered", "activeflow_started", "activeflow_ended",
            "call_hangup"]

    def of_call(events: list[dict]) -> list[str]:
        return [e.get("type") for e in events if e.get("call_id") == call_id]

    got = sink.wait(lambda ev: all(t in of_call(ev) for t in want), 20)
    types = of_call(sink.events)
    rep.check(f"{name}: signed webhooks for the call: {', '.join(want)}", got and not sink.bad,
              f"got {types}; signature problems {sink.bad[:3]}")
    hangups = [e for e in sink.events if e.get("call_id") == call_id
               and e.get("type") == "call_hangup"]
    rep.check(f"{name}: call_hangup carries the record (status, reason, by)",
              len(hangups) == 1 and hangups[0]["data"].get("status") == "hangup"
              and hangups[0]["data"].get("hangup_by") == "local",
              json.dumps(hangups)[:400])
    # Webhook requests go out concurrently, so they may arrive in any order; the WebSocket
    # sends a connection's events in the order they happened.
    streamed = [e.get("type") for e in user.events().of_call(call_id)]
    order = [t for t in streamed if t in ("call_created", "call_answered", "call_hangup")]
    rep.check(f"{name}: call events in order on the WebSocket",
              order == ["call_created", "call_answered", "call_hangup"],
              f"WebSocket {streamed}; webhooks {types}")

    # Another account cannot read the call (404, not 403), nor list it.
    try:
        admin.call("GET", f"/v1.0/calls/{call_id}")
        rep.check(f"{name}: another account's call is 404", False, "got 2xx")
    except err as e:
        body = json.loads(e.body or "{}")
        rep.check(f"{name}: another account's call is 404", e.status == 404
                  and body.get("error", {}).get("code") == "not_found", f"HTTP {e.status} {e.body}")
    listed = admin.call("GET", "/v1.0/calls")
    rep.check(f"{name}: another account's list does not show it",
              all(c.get("id") != call_id for c in listed.get("result", [])), "")

    inject_case(rep, ctx, name, user, admin)

    # The target goes down: events queue (pending, retried), the server is killed mid-queue
    # and restarted, the target comes back: every one arrives.
    sink.down()
    queued = [user.call("POST", f"/v1.0/webhooks/{hook['id']}/test")["event_id"]
              for _ in range(3)]
    log_path = f"/v1.0/webhooks/{hook['id']}/deliveries"
    tried = wait_api(user, log_path, lambda v: sum(
        1 for d in v.get("result", []) if d.get("event_type") == "ping"
        and d.get("status") == "pending" and d.get("attempts", 0) >= 1) == 3, 15)
    rep.check(f"{name}: with the target down, deliveries stay pending and are retried", tried,
              json.dumps(user.call("GET", log_path))[:600])
    server.proc.send_signal(signal.SIGKILL)
    server.stop()
    restarted = ctx.server_class(ctx.binary, ctx.ports, ctx.out, name=name + "-restart",
                                 http=ctx.ports.http2, sip=ctx.ports.sip2, rtp=ctx.ports.rtp2,
                                 extra=extra, data_dir=server.data_dir)
    servers.append(restarted)
    if not rep.check(f"{name}: restarted after kill -9", restarted.wait_ready(30),
                     restarted.log_tail(20)):
        return
    sink.up()
    arrived = sink.wait(lambda ev: set(queued) <= {e.get("id") for e in ev}, 30)
    rep.check(f"{name}: every event queued before the kill arrives after the restart", arrived,
              f"queued {queued}; got {sorted(i for i in sink.ids() if i in queued)}")
    done = wait_api(user, log_path, lambda v: all(
        d.get("status") == "delivered" for d in v.get("result", [])
        if d.get("event_type") == "ping"), 10)
    rep.check(f"{name}: the delivery log shows them delivered after several attempts", done,
              json.dumps(user.call("GET", log_path))[:600])
    call = user.call("GET", f"/v1.0/calls/{call_id}")
    rep.check(f"{name}: the call record survived the kill", call.get("status") == "hangup",
              json.dumps(call)[:300])

    # Broken bodies: 400 with the path of the bad field, in the one error shape.
    bad = [
        ("POST", "/v1.0/flows", b"{", "$"),
        ("POST", "/v1.0/flows", {"actions": [{"type": "answer"}, {"type": "fly"}]},
         "actions[1].type"),
        ("POST", "/v1.0/numbers", {"number": "abc", "call_flow_id": flow["id"]}, "number"),
        ("POST", "/v1.0/calls", {"source": {"type": "tel", "target": "+1"},
                                 "destinations": [{"type": "fax", "target": "x"}],
                                 "flow_id": flow["id"]}, "destinations[0].type"),
        ("POST", "/v1.0/webhooks", {"uri": sink.url(), "event_types": ["nope"]},
         "event_types[0]"),
        ("POST", "/v1.0/accounts", {"name": 3}, None),  # 403 for a non-admin comes first
    ]
    problems = []
    for method, path, body, want_path in bad:
        status, reply = raw(ctx.ports.http2, token, method, path, body)
        error = reply.get("error") if isinstance(reply, dict) else None
        if want_path is None:
            if status != 403 or not isinstance(error, dict):
                problems.append(f"{method} {path}: want 403, got {status} {reply}")
            continue
        if status != 400 or not isinstance(error, dict) or error.get("path") != want_path \
                or not error.get("code") or not error.get("message"):
            problems.append(f"{method} {path} {str(body)[:60]}: want 400 at {want_path}, got "
                            f"{status} {json.dumps(reply)[:200]}")
    rep.check(f"{name}: broken bodies get 400 naming the field", not problems,
              "; ".join(problems))


def inject_case(rep, ctx: Context, name: str, user, admin) -> None:
    """Actions injected into a live call run at once: a call parked in a 30 s sleep says
    goodbye and hangs up as soon as they arrive."""
    port = ctx.ports.sip_port()
    record = os.path.join(ctx.out, f"{name}_inject.wav")
    proc = harness.start_callee(port, "answer", record, rtp_port=ctx.ports.media_port(),
                                timeout=40, log_file=os.path.join(ctx.out, f"{name}.inject.log"))
    if not harness.wait_udp_bound(port, 10, proc):
        rep.check(f"{name}: inject callee listens", False,
                  json.dumps(harness.finish_callee(proc, 5)))
        return
    placed = user.call("POST", "/v1.0/calls", {
        "source": {"type": "tel", "target": "+15550100"},
        "destinations": [{"type": "sip", "target": f"sip:bob@127.0.0.1:{port}"}],
        "actions": [{"type": "answer"}, {"type": "sleep", "option": {"duration": 30000}},
                    {"type": "talk", "option": {"text": "too late"}}]})
    call_id = placed[0]["id"]
    answered = wait_call_status(user, call_id, {"progressing"}, 15)[0] is not None
    body = {"actions": [{"type": "talk", "option": {"text": "goodbye"}}, {"type": "hangup"}]}
    foreign = raw(ctx.ports.http2, admin.token, "POST", f"/v1.0/calls/{call_id}/actions", body)
    started = time.monotonic()
    status, flow = raw(ctx.ports.http2, user.token, "POST", f"/v1.0/calls/{call_id}/actions",
                       body)
    ended = wait_call_status(user, call_id, {"hangup"}, 20)[0] is not None
    took = time.monotonic() - started
    res = harness.finish_callee(proc, 30)
    rep.check(f"{name}: another account cannot inject into the call (404)",
              foreign[0] == 404, f"{foreign}")
    rep.check(f"{name}: actions injected into a live call run at once",
              answered and status == 200 and ended and took < 15
              and res.get("hung_up_by") == "remote",
              f"answered {answered}; HTTP {status} {json.dumps(flow)[:300]}; ended {ended} "
              f"after {took:.1f}s; callee {json.dumps(res)[:200]}")
    late = raw(ctx.ports.http2, user.token, "POST", f"/v1.0/calls/{call_id}/actions", body)
    rep.check(f"{name}: injecting into an ended call is a 409", late[0] == 409, f"{late}")


def raw(port: int, token: str, method: str, path: str, body) -> tuple[int, Any]:
    import urllib.request

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            status, text = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


def wait_api(api, path: str, pred: Callable[[dict], bool], timeout_s: float) -> bool:
    """Read `path` until `pred` holds (bounded): the server's state, observed as a user would."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if pred(api.call("GET", path)):
                return True
        except Exception as e:  # noqa: BLE001
            log(f"GET {path}: {e}")
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.2)

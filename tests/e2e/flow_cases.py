"""The `flows` group of run_e2e.py: the flow actions that reach outside the call (webhook_send,
fetch, fetch_flow, condition_datetime, connect, call, amd, hangup with reference_id) run on
real calls, and checked by what a local HTTP recorder received, what pjsua2 clients heard and
got, and the call records.

Cases (they run in parallel threads; their ok/FAIL/xfail lines are printed in this order at
the end):

  fetch     a pjsua2 caller (pressing "4" at 1 s) calls a flow: answer, variable_set (a value
            with quotes, a backslash and braces), webhook_send (async) to /wf/slow (the
            recorder answers it 4 s late), webhook_send sync to /wf/hook (answered 1.5 s late)
            with a JSON body of ${voipbin.call.source.target}, ${voipbin.call.id} and that
            value, fetch /wf/fetch?from=${voipbin.call.source.target} (the reply: talk "these
            words were fetched over the network", webhook_send sync /wf/after-fetch with
            ${voipbin.call.digits}), fetch_flow of a stored flow (talk "here is a prompt from a
            stored flow"), two condition_datetime (today's UTC month and day: holds; another
            month: fails) reporting with GET webhooks, talk "back in the main flow", hangup.
            Checked: each request (method, Content-Type, JSON body and its values, the fetch
            body {activeflow_id, reference_id = the call id}), their order and timing (the
            async one did not hold the flow, the sync one did), the three prompts heard in
            order, the call record.
  fetch-fail three callers of flows whose fetch gets HTTP 500, 200 with an invalid action, 200
            with a body that is not JSON: voxflow hangs up within 3 s, nothing after the fetch
            is heard, the record says hangup_reason "failed" by local.
  connect   a caller (speaks a sentence at 1 s, presses "7" at 4.5 s) is connected to a pjsua2
            callee (speaks its own sentence at 0.5 s, hangs up 7 s after answering): both hear
            each other, the callee gets the "7" as RFC 4733 and the chosen caller id in From,
            then the flow goes on (webhook of voipbin.connect.result/reason: answered/normal)
            and the caller hears "the other party hung up"; the leg's record is an outgoing call
            ended by the callee.
  connect-fail  connect to a callee answering 486: the flow goes on with unanswered/busy and
            a condition_variable on voipbin.connect.reason picks "the line is busy"; a callee
            that rings (the caller hears ringback: 440+480 Hz) then gives up with 480:
            unanswered/noanswer, "nobody answered the call"; `relay_reason: true` to a 486
            callee: the caller is hung up at once, record reason "busy"; and a flow whose
            `hangup` names the busy leg's call id as `reference_id` ends its call with "busy".
  call      a flow (answer, `call` with inline actions [answer, talk "hello from the chained
            call", sleep 20 s, hangup] to a pjsua2 callee, sleep 8 s, hangup): the callee is called,
            hears the talk, and is hung up by voxflow within 3 s of the parent call's end when
            `chained: true`; with `chained: false` (child sleep 12 s) it outlives the parent.
  activeflow  a flow parked in `block`: GET /v1.0/activeflows/{id} shows it there (live
            variables, executed actions), `continue` naming another action is refused (409),
            naming the block releases it and the caller hears the next prompt; once over the
            stored record says ended/hangup with every executed action in order. A second flow
            sleeping 30 s is ended by `POST .../stop`: the caller gets a BYE within 3 s, the
            record says "stopped", and a second stop is refused (409).
  external  `external_media_start` to a Python RTP endpoint for 7 s, then
            `external_media_stop`: the endpoint gets the caller's audio as 20 ms PCMU RTP (its
            sentence recognised in it) and what it sends back (an espeak-ng sentence) is what
            the caller hears; nothing reaches it after the stop.
  mute      `mute` out, talk, `mute` none, talk: the caller hears only the second sentence.
  early     `call` with `early_execution: true` to a callee that rings and never answers: the
            new call's flow (a webhook_send) runs while it rings; the callee gets no BYE, only
            its own 480 ends the attempt.
  on-complete  a flow with `on_complete_flow_id` runs past its end: the named flow runs next on
            the same call with the variables so far; two activeflows are stored for the call
            (completed, then hangup), the second with voipbin.activeflow.complete_count 1.
  amd       outbound calls (POST /v1.0/calls) running [amd, webhook_send sync of
            voipbin.amd.result/cause, hangup] to pjsua2 callees playing a long voicemail
            greeting (MACHINE) and a short "Hello?" then silence (HUMAN); with
            `machine_handle: hangup` the greeting makes voxflow hang up, reason "amd_machine",
            without running the webhook.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import wave
from dataclasses import dataclass
from typing import Any, Callable

import harness
import media_cases
import rawsip
from events import EventLog, call_of, wait_ended_call
from harness import log
from media_cases import Collect, bind_number, find_call, heard_in, incoming_problems, segments_in

# Prompts voxflow speaks (talk) and sentences the pjsua2 clients say.
FETCHED = "these words were fetched over the network"
STORED = "here is a prompt from a stored flow"
MAIN_BACK = "back in the main flow"
NEVER = "you should never hear these words"
CALLEE_SAID = "the weather is sunny in the valley today"
CALLER_SAID = "i would like to order a large pizza"
HUNG_UP = "the other party hung up"
BUSY = "the line is busy"
NO_ANSWER = "nobody answered the call"
OTHER = "something else happened"
CHAINED = "hello from the chained call"
RELEASED = "the block was released"
EXTERNAL_SAID = "green apples fall from the tall tree"
MUTED = "you can not hear this sentence"
UNMUTED = "now you can hear me again"
FIRST_FLOW = "welcome to the opening message"
SECOND_FLOW = "the second flow runs now"
FLOW_PHRASES = [FETCHED, STORED, MAIN_BACK, NEVER, CALLEE_SAID, CALLER_SAID, HUNG_UP, BUSY,
                NO_ANSWER, OTHER, CHAINED, RELEASED, EXTERNAL_SAID, MUTED, UNMUTED, FIRST_FLOW,
                SECOND_FLOW]
# Said by the amd callees (not in any grammar: voxflow only measures them).
VOICEMAIL = ("Hi, you have reached the voicemail of John Smith. I am not available right now. "
             "Please leave your name, number and a short message after the tone and I will "
             "call you back.")
HELLO = "Hello?"

FETCH_NUMBER = "+15550130"
FETCH_FAIL_NUMBERS = {"http500": "+15550131", "invalid": "+15550132", "not-json": "+15550133"}
CONNECT_NUMBER = "+15550134"
BUSY_NUMBER = "+15550135"
NO_ANSWER_NUMBER = "+15550136"
RELAY_NUMBER = "+15550137"
REFERENCE_NUMBER = "+15550138"
CHAINED_NUMBER = "+15550139"
BLOCK_NUMBER = "+15550141"
STOP_NUMBER = "+15550142"
EXTERNAL_NUMBER = "+15550143"
MUTE_NUMBER = "+15550144"
ON_COMPLETE_NUMBER = "+15550145"
EARLY_NUMBER = "+15550146"
EXTERNAL_FOR_MS = 7000
UNCHAINED_NUMBER = "+15550140"
CONNECT_SOURCE = "+15550177"  # the caller id connect presents to its callee

TRICKY = 'say "hi" \\ {back} ${not a var'  # JSON-escaped by webhook_send (quote, backslash)
SLOW_HOOK_S = 1.5  # /wf/hook answers this late: the sync webhook must hold the flow that long
ASYNC_HOOK_S = 4.0  # /wf/slow answers this late: the async webhook must not hold the flow
CALLER_KEY, CALLER_KEY_AT = "4", 1.0
CONNECT_PLAY_AT, CONNECT_KEY_AT, CALLEE_PLAY_AT, CALLEE_HANGUP_AFTER = 1.0, 4.5, 0.5, 7.0
PARENT_SLEEP_MS = 8000
CASE_DEADLINE_S = 150

AMD_CAUSES = {"MACHINE": {"initial_silence", "long_greeting", "max_words"},
              "HUMAN": {"silence_after_greeting"}}


@dataclass
class Context:
    api: Any
    ports: Any
    out: str
    phrases: list[str]
    follow_call: Callable
    originate: Callable
    all_calls: Callable
    server_log: str


# ---------------------------------------------------------------------------------------------
# The HTTP recorder: every request, and scripted replies


@dataclass
class Seen:
    """One request the recorder got."""

    method: str
    path: str  # with the query
    headers: dict
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def json(self) -> Any:
        """The body as JSON, or raises ValueError."""
        return json.loads(self.body.decode("utf-8"))

    def brief(self) -> dict:
        return {"method": self.method, "path": self.path,
                "content_type": self.headers.get("content-type"),
                "body": self.body.decode("utf-8", errors="replace")[:400]}


class Recorder:
    """An HTTP server on 127.0.0.1:0 that records every request and answers from its routes
    (status, body, delay before answering); other paths get 200 `{}`."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[str, tuple[int, bytes, float]] = {}
        self.changed = threading.Condition()
        self.closing = threading.Event()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                item = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body,
                            time.monotonic())
                with rec.changed:
                    rec.seen.append(item)
                    status, reply, delay = rec.routes.get(item.route, (200, b"{}", 0.0))
                    rec.changed.notify_all()
                if delay:
                    # A deliberately late reply (a fixture); shutdown cuts it short.
                    rec.closing.wait(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any  # noqa: N815

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, status: int = 200, body: Any = None, delay_s: float = 0.0
              ) -> str:
        """Answer `path` with `status` and `body` (JSON-encoded unless bytes); its URL."""
        raw = body if isinstance(body, bytes) else json.dumps(body if body is not None
                                                             else {}).encode()
        with self.changed:
            self.routes[path] = (status, raw, delay_s)
        return self.url(path)

    def requests(self, prefix: str) -> list[Seen]:
        with self.changed:
            return [s for s in self.seen if s.route.startswith(prefix)]

    def wait_for(self, route: str, n: int, timeout_s: float) -> list[Seen]:
        """The requests to `route` once there are n of them (bounded wait on arrivals)."""
        with self.changed:
            self.changed.wait_for(
                lambda: sum(1 for s in self.seen if s.route == route) >= n, timeout_s)
            return [s for s in self.seen if s.route == route]

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Flows


def aid() -> str:
    return str(uuid.uuid4())


def act(kind: str, option: dict | None = None, *, id: str | None = None,  # noqa: A002
        next_id: str | None = None) -> dict:
    a: dict = {"id": id or aid(), "type": kind}
    if option is not None:
        a["option"] = option
    if next_id:
        a["next_id"] = next_id
    return a


def talk(text: str, **kw) -> dict:
    return act("talk", {"text": text, "language": "en-US"}, **kw)


def webhook(url: str, data: dict | None = None, *, sync: bool = True, method: str = "POST",
            **kw) -> dict:
    """webhook_send; `data` is written as JSON text with its ${} left in place."""
    option: dict = {"uri": url, "method": method, "sync": sync}
    if data is not None:
        option["data_type"] = "application/json"
        option["data"] = json.dumps(data)
    return act("webhook_send", option, **kw)


def sip_to(port: int) -> dict:
    return {"type": "sip", "target": f"sip:bob@127.0.0.1:{port}"}


def connect_report(url: str) -> dict:
    return webhook(url, {"result": "${voipbin.connect.result}",
                         "reason": "${voipbin.connect.reason}"})


def date_conditions(rec: Recorder, today: datetime.datetime) -> list[dict]:
    """condition_datetime twice, each reporting its branch with a GET: today's month and day
    (holds), another month (fails)."""
    dt1_no, dt2, dt2_no, done = aid(), aid(), aid(), aid()
    other_month = (today.month + 5) % 12 + 1
    url = rec.url("/wf/dt")
    return [
        act("condition_datetime", {"condition": "==", "month": today.month, "day": today.day,
                                   "false_target_id": dt1_no}),
        webhook(url + "?today=yes", method="GET", next_id=dt2),
        webhook(url + "?today=no", method="GET", id=dt1_no),
        act("condition_datetime", {"condition": "==", "month": other_month,
                                   "false_target_id": dt2_no}, id=dt2),
        webhook(url + "?other=yes", method="GET", next_id=done),
        webhook(url + "?other=no", method="GET", id=dt2_no),
        act("empty", id=done),
    ]


# ---------------------------------------------------------------------------------------------
# Processes and records


def start_callee(ctx: Context, port: int, mode: str, tag: str, *, timeout: float = 40.0,
                 hangup_after: float | None = None, play: str | None = None,
                 play_at: float = 0.0) -> tuple[subprocess.Popen, str]:
    """callee.py on `port` (with --play when given); (process, its recording)."""
    record = os.path.join(ctx.out, f"flows_{tag}_callee.wav")
    cmd = [sys.executable, os.path.join(harness.E2E_DIR, "callee.py"), "--port", str(port),
           "--rtp-port", str(ctx.ports.media_port()), "--mode", mode, "--record", record,
           "--timeout", str(timeout),
           "--log", os.path.join(ctx.out, f"flows_{tag}_callee.pjsip.log")]
    if hangup_after is not None:
        cmd += ["--hangup-after", str(hangup_after)]
    if play:
        cmd += ["--play", play, "--play-at", str(play_at)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, record


def call_number(ctx: Context, number: str, tag: str, *, timeout: float = 40.0, **kw) -> dict:
    """One pjsua2 caller (From user e2e-flows-TAG) to `number`; its JSON result."""
    return harness.run_caller(
        f"sip:{number}@127.0.0.1:{ctx.ports.sip}", ctx.ports.sip_port(),
        os.path.join(ctx.out, f"flows_{tag}_caller.wav"), rtp_port=ctx.ports.media_port(),
        timeout=timeout, from_user=f"e2e-flows-{tag}",
        log_file=os.path.join(ctx.out, f"flows_{tag}_caller.pjsip.log"), **kw)


def find_outgoing(ctx: Context, port: int, timeout_s: float) -> tuple[dict | None, str]:
    """The ended outgoing call to the callee on `port` (bounded)."""
    return wait_ended_call(
        ctx.api, ctx.all_calls,
        lambda c: c.get("direction") == "outgoing"
        and f"127.0.0.1:{port}" in str((c.get("destination") or {}).get("target")),
        f"to 127.0.0.1:{port}", timeout_s)


def outgoing_problems(rec: dict | None, why: str, reason: str, by: str,
                      answered: bool) -> list[str]:
    if rec is None:
        return [why or "no call record"]
    problems = []
    for k, want in (("status", "hangup"), ("direction", "outgoing"), ("hangup_reason", reason),
                    ("hangup_by", by)):
        if rec.get(k) != want:
            problems.append(f"{k}={rec.get(k)!r} (want {want!r})")
    if bool(rec.get("tm_progressing")) != answered:
        problems.append(f"tm_progressing={rec.get('tm_progressing')!r} (answered: {answered})")
    return problems


def log_lines(ctx: Context, *needles: str, limit: int = 6) -> str:
    """Server log lines containing every needle (evidence for a failure)."""
    try:
        with open(ctx.server_log, errors="replace") as f:
            hits = [line.rstrip() for line in f if all(n in line for n in needles)]
    except OSError as e:
        return f"(server log: {e})"
    return "\n".join(hits[-limit:]) or f"(no server log line with {needles})"


def json_body(seen: Seen | None) -> tuple[Any, str]:
    """(the JSON body, "") or (None, why not)."""
    if seen is None:
        return None, "no request"
    try:
        return seen.json(), ""
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"body is not JSON ({e}): {seen.body[:300]!r}"


RINGBACK_BLOCK = 400  # 50 ms at 8 kHz: fine enough to tell 440 Hz from 480 Hz from speech


def ringback_blocks(samples: list[int]) -> list[int]:
    """Start indices of the 50 ms blocks whose energy is mostly 440+480 Hz (ringback)."""
    block = RINGBACK_BLOCK
    found = []
    for i in range(0, len(samples) - block + 1, block):
        chunk = samples[i:i + block]
        energy = sum(x * x for x in chunk)
        if energy < block * 200.0 ** 2:
            continue
        share = sum(2.0 * rawsip._goertzel_power(chunk, f) / (block * energy)
                    for f in (440.0, 480.0))
        if share > 0.8:
            found.append(i)
    return found


def tone_seconds(path: str, start_s: float, end_s: float) -> float:
    """Seconds of ringback between start_s and end_s of an 8 kHz mono WAV."""
    try:
        samples = rawsip.read_wav_8k(path)
    except (OSError, ValueError, wave.Error):
        return 0.0
    hits = [i for i in ringback_blocks(samples) if start_s * 8000 <= i < end_s * 8000]
    return len(hits) * RINGBACK_BLOCK / 8000


def without_ringback(path: str) -> str:
    """A copy of an 8 kHz mono WAV with its ringback blocks silenced (hear.py would otherwise
    take ringback running straight into a prompt for one segment of speech); `path` itself
    when it cannot be read."""
    try:
        samples = rawsip.read_wav_8k(path)
    except (OSError, ValueError, wave.Error):
        return path
    for i in ringback_blocks(samples):
        samples[i:i + RINGBACK_BLOCK] = [0] * RINGBACK_BLOCK
    masked = path[:-4] + ".no-ringback.wav"
    rawsip.write_wav_8k(masked, samples)
    return masked


def describe(segs) -> str:
    return str([(s.start_s, s.end_s, s.hypothesis or s.refused) for s in segs])


# ---------------------------------------------------------------------------------------------
# Cases


def fetch_case(c: Collect, ctx: Context, rec: Recorder, phrases: list[str]) -> None:
    name = "flows fetch"
    rec.route("/wf/slow", delay_s=ASYNC_HOOK_S)
    rec.route("/wf/hook", body={"ok": True}, delay_s=SLOW_HOOK_S)
    rec.route("/wf/fetch", body=[
        talk(FETCHED),
        webhook(rec.url("/wf/after-fetch"), {"digits": "${voipbin.call.digits}"}),
    ])
    stored = ctx.api.call("POST", "/v1.0/flows", {"name": "e2e stored", "actions": [
        act("talk", {"text": STORED, "language": "en-US"})]})
    today = datetime.datetime.now(datetime.timezone.utc)
    bind_number(ctx.api, FETCH_NUMBER, "e2e fetch", [
        act("answer"),
        act("variable_set", {"key": "e2e.tricky", "value": TRICKY}),
        webhook(rec.url("/wf/slow"), {"n": 1}, sync=False),
        webhook(rec.url("/wf/hook"), {"from": "${voipbin.call.source.target}",
                                       "call": "${voipbin.call.id}",
                                       "tricky": "${e2e.tricky}"}),
        act("fetch", {"event_url": rec.url("/wf/fetch?from=${voipbin.call.source.target}"),
                      "event_method": "POST"}),
        act("fetch_flow", {"flow_id": stored["id"]}),
        *date_conditions(rec, today),
        talk(MAIN_BACK),
        act("hangup"),
    ])
    res = call_number(ctx, FETCH_NUMBER, "fetch", digits=f"{CALLER_KEY}@{CALLER_KEY_AT}")
    after = datetime.datetime.now(datetime.timezone.utc)
    log(f"{name}: caller {json.dumps(res)}")
    c.check(f"{name}: call connects, caller presses {CALLER_KEY}, voxflow hangs up",
            res.get("connected") is True and res.get("hung_up_by") == "remote"
            and res.get("digits_sent") == CALLER_KEY and "error" not in res, json.dumps(res))
    call, why = find_call(ctx, ctx.api, "e2e-flows-fetch", 10)
    call_id = (call or {}).get("id")
    seen = rec.requests("/wf/")
    log(f"{name}: recorder got {[s.brief() for s in seen]}")

    def one(route: str) -> tuple[Seen | None, str]:
        hits = [s for s in seen if s.route == route]
        return (hits[0], "") if len(hits) == 1 else (None, f"{len(hits)} requests to {route}")

    hook, why_hook = one("/wf/hook")
    body, why_body = json_body(hook)
    problems = [p for p in (why_hook, why_body) if p]
    if hook:
        if hook.method != "POST":
            problems.append(f"method {hook.method}")
        if hook.headers.get("content-type") != "application/json":
            problems.append(f"Content-Type {hook.headers.get('content-type')!r}")
    if isinstance(body, dict):
        want = {"from": "e2e-flows-fetch", "call": call_id, "tricky": TRICKY}
        if body != want:
            problems.append(f"body {body!r}, want {want!r}")
    elif body is not None:
        problems.append(f"body {body!r} is not an object")
    c.check(f"{name}: webhook_send sync POSTs /wf/hook: valid JSON with the caller "
            "(voipbin.call.source.target), the call id and a JSON-escaped value with quotes "
            "and a backslash", not problems, "; ".join(problems)
            + f"; request {hook.brief() if hook else None}")

    fetch, why_fetch = one("/wf/fetch")
    body, why_body = json_body(fetch)
    problems = [p for p in (why_fetch, why_body) if p]
    if fetch:
        if fetch.method != "POST" or fetch.path != "/wf/fetch?from=e2e-flows-fetch":
            problems.append(f"{fetch.method} {fetch.path} (want POST "
                            "/wf/fetch?from=e2e-flows-fetch)")
        if "json" not in str(fetch.headers.get("content-type")):
            problems.append(f"Content-Type {fetch.headers.get('content-type')!r}")
    if isinstance(body, dict):
        try:
            uuid.UUID(str(body.get("activeflow_id")))
        except ValueError:
            problems.append(f"activeflow_id {body.get('activeflow_id')!r} is not a UUID")
        if set(body) != {"activeflow_id", "reference_id"}:
            problems.append(f"keys {sorted(body)}")
        if not call_id or body.get("reference_id") != call_id:
            problems.append(f"reference_id {body.get('reference_id')!r}, want the call id "
                            f"{call_id!r}")
    elif body is not None:
        problems.append(f"body {body!r} is not an object")
    c.check(f"{name}: fetch POSTs {{activeflow_id, reference_id = the call id}} to its "
            "event_url (${} rendered)", not problems, "; ".join(problems)
            + f"; request {fetch.brief() if fetch else None}")

    after_fetch, why_after = one("/wf/after-fetch")
    body, why_body = json_body(after_fetch)
    problems = [p for p in (why_after, why_body) if p]
    if body is not None and body != {"digits": CALLER_KEY}:
        problems.append(f"body {body!r}, want {{'digits': {CALLER_KEY!r}}}")
    c.check(f"{name}: the fetched webhook_send runs, with the key pressed "
            f"(voipbin.call.digits = {CALLER_KEY!r})", not problems, "; ".join(problems)
            + f"; request {after_fetch.brief() if after_fetch else None}")

    slow, why_slow = one("/wf/slow")
    # The async request races the next one: it is left out of the order.
    order = [s.route for s in seen if s.route not in ("/wf/dt", "/wf/slow")]
    problems = [why_slow] if why_slow else []
    if order != ["/wf/hook", "/wf/fetch", "/wf/after-fetch"]:
        problems.append(f"order {order}")
    if slow and hook and hook.at - slow.at > 1.0:
        problems.append(f"/wf/hook came {hook.at - slow.at:.2f}s after the async /wf/slow "
                        f"(answered after {ASYNC_HOOK_S}s): the async webhook held the flow")
    if hook and fetch and fetch.at - hook.at < SLOW_HOOK_S - 0.1:
        problems.append(f"the fetch came {fetch.at - hook.at:.2f}s after /wf/hook, which "
                        f"answers after {SLOW_HOOK_S}s: the sync webhook did not wait")
    c.check(f"{name}: requests in flow order; the async webhook (answered {ASYNC_HOOK_S}s "
            f"late) does not hold the flow, the sync one (answered {SLOW_HOOK_S}s late) does",
            not problems, "; ".join(problems) + f"; seen {[s.brief() for s in seen]}")

    dt = [s.path for s in seen if s.route == "/wf/dt"]
    want = ["/wf/dt?today=yes", "/wf/dt?other=no"]
    same_day = (today.month, today.day) == (after.month, after.day)
    c.check(f"{name}: condition_datetime (UTC) holds for today's month and day "
            f"({today.month}/{today.day}), fails for another month; GET webhooks report it",
            dt == want or (not same_day and len(dt) == 2),
            f"GET requests {dt}, want {want}; "
            f"{[s.brief() for s in seen if s.route == '/wf/dt']}")

    segs = segments_in(res.get("record") or "", phrases)
    heard = [p for s in segs for p in s.phrases]
    c.check(f"{name}: caller hears the fetched prompt, the stored flow's prompt (fetch_flow), "
            "then 'back in the main flow'", heard == [FETCHED, STORED, MAIN_BACK],
            f"heard {heard}; segments {describe(segs)}")
    problems = incoming_problems(call, why, "normal")
    c.check(f"{name}: call record hangup/normal/local", not problems,
            "; ".join(problems) + f"; record {json.dumps(call)}")


FETCH_FAILURES = {
    # tag: (status, body, what)
    "http500": (500, {"error": "boom"}, "HTTP 500"),
    "invalid": (200, [{"type": "talk", "option": {}}], "an invalid action (talk without text)"),
    "not-json": (200, b"this is not json", "a body that is not JSON"),
}


def fetch_fail_case(c: Collect, ctx: Context, rec: Recorder, phrases: list[str]) -> None:
    results: dict[str, dict] = {}
    for tag, (status, body, _) in FETCH_FAILURES.items():
        url = rec.route(f"/ff/{tag}", status, body)
        bind_number(ctx.api, FETCH_FAIL_NUMBERS[tag], f"e2e fetch {tag}", [
            act("answer"), act("fetch", {"event_url": url}), talk(NEVER), act("hangup")])

    def one(tag: str) -> None:
        results[tag] = call_number(ctx, FETCH_FAIL_NUMBERS[tag], f"fetch-{tag}", timeout=25)

    threads = [threading.Thread(target=one, args=(tag,)) for tag in FETCH_FAILURES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=70)
    for tag, (_, _, what) in FETCH_FAILURES.items():
        name = f"flows fetch-fail {tag}"
        res = results.get(tag, {"error": "no result"})
        log(f"{name}: caller {json.dumps(res)}")
        asked = rec.requests(f"/ff/{tag}")
        heard, segs = heard_in(res.get("record") or "", phrases)
        problems = []
        if not (res.get("connected") is True and res.get("hung_up_by") == "remote"
                and "error" not in res):
            problems.append(f"caller {json.dumps(res)}")
        dur = res.get("call_duration_s")
        if not isinstance(dur, (int, float)) or dur > 3.0:
            problems.append(f"call lasted {dur}s (want voxflow's BYE within 3 s)")
        if len(asked) != 1 or asked[0].method != "POST":
            problems.append(f"fetch requests {[s.brief() for s in asked]}")
        if heard:
            problems.append(f"heard {heard} {segs}")
        c.check(f"{name}: a fetch answered with {what} ends the flow: BYE within 3 s, "
                "nothing after the fetch is heard", not problems, "; ".join(problems))
        call, why = find_call(ctx, ctx.api, f"e2e-flows-fetch-{tag}", 10)
        problems = incoming_problems(call, why, "failed")
        c.check(f"{name}: call record hangup/failed/local", not problems,
                "; ".join(problems) + f"; record {json.dumps(call)}\nserver log:\n"
                + log_lines(ctx, "fetch", f"/ff/{tag}"))


def connect_case(c: Collect, ctx: Context, rec: Recorder, files: dict,
                 phrases: list[str]) -> None:
    name = "flows connect"
    port = ctx.ports.sip_port()
    proc, callee_wav = start_callee(ctx, port, "answer", "connect", timeout=40,
                                    hangup_after=CALLEE_HANGUP_AFTER, play=files["callee"],
                                    play_at=CALLEE_PLAY_AT)
    if not harness.wait_udp_bound(port, 10, proc):
        c.check(f"{name}: callee listens", False, json.dumps(harness.finish_callee(proc, 5)))
        return
    bind_number(ctx.api, CONNECT_NUMBER, "e2e connect", [
        act("answer"),
        act("connect", {"source": {"type": "tel", "target": CONNECT_SOURCE},
                        "destinations": [sip_to(port)]}),
        connect_report(rec.url("/connect/answered")),
        talk(HUNG_UP),
        act("hangup"),
    ])
    res = call_number(ctx, CONNECT_NUMBER, "connect", play=files["caller"],
                      play_at=CONNECT_PLAY_AT, digits=f"7@{CONNECT_KEY_AT}")
    callee = harness.finish_callee(proc, 30)
    log(f"{name}: caller {json.dumps(res)}; callee {json.dumps(callee)}")
    c.check(f"{name}: the callee gets one INVITE from {CONNECT_SOURCE} (connect's source), "
            f"answers, speaks, and hangs up after {CALLEE_HANGUP_AFTER:.0f}s",
            callee.get("got_invite") is True and callee.get("connected") is True
            and callee.get("hung_up_by") == "local" and callee.get("extra_invites") == 0
            and callee.get("play_started_s") is not None
            and CONNECT_SOURCE.lstrip("+") in str(callee.get("invite_from"))
            and "error" not in callee, json.dumps(callee))
    c.check(f"{name}: the caller connects, speaks, presses 7, and voxflow hangs up",
            res.get("connected") is True and res.get("hung_up_by") == "remote"
            and res.get("digits_sent") == "7" and res.get("play_started_s") is not None
            and "error" not in res, json.dumps(res))
    heard, segs = heard_in(callee_wav, phrases)
    c.check(f"{name}: the callee hears the caller's sentence (bridged audio)",
            heard == [CALLER_SAID], f"heard {heard}; segments {segs}")
    events = callee.get("dtmf_events") or []
    c.check(f"{name}: the caller's 7 reaches the callee once, as RFC 4733",
            callee.get("dtmf_received") == "7" and all(e.get("method") == 0 for e in events),
            f"callee received {callee.get('dtmf_received')!r} {events}")
    caller_segs = segments_in(without_ringback(res.get("record") or ""), phrases)
    heard = [p for s in caller_segs for p in s.phrases]
    hung_up_at = next((s.start_s for s in caller_segs if HUNG_UP in s.phrases), None)
    c.check(f"{name}: the caller hears the callee's sentence, then, once the callee hung up "
            f"({CALLEE_HANGUP_AFTER:.0f}s), 'the other party hung up'",
            heard == [CALLEE_SAID, HUNG_UP] and hung_up_at is not None
            and hung_up_at >= CALLEE_HANGUP_AFTER - 0.3,
            f"heard {heard}; prompt at {hung_up_at}s; segments {describe(caller_segs)}")
    reports = rec.wait_for("/connect/answered", 1, 5)
    body, why = json_body(reports[0] if len(reports) == 1 else None)
    c.check(f"{name}: after the bridge voipbin.connect.result/reason are answered/normal",
            body == {"result": "answered", "reason": "normal"},
            f"{why} {body!r}; requests {[s.brief() for s in reports]}")
    leg, why = find_outgoing(ctx, port, 10)
    problems = outgoing_problems(leg, why, "normal", "remote", True)
    c.check(f"{name}: the leg's record: an outgoing call to the callee, answered, "
            "hangup/normal/remote", not problems, "; ".join(problems)
            + f"; record {json.dumps(leg)}")
    call, why = find_call(ctx, ctx.api, "e2e-flows-connect", 10)
    problems = incoming_problems(call, why, "normal")
    c.check(f"{name}: the caller's record hangup/normal/local", not problems,
            "; ".join(problems) + f"; record {json.dumps(call)}")


def connect_fail_flow(rec: Recorder, port: int, route: str, reason: str, said: str
                      ) -> list[dict]:
    """connect, report the variables, then say `said` when the reason is `reason`."""
    other = aid()
    return [
        act("answer"),
        act("connect", {"destinations": [sip_to(port)]}),
        connect_report(rec.url(route)),
        act("condition_variable", {"condition": "==", "variable": "voipbin.connect.reason",
                                   "value_type": "string", "value_string": reason,
                                   "false_target_id": other}),
        talk(said),
        act("hangup"),
        talk(OTHER, id=other),
        act("hangup"),
    ]


def connect_fail_case(c: Collect, ctx: Context, rec: Recorder, phrases: list[str]) -> None:
    ports = {tag: ctx.ports.sip_port() for tag in ("busy", "noanswer", "relay")}
    procs = {
        "busy": start_callee(ctx, ports["busy"], "reject-486", "busy", timeout=30),
        # Rings until its own timeout, then gives up with 480.
        "noanswer": start_callee(ctx, ports["noanswer"], "no-answer", "noanswer", timeout=6),
        "relay": start_callee(ctx, ports["relay"], "reject-486", "relay", timeout=30),
    }
    for tag, (proc, _) in procs.items():
        if not harness.wait_udp_bound(ports[tag], 10, proc):
            c.check(f"flows connect-fail {tag}: callee listens", False,
                    json.dumps(harness.finish_callee(proc, 5)))
            for other, (p, _) in procs.items():
                if other != tag:
                    harness.stop_process(p, 2)
            return
    bind_number(ctx.api, BUSY_NUMBER, "e2e connect busy",
                connect_fail_flow(rec, ports["busy"], "/connect/busy", "busy", BUSY))
    bind_number(ctx.api, NO_ANSWER_NUMBER, "e2e connect noanswer",
                connect_fail_flow(rec, ports["noanswer"], "/connect/noanswer", "noanswer",
                                  NO_ANSWER))
    bind_number(ctx.api, RELAY_NUMBER, "e2e connect relay", [
        act("answer"),
        act("connect", {"destinations": [sip_to(ports["relay"])], "relay_reason": True}),
        talk(NEVER),
        act("hangup"),
    ])
    results: dict[str, dict] = {}
    numbers = {"busy": BUSY_NUMBER, "noanswer": NO_ANSWER_NUMBER, "relay": RELAY_NUMBER}

    def one(tag: str) -> None:
        results[tag] = call_number(ctx, numbers[tag], f"connect-{tag}", timeout=30)

    threads = [threading.Thread(target=one, args=(tag,)) for tag in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=80)
    callees = {tag: harness.finish_callee(proc, 30) for tag, (proc, _) in procs.items()}
    for tag in numbers:
        log(f"flows connect-fail {tag}: caller {json.dumps(results.get(tag))}; callee "
            f"{json.dumps(callees[tag])}")

    # busy and noanswer: the flow goes on.
    for tag, code, reason, said in (("busy", 486, "busy", BUSY),
                                    ("noanswer", 480, "noanswer", NO_ANSWER)):
        name = f"flows connect-fail {tag}"
        callee, res = callees[tag], results.get(tag, {"error": "no result"})
        c.check(f"{name}: the callee gets one INVITE and answers it {code}",
                callee.get("got_invite") is True and callee.get("connected") is False
                and callee.get("last_status_code") == code and callee.get("extra_invites") == 0,
                json.dumps(callee))
        segs = segments_in(without_ringback(res.get("record") or ""), phrases)
        heard = [p for s in segs for p in s.phrases]
        c.check(f"{name}: the flow goes on after connect: condition_variable on "
                f"voipbin.connect.reason == {reason!r} picks {said!r}",
                res.get("connected") is True and res.get("hung_up_by") == "remote"
                and heard == [said], f"heard {heard}; segments {describe(segs)}; caller "
                + json.dumps(res))
        reports = rec.requests(f"/connect/{tag}")
        body, why = json_body(reports[0] if len(reports) == 1 else None)
        c.check(f"{name}: voipbin.connect.result/reason are unanswered/{reason}",
                body == {"result": "unanswered", "reason": reason},
                f"{why} {body!r}; requests {[s.brief() for s in reports]}")
        if tag == "noanswer":
            rang = tone_seconds(res.get("record") or "", 0.0, 2.5)
            c.check(f"{name}: the caller hears ringback (440+480 Hz) while the callee rings",
                    rang >= 1.5, f"{rang:.2f}s of ringback in the first 2.5 s")
        leg, why = find_outgoing(ctx, ports[tag], 10)
        by = "remote"
        problems = outgoing_problems(leg, why, reason, by, False)
        c.check(f"{name}: the leg's record: outgoing, hangup/{reason}/{by}", not problems,
                "; ".join(problems) + f"; record {json.dumps(leg)}")
        if tag == "busy":
            reference_case(c, ctx, (leg or {}).get("id"))

    name = "flows connect-fail relay_reason"
    res, callee = results.get("relay", {"error": "no result"}), callees["relay"]
    heard, segs = heard_in(res.get("record") or "", phrases)
    dur = res.get("call_duration_s")
    c.check(f"{name}: connect with relay_reason to a 486 callee hangs the caller up at once "
            "(nothing after it is heard)",
            callee.get("last_status_code") == 486 and res.get("connected") is True
            and res.get("hung_up_by") == "remote" and isinstance(dur, (int, float))
            and dur < 3.0 and heard == [],
            f"heard {heard} {segs}; caller {json.dumps(res)}; callee {json.dumps(callee)}")
    call, why = find_call(ctx, ctx.api, "e2e-flows-connect-relay", 10)
    problems = incoming_problems(call, why, "busy")
    c.check(f"{name}: the caller's record hangup/busy/local (the leg's reason)", not problems,
            "; ".join(problems) + f"; record {json.dumps(call)}")


def reference_case(c: Collect, ctx: Context, busy_leg: str | None) -> None:
    """`hangup` with reference_id = the busy leg's call id ends a new call with "busy"."""
    name = "flows hangup reference_id"
    if not c.check(f"{name}: a busy call id to refer to", bool(busy_leg), "no busy leg"):
        return
    bind_number(ctx.api, REFERENCE_NUMBER, "e2e hangup reference", [
        act("answer"),
        act("variable_set", {"key": "peer", "value": busy_leg}),
        act("hangup", {"reason": "normal", "reference_id": "${peer}"}),
    ])
    res = call_number(ctx, REFERENCE_NUMBER, "reference", timeout=20)
    call, why = find_call(ctx, ctx.api, "e2e-flows-reference", 10)
    problems = incoming_problems(call, why, "busy")
    if not (res.get("connected") is True and res.get("hung_up_by") == "remote"):
        problems.append(f"caller {json.dumps(res)}")
    c.check(f"{name}: hangup {{reference_id: the busy leg}} ends the call with the leg's "
            "reason: record hangup/busy/local", not problems,
            "; ".join(problems) + f"; record {json.dumps(call)}")


def call_case(c: Collect, ctx: Context, phrases: list[str]) -> None:
    ports = {"chained": ctx.ports.sip_port(), "unchained": ctx.ports.sip_port()}
    procs = {tag: start_callee(ctx, ports[tag], "answer", f"call-{tag}", timeout=45)
             for tag in ports}
    for tag, (proc, _) in procs.items():
        if not harness.wait_udp_bound(ports[tag], 10, proc):
            c.check(f"flows call {tag}: callee listens", False,
                    json.dumps(harness.finish_callee(proc, 5)))
            for other, (p, _) in procs.items():
                if other != tag:
                    harness.stop_process(p, 2)
            return
    child_sleep = {"chained": 20000, "unchained": 12000}
    numbers = {"chained": CHAINED_NUMBER, "unchained": UNCHAINED_NUMBER}
    for tag, number in numbers.items():
        bind_number(ctx.api, number, f"e2e call {tag}", [
            act("answer"),
            act("call", {"source": {"type": "tel", "target": number},
                         "destinations": [sip_to(ports[tag])],
                         "actions": [act("answer"), talk(CHAINED),
                                     act("sleep", {"duration": child_sleep[tag]}),
                                     act("hangup")],
                         "chained": tag == "chained"}),
            act("sleep", {"duration": PARENT_SLEEP_MS}),
            act("hangup"),
        ])
    results: dict[str, dict] = {}

    def one(tag: str) -> None:
        results[tag] = call_number(ctx, numbers[tag], f"call-{tag}", timeout=30)

    threads = [threading.Thread(target=one, args=(tag,)) for tag in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=80)
    callees = {tag: harness.finish_callee(proc, 40) for tag, (proc, _) in procs.items()}
    for tag in numbers:
        name = f"flows call {tag}"
        res, callee = results.get(tag, {"error": "no result"}), callees[tag]
        log(f"{name}: caller {json.dumps(res)}; callee {json.dumps(callee)}")
        dur = res.get("call_duration_s")
        c.check(f"{name}: the parent call lasts its flow ({PARENT_SLEEP_MS // 1000}s) and "
                "voxflow hangs up", res.get("connected") is True
                and res.get("hung_up_by") == "remote" and isinstance(dur, (int, float))
                and PARENT_SLEEP_MS / 1000 - 0.5 <= dur <= PARENT_SLEEP_MS / 1000 + 3,
                json.dumps(res))
        heard, segs = heard_in(procs[tag][1], phrases)
        c.check(f"{name}: the callee is called, answers and hears the inline talk",
                callee.get("got_invite") is True and callee.get("connected") is True
                and heard == [CHAINED], f"heard {heard} {segs}; callee {json.dumps(callee)}")
        parent, why_p = find_call(ctx, ctx.api, f"e2e-flows-call-{tag}", 10)
        child, why_c = find_outgoing(ctx, ports[tag], 25 if tag == "unchained" else 10)
        gap = media_cases.seconds_between((parent or {}).get("tm_hangup"),
                                          (child or {}).get("tm_hangup"))
        problems = outgoing_problems(child, why_c, (child or {}).get("hangup_reason"),
                                     "local", True)
        problems += incoming_problems(parent, why_p, "normal")
        cdur = callee.get("call_duration_s")
        if not (callee.get("hung_up_by") == "remote" and callee.get("saw_bye") is True):
            problems.append(f"callee not hung up by voxflow: {json.dumps(callee)}")
        if tag == "chained":
            if gap is None or not -0.5 <= gap <= 3.0:
                problems.append(f"child ended {gap}s after the parent (want within 3 s)")
            what = ("chained: true: voxflow hangs the callee up within 3 s of the parent's "
                    "end")
        else:
            want = child_sleep[tag] / 1000
            if gap is None or gap < 2.0:
                problems.append(f"child ended {gap}s after the parent (want it to live on)")
            if not isinstance(cdur, (int, float)) or cdur < want:
                problems.append(f"callee's call lasted {cdur}s (want >= {want}s)")
            what = ("chained: false: the callee's call outlives the parent and ends with its "
                    f"own flow ({want:.0f}s sleep)")
        c.check(f"{name}: {what}; records (child outgoing, by local)", not problems,
                "; ".join(problems) + f"; parent {json.dumps(parent)}; child {json.dumps(child)}")


def amd_case(c: Collect, ctx: Context, rec: Recorder, files: dict) -> None:
    # tag: (greeting, machine_handle, expected result)
    variants = {"machine": (files["voicemail"], "continue", "MACHINE"),
                "human": (files["hello"], "continue", "HUMAN"),
                "machine-hangup": (files["voicemail"], "hangup", "MACHINE")}
    ports = {tag: ctx.ports.sip_port() for tag in variants}
    procs = {tag: start_callee(ctx, ports[tag], "answer", f"amd-{tag}", timeout=30,
                               play=greeting, play_at=0.2)
             for tag, (greeting, _, _) in variants.items()}
    calls: dict[str, str | None] = {}
    problems_at: dict[str, str] = {}
    for tag, (_, handle, _) in variants.items():
        if not harness.wait_udp_bound(ports[tag], 10, procs[tag][0]):
            problems_at[tag] = "callee does not listen"
            calls[tag] = None
            continue
        calls[tag], problems_at[tag] = ctx.originate(
            ctx.api, f"sip:bob@127.0.0.1:{ports[tag]}",
            [act("amd", {"machine_handle": handle}),
             webhook(rec.url(f"/amd/{tag}"), {"result": "${voipbin.amd.result}",
                                              "cause": "${voipbin.amd.cause}"}),
             act("hangup")])
    records = {tag: ctx.follow_call(ctx.api, cid, 30) if cid else (None, [], "not placed")
               for tag, cid in calls.items()}
    callees = {tag: harness.finish_callee(proc, 30) for tag, (proc, _) in procs.items()}
    for tag, (_, handle, want) in variants.items():
        name = f"flows amd {tag}"
        callee = callees[tag]
        record, seen, why = records[tag]
        log(f"{name}: callee {json.dumps(callee)}; statuses {seen}; record {json.dumps(record)}")
        reports = rec.requests(f"/amd/{tag}")
        if handle == "continue":
            body, why_body = json_body(reports[0] if len(reports) == 1 else None)
            ok = (isinstance(body, dict) and body.get("result") == want
                  and body.get("cause") in AMD_CAUSES[want])
            c.check(f"{name}: amd on a callee saying "
                    + ("a long voicemail greeting" if want == "MACHINE" else "'Hello?' then "
                       "nothing") + f" gives voipbin.amd.result {want} (cause one of "
                    f"{sorted(AMD_CAUSES[want])})", ok,
                    f"{why_body} {body!r}; requests {[s.brief() for s in reports]}; "
                    f"placing {problems_at[tag]}; callee {json.dumps(callee)}")
            problems = [] if record else [why]
            if record and (record.get("hangup_reason"), record.get("hangup_by")) != (
                    "normal", "local"):
                problems.append(f"hangup {record.get('hangup_reason')}/"
                                f"{record.get('hangup_by')}")
            c.check(f"{name}: the callee answered, voxflow hung up after the webhook; record "
                    "hangup/normal/local", not problems and callee.get("connected") is True
                    and callee.get("hung_up_by") == "remote",
                    "; ".join(problems) + f"; record {json.dumps(record)}; callee "
                    + json.dumps(callee))
        else:
            problems = [] if record else [why]
            if record and (record.get("hangup_reason"), record.get("hangup_by")) != (
                    "amd_machine", "local"):
                problems.append(f"hangup {record.get('hangup_reason')}/"
                                f"{record.get('hangup_by')} (want amd_machine/local)")
            if reports:
                problems.append("the flow went on after the hangup: "
                                f"{[s.brief() for s in reports]}")
            if not (callee.get("connected") is True and callee.get("hung_up_by") == "remote"):
                problems.append(f"callee {json.dumps(callee)}")
            c.check(f"{name}: machine_handle hangup: voxflow hangs up on the voicemail "
                    "greeting, record hangup/amd_machine/local, nothing after the amd runs",
                    not problems, "; ".join(problems) + f"; record {json.dumps(record)}"
                    + "\nserver log:\n" + log_lines(ctx, "call ended", "local"))


# ---------------------------------------------------------------------------------------------


def make_sentences(out: str) -> dict[str, str]:
    """espeak-ng 8 kHz WAVs of what the pjsua2 clients say."""
    where = os.path.join(out, "flows")
    os.makedirs(where, exist_ok=True)
    files = {}
    for key, text in (("caller", CALLER_SAID), ("callee", CALLEE_SAID),
                      ("voicemail", VOICEMAIL), ("hello", HELLO), ("external", EXTERNAL_SAID)):
        _, files[key] = harness.synthesise(text, where, key)
    return files


def api_status(fn, *a) -> tuple[int | None, Any]:
    """(HTTP status, body) of an API call; the status of an ApiError when it failed."""
    try:
        return 200, fn(*a)
    except Exception as e:  # noqa: BLE001 (run_e2e's ApiError carries .status)
        return getattr(e, "status", None), str(e)


def live_activeflow(ctx: Context, from_user: str, timeout_s: float) -> tuple[dict | None, str]:
    """The activeflow of the live call from `from_user`, once its `activeflow_started` event
    came (bounded)."""
    events = ctx.api.events()
    deadline = time.monotonic() + timeout_s
    created, why = events.wait(lambda e: e.get("type") == "call_created" and (
        call_of(e).get("source") or {}).get("target") == from_user, timeout_s)
    if created is None:
        return None, f"no call from {from_user}: {why}"
    started, why = events.wait(
        lambda e: e.get("type") == "activeflow_started"
        and (e.get("data") or {}).get("reference_id") == created.get("call_id"),
        max(0.0, deadline - time.monotonic()))
    if started is None:
        return None, f"call {created.get('call_id')}, no activeflow for it: {why}"
    status, view = api_status(ctx.api.call, "GET", f"/v1.0/activeflows/{started['data']['id']}")
    return (view, "") if status == 200 and isinstance(view, dict) else (None, f"{status} {view}")


def wait_activeflow(ctx: Context, af_id: str, pred, timeout_s: float) -> dict | None:
    """The activeflow once `pred(view)` holds (bounded), read again after each of its events
    (`activeflow:<id>`, moves included); the last view read."""
    deadline = time.monotonic() + timeout_s
    events = EventLog(ctx.api.base, str(ctx.api.token), (f"activeflow:{af_id}",))
    try:
        while True:
            seen = events.mark()  # before reading: an event from now on means read again
            _, view = api_status(ctx.api.call, "GET", f"/v1.0/activeflows/{af_id}")
            if isinstance(view, dict) and pred(view):
                return view
            event, _ = events.wait(lambda e: True, max(0.0, deadline - time.monotonic()),
                                   after=seen)
            if event is None:
                return view if isinstance(view, dict) else None
    finally:
        events.close()


def activeflow_case(c: Collect, ctx: Context, phrases: list[str]) -> None:
    bind_number(ctx.api, BLOCK_NUMBER, "e2e block", [
        act("answer"), act("variable_set", {"key": "stage", "value": "parked"}),
        act("block", id="blk"), talk(RELEASED), act("hangup")])
    bind_number(ctx.api, STOP_NUMBER, "e2e stop", [
        act("answer"), act("sleep", {"duration": 30000}), talk(NEVER), act("hangup")])
    results: dict[str, dict] = {}

    def one(tag: str, number: str) -> None:
        results[tag] = call_number(ctx, number, tag, timeout=30)

    threads = [threading.Thread(target=one, args=("block", BLOCK_NUMBER)),
               threading.Thread(target=one, args=("stop", STOP_NUMBER))]
    for t in threads:
        t.start()

    # block + continue
    name = "flows activeflow block"
    af, why = live_activeflow(ctx, "e2e-flows-block", 15)
    problems = [why] if af is None else []
    if af is not None:
        view = wait_activeflow(ctx, af["id"], lambda v: v.get("current_action_id") == "blk", 10)
        if not view or view.get("current_action_id") != "blk" or view.get("status") != "running":
            problems.append(f"not parked in the block: {json.dumps(view)[:600]}")
        elif (view.get("variables") or {}).get("stage") != "parked":
            problems.append(f"live variables {view.get('variables')}")
        status, body = api_status(ctx.api.call, "POST", f"/v1.0/activeflows/{af['id']}/continue",
                                  {"current_action_id": "not-the-block"})
        if status != 409:
            problems.append(f"continue naming another action: HTTP {status} {str(body)[:200]}")
        status, body = api_status(ctx.api.call, "POST", f"/v1.0/activeflows/{af['id']}/continue",
                                  {"current_action_id": "blk"})
        if status != 200:
            problems.append(f"continue: HTTP {status} {str(body)[:200]}")
    c.check(f"{name}: GET shows the flow parked in the block; a stale continue is refused (409), "
            "the right one releases it", not problems, "; ".join(problems))
    threads[0].join(timeout=40)
    res = results.get("block", {"error": "no result"})
    heard, segs = heard_in(res.get("record") or "", phrases)
    c.check(f"{name}: the caller hears the prompt after the block, then voxflow hangs up",
            heard == [RELEASED] and res.get("hung_up_by") == "remote",
            f"heard {heard} {segs}; caller {json.dumps(res)}")
    if af is not None:
        view = wait_activeflow(ctx, af["id"], lambda v: v.get("status") == "ended", 10) or {}
        types = [e.get("type") for e in view.get("executed_actions") or []]
        want = ["answer", "variable_set", "block", "talk", "hangup"]
        ok = (view.get("end_reason") == "hangup" and types == want
              and all(e.get("tm_execute") for e in view.get("executed_actions") or []))
        c.check(f"{name}: the stored activeflow says ended/hangup with every action in order",
                ok, json.dumps(view)[:800])

    # stop
    name = "flows activeflow stop"
    af, why = live_activeflow(ctx, "e2e-flows-stop", 15)
    problems = [why] if af is None else []
    stopped_at = None
    if af is not None:
        wait_activeflow(ctx, af["id"], lambda v: (v.get("current_action_id") or "") != ""
                        and "sleep" in [e.get("type") for e in v.get("executed_actions") or []], 10)
        stopped_at = time.monotonic()
        status, body = api_status(ctx.api.call, "POST", f"/v1.0/activeflows/{af['id']}/stop")
        if status != 200:
            problems.append(f"stop: HTTP {status} {str(body)[:200]}")
    threads[1].join(timeout=40)
    res = results.get("stop", {"error": "no result"})
    ended = res.get("call_duration_s")
    if res.get("hung_up_by") != "remote":
        problems.append(f"caller {json.dumps(res)}")
    if stopped_at is not None and isinstance(ended, (int, float)) and ended > 25:
        problems.append(f"call lasted {ended}s: the stop did not end it")
    c.check(f"{name}: POST stop ends the flow and the call", not problems, "; ".join(problems))
    if af is not None:
        view = wait_activeflow(ctx, af["id"], lambda v: v.get("status") == "ended", 10) or {}
        status, _ = api_status(ctx.api.call, "POST", f"/v1.0/activeflows/{af['id']}/stop")
        c.check(f"{name}: the record says stopped; a second stop is refused (409)",
                view.get("end_reason") == "stopped" and status == 409,
                f"second stop HTTP {status}; {json.dumps(view)[:600]}")


class RtpEndpoint:
    """A UDP RTP peer on 127.0.0.1:0 for external media: records the PCMU it receives and,
    once the first packet came, sends `reply` (8 kHz samples) back as 20 ms PCMU packets to
    where it came from (paced on absolute deadlines, a real-time stream)."""

    def __init__(self, reply: list[int], out_wav: str) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.out_wav = out_wav
        self.received: list[tuple[float, int, int]] = []  # (arrival, payload type, length)
        self.audio: list[int] = []
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        peer = None
        next_send = None
        seq, ts, pos = 1, 0, 0
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                data, addr = self.sock.recvfrom(2048)
                if len(data) >= 12:
                    self.received.append((time.monotonic(), data[1] & 0x7F, len(data) - 12))
                    if data[1] & 0x7F == 0:
                        self.audio += rawsip.ulaw_decode(data[12:])
                    if peer is None:
                        peer, next_send = addr, time.monotonic()
            except OSError:
                pass
            while peer is not None and pos < len(self.reply) and time.monotonic() >= next_send:
                chunk = self.reply[pos:pos + 160]
                chunk += [0] * (160 - len(chunk))
                header = bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") \
                    + (0x1234ABCD).to_bytes(4, "big")
                self.sock.sendto(header + rawsip.ulaw_encode(chunk), peer)
                seq, ts, pos = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF, pos + 160
                self.sent += 1
                next_send += 0.02
            if peer is not None and pos < len(self.reply):
                self.sock.settimeout(max(0.001, next_send - time.monotonic()))
            else:
                self.sock.settimeout(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        rawsip.write_wav_8k(self.out_wav, self.audio)


def external_case(c: Collect, ctx: Context, files: dict, phrases: list[str]) -> None:
    reply = [0] * 8000 + rawsip.read_wav_8k(files["external"])  # 1 s of silence first
    ep = RtpEndpoint(reply, os.path.join(ctx.out, "flows_external_endpoint.wav"))
    try:
        bind_number(ctx.api, EXTERNAL_NUMBER, "e2e external media", [
            act("answer"),
            act("external_media_start", {"external_host": f"127.0.0.1:{ep.port}",
                                         "format": "ulaw"}),
            act("sleep", {"duration": EXTERNAL_FOR_MS}),
            act("external_media_stop"),
            act("sleep", {"duration": 1500}),
            act("hangup")])
        res = call_number(ctx, EXTERNAL_NUMBER, "external", timeout=30,
                          play=files["caller"], play_at=1.0)
    finally:
        ep.close()
    name = "flows external media"
    log(f"{name}: caller {json.dumps(res)}; endpoint got {len(ep.received)} packets, sent "
        f"{ep.sent}")
    pcmu = [r for r in ep.received if r[1] == 0 and r[2] == 160]
    span = (ep.received[-1][0] - ep.received[0][0]) if ep.received else 0.0
    c.check(f"{name}: the endpoint gets the call's audio as 20 ms PCMU RTP for the "
            f"{EXTERNAL_FOR_MS / 1000:.0f} s until external_media_stop, then nothing",
            len(pcmu) >= 0.8 * EXTERNAL_FOR_MS / 20 and len(pcmu) == len(ep.received)
            and span <= EXTERNAL_FOR_MS / 1000 + 1.0,
            f"{len(ep.received)} packets ({len(pcmu)} PCMU of 160 bytes) over {span:.2f}s")
    heard, segs = heard_in(ep.out_wav, phrases)
    c.check(f"{name}: the caller's sentence is in what the endpoint received",
            CALLER_SAID in heard, f"heard {heard} {segs}")
    heard, segs = heard_in(res.get("record") or "", phrases)
    c.check(f"{name}: the caller hears what the endpoint sends back",
            EXTERNAL_SAID in heard and res.get("connected") is True,
            f"heard {heard} {segs}; caller {json.dumps(res)}")


def mute_case(c: Collect, ctx: Context, phrases: list[str]) -> None:
    bind_number(ctx.api, MUTE_NUMBER, "e2e mute", [
        act("answer"), act("mute", {"direction": "out"}), talk(MUTED),
        act("mute", {"direction": "none"}), talk(UNMUTED), act("hangup")])
    res = call_number(ctx, MUTE_NUMBER, "mute", timeout=30)
    heard, segs = heard_in(res.get("record") or "", phrases)
    c.check("flows mute: with mute out the caller hears nothing of the first sentence, then "
            "the second one after unmuting", heard == [UNMUTED] and res.get("hung_up_by") == "remote",
            f"heard {heard} {segs}; caller {json.dumps(res)}")


def early_case(c: Collect, ctx: Context, rec: Recorder) -> None:
    port = ctx.ports.sip_port()
    proc, _ = start_callee(ctx, port, "no-answer", "early", timeout=6)
    if not harness.wait_udp_bound(port, 10, proc):
        c.check("flows call early_execution: callee listens", False,
                json.dumps(harness.finish_callee(proc, 5)))
        return
    url = rec.route("/early/ringing")
    bind_number(ctx.api, EARLY_NUMBER, "e2e early execution", [
        act("answer"),
        act("call", {"destinations": [sip_to(port)], "early_execution": True,
                     "actions": [webhook(url, {"call": "${voipbin.call.id}"}), act("answer"),
                                 act("hangup")]}),
        act("sleep", {"duration": 3000}),
        act("hangup")])
    res = call_number(ctx, EARLY_NUMBER, "early", timeout=20)
    seen = rec.wait_for("/early/ringing", 1, 10)
    callee = harness.finish_callee(proc, 20)
    log(f"flows call early_execution: caller {json.dumps(res)}; callee {json.dumps(callee)}")
    c.check("flows call early_execution: the new call's flow runs while it rings (its "
            "webhook arrives) though the callee never answers",
            len(seen) == 1 and callee.get("got_invite") is True
            and callee.get("connected") is False,
            f"requests {[x.brief() for x in seen]}; callee {json.dumps(callee)}")


def on_complete_case(c: Collect, ctx: Context, phrases: list[str]) -> None:
    # (The pause keeps the two prompts apart for hear.py, which splits speech on silence.)
    second = ctx.api.call("POST", "/v1.0/flows", {"name": "e2e second", "actions": [
        act("sleep", {"duration": 1000}), talk(SECOND_FLOW), act("hangup")]})
    first = ctx.api.call("POST", "/v1.0/flows", {
        "name": "e2e first", "on_complete_flow_id": second["id"], "actions": [
            act("answer"), act("variable_set", {"key": "carried", "value": "yes"}),
            talk(FIRST_FLOW)]})
    ctx.api.call("POST", "/v1.0/numbers", {"number": ON_COMPLETE_NUMBER,
                                           "call_flow_id": first["id"]})
    res = call_number(ctx, ON_COMPLETE_NUMBER, "on-complete", timeout=30)
    heard, segs = heard_in(res.get("record") or "", phrases)
    name = "flows on_complete_flow_id"
    c.check(f"{name}: the caller hears the first flow, then the flow it names, then voxflow "
            "hangs up", heard == [FIRST_FLOW, SECOND_FLOW] and res.get("hung_up_by") == "remote",
            f"heard {heard} {segs}; caller {json.dumps(res)}")
    call, why = find_call(ctx, ctx.api, "e2e-flows-on-complete", 10)
    runs = []
    if call is not None:
        flows = ctx.api.call("GET", "/v1.0/activeflows?page_size=100").get("result", [])
        runs = sorted((a for a in flows if a.get("reference_id") == call.get("id")),
                      key=lambda a: a.get("tm_create") or "")
    ok = (len(runs) == 2
          and [r.get("flow_id") for r in runs] == [first["id"], second["id"]]
          and [r.get("end_reason") for r in runs] == ["completed", "hangup"]
          and (runs[1].get("variables") or {}).get("carried") == "yes"
          and (runs[1].get("variables") or {}).get("voipbin.activeflow.complete_count") == "1")
    c.check(f"{name}: two activeflows for the call (first completed, second hangup), "
            "variables carried over", ok, f"{why} {json.dumps(runs)[:1200]}")


def run(rep, ctx: Context) -> None:
    """Set up (sentences, the HTTP recorder), run the cases in parallel, report in order."""
    started = time.monotonic()
    phrases = list(ctx.phrases) + FLOW_PHRASES
    try:
        files = make_sentences(ctx.out)
    except (OSError, subprocess.SubprocessError) as e:
        rep.check("flows: sentences made (espeak-ng, sox)", False, str(e))
        return
    rec = Recorder()
    try:
        cases = [
            ("fetch", fetch_case, (rec, phrases)),
            ("fetch-fail", fetch_fail_case, (rec, phrases)),
            ("connect", connect_case, (rec, files, phrases)),
            ("connect-fail", connect_fail_case, (rec, phrases)),
            ("call", call_case, (phrases,)),
            ("amd", amd_case, (rec, files)),
            ("activeflow", activeflow_case, (phrases,)),
            ("external", external_case, (files, phrases)),
            ("mute", mute_case, (phrases,)),
            ("on-complete", on_complete_case, (phrases,)),
            ("early", early_case, (rec,)),
        ]
        media_cases.run_parallel(rep, "flows", cases, ctx, CASE_DEADLINE_S)
    finally:
        rec.close()
        log(f"flows group took {time.monotonic() - started:.0f}s")

#!/usr/bin/env python3
"""The end-to-end test of voxflow with real SIP clients.

Run after `cargo build --release` and `scripts/install-test-deps.sh`:

    python3 tests/e2e/run_e2e.py [--binary target/release/voxflow] [--out DIR]

It re-executes itself with the repo's venv python (pjsua2, pocketsphinx) and, as root, inside a
fresh network namespace (`unshare -n`, loopback up) so the standard ports are free; otherwise it
uses ports above 62000. It starts `voxflow serve` on a fresh data directory, waits for the
"voxflow ready" line, configures an IVR flow and numbers over the REST API, then:

  - calls the IVR with pjsua2 (caller.py) three times: no digit, digit 1, digit 2; checks that
    the caller heard the menu and then the right prompt (hear.py: pocketsphinx with a closed
    grammar), that voxflow hung up, and that the call record says so;
  - runs the SIPp scenarios of sipp/: CANCEL -> 487, no common codec -> 488, unknown
    number -> 404, OPTIONS -> 200, broken CSeq -> 400, unknown method -> 501, BYE outside a
    dialog -> 481;
  - places outbound calls (POST /v1.0/calls) to a pjsua2 callee (callee.py: answer, ring then
    answer, 486, 603, no answer with ring_timeout 3, answer then API hangup) and to SIPp UAS
    scenarios (sipp/uas_*.xml: answer, 486, no answer); checks what the callee saw (ACK, BYE,
    CANCEL; the sentence spoken, via hear.py) and the call record (statuses in order, hangup
    reason and side);
  - runs the media cases (media_cases.py): play of WAV/MP3/OGG URLs and the audio cache, echo,
    recording and its file, digits_send (RFC 4733 and in-band), DTMF as SIP INFO, RFC 4733
    without marker from a foreign SSRC and in-band tones, and the RTP timeout (on a second,
    short-lived server);
  - sends hostile traffic (hostile.py: ~300 malformed UDP datagrams, 60 TCP connections,
    half-open INVITEs, wrong-password REGISTERs) during a SIPp OPTIONS flood, then checks
    that voxflow still answers OPTIONS over UDP and TCP, /health, and ends the half-open calls.

Prints ok/FAIL per case and a last line "N passed, M failed"; exits non-zero on any failure.
Only the voxflow process it started is stopped (SIGTERM, SIGKILL after 10 s). Artifacts
(server log, recordings, SIPp traces) stay in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from events import EventLog, call_of, is_hangup  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402
from harness import Report, log  # noqa: E402

TOKEN = "e2e-token"
IVR_NUMBER = "+15550100"
RINGING_NUMBER = "+15550101"  # a flow that does not answer: the CANCEL case
UNKNOWN_NUMBER = "+15550199"

MENU = "welcome to voxflow press one for sales or two for support"
SALES = "you chose sales"
SUPPORT = "you chose support"
NO_CHOICE = "no choice was made"
OUTBOUND = "this is an outbound test call"
PHRASES = [MENU, SALES, SUPPORT, NO_CHOICE, OUTBOUND]

READY_TIMEOUT_S = 30
CALL_RECORD_TIMEOUT_S = 10


class Ports:
    """The fixed ports of the run: standard ones in a namespace, high ones outside."""

    def __init__(self, isolated: bool):
        if isolated:
            self.http, self.sip, self.rtp = 18080, 5060, "30000-30999"
            self.next_sip, self.next_media = 5070, 40000
            # A second, short-lived server (the media group's RTP timeout case).
            self.http2, self.sip2, self.rtp2 = 18081, 5062, "31000-31099"
        else:
            self.http, self.sip, self.rtp = 62080, 62060, "63000-63499"
            self.next_sip, self.next_media = 62200, 63600
            self.http2, self.sip2, self.rtp2 = 62081, 62062, "62900-62999"
        self.lock = threading.Lock()  # the media group allocates from several threads

    def sip_port(self) -> int:
        with self.lock:
            p = self.next_sip
            self.next_sip += 1
            return p

    def media_port(self) -> int:
        with self.lock:
            p = self.next_media
            self.next_media += 10
            return p


# ---------------------------------------------------------------------------------------------
# voxflow process


class Server:
    """One `voxflow serve` process, its log, and its readiness."""

    def __init__(self, binary: str, ports: Ports, out: str, *, name: str = "voxflow",
                 http: int | None = None, sip: int | None = None, rtp: str | None = None,
                 extra: list[str] | None = None, data_dir: str | None = None):
        # fresh: `out` is new for every run; `data_dir` restarts on an existing one
        if data_dir is None:
            self.data_dir = os.path.join(out, "data" if name == "voxflow" else f"{name}-data")
            os.makedirs(self.data_dir)
        else:
            self.data_dir = data_dir
        self.log_path = os.path.join(out, f"{name}.log")
        self.ready = threading.Event()
        cmd = [binary, "serve",
               "--http-listen", f"127.0.0.1:{http or ports.http}",
               "--sip-listen", f"127.0.0.1:{sip or ports.sip}",
               "--rtp-ports", rtp or ports.rtp,
               "--data-dir", self.data_dir,
               "--bootstrap-token", TOKEN,
               # the prompt, fetch and webhook servers of the cases are on loopback
               "--allow-private-urls"] + (extra or [])
        self.binary = binary
        log("starting: " + " ".join(cmd))
        self.log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self.log_file.write(line)
            self.log_file.flush()
            if "voxflow ready" in line:
                self.ready.set()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.wait(timeout=0.1):
                return True
            if self.proc.poll() is not None:
                return self.ready.is_set()
        return self.ready.is_set()

    def stop(self) -> int | None:
        code = harness.stop_process(self.proc, 10.0)
        self.reader.join(timeout=5)
        self.log_file.close()
        return code

    def log_tail(self, n: int = 80) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------------------------
# REST API


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Api:
    def __init__(self, port: int, token: str | None = TOKEN):
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        # Never use a proxy: everything is on loopback.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._events: EventLog | None = None
        self._events_lock = threading.Lock()

    def events(self) -> EventLog:
        """The account's events over the WebSocket, subscribed on first use and kept: call it
        early (before the calls it should see) to have every event."""
        with self._events_lock:
            if self._events is None or self._events.closed:
                self._events = EventLog(self.base, str(self.token))
            return self._events

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(req, timeout=10) as resp:
                text = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode("utf-8", errors="replace")) from None
        return json.loads(text) if text.strip() else {}

    def calls(self) -> list[dict]:
        res = self.call("GET", "/v1.0/calls")
        if not isinstance(res, dict) or not isinstance(res.get("result"), list):
            raise ValueError(f"GET /v1.0/calls: want {{'result': [...]}}, got {str(res)[:200]}")
        return [c for c in res["result"] if isinstance(c, dict)]

    def get_call(self, call_id: str) -> dict:
        res = self.call("GET", f"/v1.0/calls/{call_id}")
        if not isinstance(res, dict):
            raise ValueError(f"GET /v1.0/calls/{call_id}: want an object, got {str(res)[:200]}")
        return res


def ivr_actions() -> list[dict]:
    """answer, menu, one digit within 6 s, branch on it; each branch speaks and hangs up."""
    ids = {k: str(uuid.uuid4()) for k in
           ("answer", "menu", "digits", "branch", "sales", "sales_end", "support",
            "support_end", "none", "none_end")}

    def talk(key: str, text: str) -> dict:
        return {"id": ids[key], "type": "talk", "option": {"text": text, "language": "en-US"}}

    return [
        {"id": ids["answer"], "type": "answer"},
        talk("menu", MENU),
        {"id": ids["digits"], "type": "digits_receive", "option": {"duration": 6000, "length": 1}},
        {"id": ids["branch"], "type": "branch",
         "option": {"default_target_id": ids["none"],
                    "target_ids": {"1": ids["sales"], "2": ids["support"]}}},
        talk("sales", SALES),
        {"id": ids["sales_end"], "type": "hangup"},
        talk("support", SUPPORT),
        {"id": ids["support_end"], "type": "hangup"},
        talk("none", NO_CHOICE),
        {"id": ids["none_end"], "type": "hangup"},
    ]


def ringing_actions() -> list[dict]:
    """A flow that leaves an incoming call ringing (never answers) for 20 s."""
    return [{"type": "sleep", "option": {"duration": 20000}}, {"type": "hangup"}]


# ---------------------------------------------------------------------------------------------
# Cases


def wait_call_record(api: Api, before: set[str], timeout_s: float) -> tuple[dict | None, str]:
    """The one new call since `before`, once its `call_hangup` event came (bounded wait)."""
    event, why = api.events().wait(
        lambda e: is_hangup(e) and e.get("call_id") not in before, timeout_s)
    if event is None:
        return None, f"no new call hung up: {why}"
    try:
        new = [c for c in api.calls() if c.get("id") not in before]
        call = api.get_call(str(event["call_id"]))
    except (ApiError, OSError, ValueError) as e:
        return None, f"reading the call records: {e}"
    if len(new) > 1:
        return None, f"{len(new)} new calls: {new}"
    return call, ""


def check_call_record(call: dict) -> list[str]:
    problems = []

    def want(field: str, ok: bool) -> None:
        if not ok:
            problems.append(f"{field}={call.get(field)!r}")

    want("id", bool(call.get("id")))
    want("status", call.get("status") == "hangup")
    want("direction", call.get("direction") == "incoming")
    src, dst = call.get("source") or {}, call.get("destination") or {}
    want("source", src.get("type") in ("tel", "sip") and bool(src.get("target")))
    want("destination", dst.get("type") in ("tel", "sip")
         and IVR_NUMBER.lstrip("+") in str(dst.get("target", "")))
    want("hangup_reason", call.get("hangup_reason") == "normal")
    want("hangup_by", call.get("hangup_by") == "local")
    want("tm_create", bool(call.get("tm_create")))
    want("tm_hangup", bool(call.get("tm_hangup")))
    return problems


def ivr_case(rep: Report, api: Api, ports: Ports, out: str, name: str, digits: str,
             expect: str, sip_port: int) -> dict:
    import hear

    before = set()
    try:
        before = {c.get("id") for c in api.calls()}
    except (ApiError, OSError, ValueError) as e:
        log(f"GET /v1.0/calls before {name}: {e}")
    record = os.path.join(out, f"ivr_{name}.wav")
    caller_port = ports.sip_port()
    res = harness.run_caller(
        f"sip:{IVR_NUMBER}@127.0.0.1:{sip_port}", caller_port, record,
        rtp_port=ports.media_port(), digits=digits, timeout=40,
        log_file=os.path.join(out, f"ivr_{name}.pjsip.log"))
    log(f"caller {name}: {json.dumps(res)}")
    rep.check(f"ivr {name}: call connects and voxflow hangs up", res.get("connected") is True
              and res.get("hung_up_by") == "remote" and res.get("last_status_code") == 200
              and res.get("digits_sent", "") == "".join(d.split("@")[0] for d in digits.split(",") if d),
              json.dumps(res))
    segments = []
    if os.path.exists(record):
        try:
            segments = hear.hear_segments(record, PHRASES)
        except Exception as e:  # noqa: BLE001 (report any recogniser failure as the case failing)
            log(f"hear {record}: {e}")
    heard = [p for s in segments for p in s.phrases]
    rep.check(f"ivr {name}: caller hears the menu then {expect!r}", heard == [MENU, expect],
              f"heard {heard}; segments "
              f"{[(s.start_s, s.end_s, s.hypothesis or s.refused) for s in segments]}")
    # A call that never connected is given less time to show up: keeps a dead run short.
    call, why = wait_call_record(api, before, CALL_RECORD_TIMEOUT_S if res.get("connected") else 3)
    problems = check_call_record(call) if call else [why]
    rep.check(f"ivr {name}: call record (incoming, hangup by local, normal)", not problems,
              "; ".join(problems) + (f"; record {json.dumps(call)}" if call else ""))
    menu_end = next((s.end_s for s in segments if s.phrases[:1] == [MENU]), None)
    return {"menu_end_s": menu_end}


SIPP_CASES = [
    # scenario, number, what
    ("cancel.xml", RINGING_NUMBER, "CANCEL while ringing -> 200 + 487"),
    ("no_common_codec.xml", IVR_NUMBER, "G.722-only offer -> 488"),
    ("unknown_number.xml", UNKNOWN_NUMBER, "unknown number -> 404"),
    ("options.xml", IVR_NUMBER, "OPTIONS -> 200"),
    ("malformed.xml", IVR_NUMBER, "broken CSeq -> 400"),
    ("unknown_method.xml", IVR_NUMBER, "method FOO -> 501"),
    ("bye_unknown_dialog.xml", IVR_NUMBER, "BYE outside a dialog -> 481"),
]


def sipp_cases(rep: Report, ports: Ports, out: str) -> None:
    for scenario, number, what in SIPP_CASES:
        run = harness.run_sipp(
            scenario, remote=f"127.0.0.1:{ports.sip}", service=number,
            local_port=ports.sip_port(), media_port=ports.media_port(), out_dir=out,
            name=f"sipp_{scenario[:-4]}", global_timeout_s=20, recv_timeout_ms=5000,
            wall_timeout_s=40)
        detail = f"sipp exit {run.returncode}\n{run.tail(15)}"
        if run.returncode != 0 and reason_mentions_cseq(run.message_log):
            detail = ("a response's reason phrase contains 'CSeq': SIPp 3.6 looks for the CSeq "
                      "header by searching 'CSeq' anywhere in the message, so it cannot match "
                      "that response; use a reason phrase without it\n" + detail)
        rep.check(f"sipp {scenario[:-4]}: {what}", run.returncode == 0, detail)


def reason_mentions_cseq(message_log: str) -> bool:
    try:
        with open(message_log, errors="replace") as f:
            return any(line.startswith("SIP/2.0 ") and "CSeq" in line for line in f)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Outbound calls: voxflow dials a pjsua2 callee (callee.py) or a SIPp UAS (sipp/uas_*.xml)

OUTBOUND_SOURCE = {"type": "tel", "target": IVR_NUMBER}
# Statuses a call record may pass through, in order; a record must never go backwards.
STATUS_ORDER = ["dialing", "ringing", "progressing", "hangup"]


def outbound_actions() -> list[dict]:
    return [{"type": "talk", "option": {"text": OUTBOUND, "language": "en-US"}},
            {"type": "hangup"}]


def originate(api: Api, target: str, actions: list[dict], ring_timeout: int | None = None
              ) -> tuple[str | None, str]:
    """POST /v1.0/calls to one sip destination: (call id, problem or "")."""
    body = {"source": OUTBOUND_SOURCE, "destinations": [{"type": "sip", "target": target}],
            "actions": actions}
    if ring_timeout is not None:
        body["ring_timeout"] = ring_timeout
    try:
        res = api.call("POST", "/v1.0/calls", body)
    except (ApiError, OSError, ValueError) as e:
        return None, f"POST /v1.0/calls: {e}"
    if not (isinstance(res, list) and len(res) == 1 and isinstance(res[0], dict)
            and res[0].get("id")):
        return None, f"POST /v1.0/calls: want a list of one call record, got {str(res)[:300]}"
    rec = res[0]
    problems = []
    if rec.get("status") != "dialing":
        problems.append(f"status={rec.get('status')!r} (want 'dialing')")
    if rec.get("direction") != "outgoing":
        problems.append(f"direction={rec.get('direction')!r} (want 'outgoing')")
    return str(rec["id"]), "; ".join(problems)


def follow_call(api: Api, call_id: str, timeout_s: float, proc=None) -> tuple[dict | None, list[str], str]:
    """Wait (bounded) for the call's `call_hangup` event: (record, statuses seen, why). The
    statuses are those its events showed, then the record's.

    `proc` (the peer process) ending early does not stop the wait: voxflow may still be
    finishing the call; the deadline bounds it.
    """
    events = api.events()
    try:
        rec = api.get_call(call_id)  # after subscribing: a hangup is in the record or an event
    except (ApiError, OSError, ValueError) as e:
        return None, [], f"GET /v1.0/calls/{call_id}: {e}"
    why = ""
    if rec.get("status") != "hangup":
        event, why = events.wait(lambda e: is_hangup(e) and e.get("call_id") == call_id,
                                 timeout_s)
        if event is not None:
            try:
                rec = api.get_call(call_id)
            except (ApiError, OSError, ValueError) as e:
                event, why = None, f"GET /v1.0/calls/{call_id}: {e}"
        if event is None:
            rec = None
    seen: list[str] = []
    statuses = [str(call_of(e).get("status")) for e in events.of_call(call_id)
                if str(e.get("type")).startswith("call_")]
    for st in statuses + ([str(rec.get("status"))] if rec else []):
        if not seen or seen[-1] != st:
            seen.append(st)
    return rec, seen, f"no call_hangup event: {why}" if rec is None else ""


def statuses_in_order(seen: list[str]) -> bool:
    idx = [STATUS_ORDER.index(s) if s in STATUS_ORDER else -1 for s in seen]
    return -1 not in idx and idx == sorted(idx)


def record_problems(rec: dict | None, why: str, reason: str, by: str, *,
                    answered: bool | None = None, ringing: bool | None = None) -> list[str]:
    if rec is None:
        return [why or "no final call record"]
    problems = []

    def want(name: str, ok: bool) -> None:
        if not ok:
            problems.append(f"{name}={rec.get(name)!r}")

    want("status", rec.get("status") == "hangup")
    want("direction", rec.get("direction") == "outgoing")
    want("hangup_reason", rec.get("hangup_reason") == reason)
    want("hangup_by", rec.get("hangup_by") == by)
    want("tm_hangup", bool(rec.get("tm_hangup")))
    dst = rec.get("destination") or {}
    want("destination", dst.get("type") == "sip" and "127.0.0.1" in str(dst.get("target")))
    if answered is not None:
        want("tm_progressing", bool(rec.get("tm_progressing")) == answered)
    if ringing is not None:
        want("tm_ringing", bool(rec.get("tm_ringing")) == ringing)
    return problems


# mode, ring_timeout, expected (hangup_reason, hangup_by), answered, ringing (tm_ringing set)
PJSUA_OUTBOUND = [
    ("answer", None, ("normal", "local"), True, None),
    ("ring-answer", None, ("normal", "local"), True, True),
    ("reject-486", None, ("busy", "remote"), False, None),
    ("reject-603", None, ("busy", "remote"), False, None),
    ("no-answer", 3, ("noanswer", "local"), False, True),
]


def outbound_pjsua_case(rep: Report, api: Api, ports: Ports, out: str, mode: str,
                        ring_timeout: int | None, expect: tuple[str, str], answered: bool,
                        ringing: bool | None) -> None:
    import hear

    name = f"outbound pjsua2 {mode}"
    port = ports.sip_port()
    record = os.path.join(out, f"outbound_{mode}.wav")
    proc = harness.start_callee(port, mode, record, rtp_port=ports.media_port(), timeout=30,
                                log_file=os.path.join(out, f"outbound_{mode}.pjsip.log"))
    if not harness.wait_udp_bound(port, 10, proc):
        res = harness.finish_callee(proc, 5)
        rep.check(f"{name}: callee listens", False, json.dumps(res))
        return
    started = time.monotonic()
    call_id, problem = originate(api, f"sip:bob@127.0.0.1:{port}", outbound_actions(),
                                 ring_timeout)
    if call_id is None:
        harness.stop_process(proc, 2)
        rep.check(f"{name}: POST /v1.0/calls", False, problem)
        return
    rec, seen, why = follow_call(api, call_id, 30)
    elapsed = time.monotonic() - started
    res = harness.finish_callee(proc, 40)
    log(f"{name}: callee {json.dumps(res)}; statuses {seen}; record {json.dumps(rec)}")
    # The callee's view of the call.
    if mode in ("answer", "ring-answer"):
        ok = (res.get("got_invite") is True and res.get("connected") is True
              and res.get("hung_up_by") == "remote" and res.get("saw_bye") is True
              and res.get("extra_invites") == 0 and "error" not in res)
        rep.check(f"{name}: callee answered, voxflow sent BYE", ok, json.dumps(res))
        segments = []
        try:
            segments = hear.hear_segments(record, PHRASES)
        except Exception as e:  # noqa: BLE001
            log(f"hear {record}: {e}")
        heard = [p for s in segments for p in s.phrases]
        rep.check(f"{name}: callee hears {OUTBOUND!r}", heard == [OUTBOUND],
                  f"heard {heard}; segments "
                  f"{[(s.start_s, s.end_s, s.hypothesis or s.refused) for s in segments]}")
    elif mode.startswith("reject-"):
        code = int(mode.split("-")[1])
        ok = (res.get("got_invite") is True and res.get("connected") is False
              and res.get("last_status_code") == code and res.get("extra_invites") == 0
              and "error" not in res)
        rep.check(f"{name}: callee got one INVITE and rejected it {code}", ok, json.dumps(res))
    else:  # no-answer
        took = res.get("invite_to_end_s")
        ok = (res.get("got_invite") is True and res.get("connected") is False
              and res.get("saw_cancel") is True and res.get("hung_up_by") == "remote"
              and res.get("last_status_code") == 487 and isinstance(took, (int, float))
              and ring_timeout is not None and ring_timeout - 0.5 <= took <= ring_timeout + 3
              and "error" not in res)
        rep.check(f"{name}: callee saw a CANCEL after ~{ring_timeout}s of ringing", ok,
                  json.dumps(res))
    problems = record_problems(rec, why, *expect, answered=answered, ringing=ringing)
    if problem:
        problems.append("at creation: " + problem)
    if not statuses_in_order(seen):
        problems.append(f"statuses out of order: {seen}")
    if mode == "ring-answer" and "ringing" not in seen:
        problems.append(f"'ringing' never seen in its events: {seen}")
    if answered and "progressing" not in seen:
        problems.append(f"'progressing' never seen in its events: {seen}")
    rep.check(f"{name}: call record hangup/{expect[0]}/{expect[1]}", not problems,
              "; ".join(problems) + f"; statuses {seen}; {elapsed:.1f}s; record {json.dumps(rec)}")


def outbound_api_hangup_case(rep: Report, api: Api, ports: Ports, out: str) -> None:
    """An answered call whose flow waits is hung up over the API: the callee gets a BYE."""
    name = "outbound pjsua2 api-hangup"
    port = ports.sip_port()
    record = os.path.join(out, "outbound_api_hangup.wav")
    proc = harness.start_callee(port, "answer", record, rtp_port=ports.media_port(), timeout=30,
                                log_file=os.path.join(out, "outbound_api_hangup.pjsip.log"))
    if not harness.wait_udp_bound(port, 10, proc):
        rep.check(f"{name}: callee listens", False, json.dumps(harness.finish_callee(proc, 5)))
        return
    call_id, problem = originate(api, f"sip:bob@127.0.0.1:{port}",
                                 [{"type": "sleep", "option": {"duration": 20000}},
                                  {"type": "hangup"}])
    if call_id is None:
        harness.stop_process(proc, 2)
        rep.check(f"{name}: POST /v1.0/calls", False, problem)
        return
    # Wait (bounded) for the answer, then hang up over the API.
    answered, why = api.events().wait(
        lambda e: e.get("call_id") == call_id and e.get("type") in ("call_answered", "call_hangup"),
        10)
    status = call_of(answered).get("status") if answered else why
    hung = None
    try:
        hung = api.call("POST", f"/v1.0/calls/{call_id}/hangup")
    except (ApiError, OSError, ValueError) as e:
        problem = (problem + "; " if problem else "") + f"POST hangup: {e}"
    asked_at = time.monotonic()
    rec, seen, why = follow_call(api, call_id, 10)
    res = harness.finish_callee(proc, 40)
    log(f"{name}: callee {json.dumps(res)}; statuses {seen}; record {json.dumps(rec)}")
    ok = (status == "progressing" and res.get("connected") is True
          and res.get("hung_up_by") == "remote" and res.get("saw_bye") is True
          and 0 < res.get("call_duration_s", 0) < 10)
    rep.check(f"{name}: POST /calls/{{id}}/hangup sends the callee a BYE at once", ok,
              f"status before hangup {status!r}; hangup answered {str(hung)[:200]}; "
              f"callee {json.dumps(res)}")
    problems = record_problems(rec, why, "normal", "local", answered=True)
    if problem:
        problems.append(problem)
    rep.check(f"{name}: call record hangup/normal/local", not problems,
              "; ".join(problems) + f"; statuses {seen}; "
              f"{time.monotonic() - asked_at:.1f}s after the request; record {json.dumps(rec)}")


# scenario, ring_timeout, expected (hangup_reason, hangup_by), answered
SIPP_OUTBOUND = [
    ("uas_answer.xml", None, ("normal", "local"), True),
    ("uas_busy.xml", None, ("busy", "remote"), False),
    ("uas_noanswer.xml", 3, ("noanswer", "local"), False),
]


def outbound_sipp_case(rep: Report, api: Api, ports: Ports, out: str, scenario: str,
                       ring_timeout: int | None, expect: tuple[str, str], answered: bool) -> None:
    stem = scenario[:-4]
    name = f"outbound sipp {stem}"
    port = ports.sip_port()
    proc, run = harness.start_sipp(scenario, local_port=port, media_port=ports.media_port(),
                                   out_dir=out, name=f"sipp_out_{stem}", global_timeout_s=30,
                                   recv_timeout_ms=10000)
    if not harness.wait_udp_bound(port, 10, proc):
        harness.wait_sipp(proc, run, 5)
        rep.check(f"{name}: SIPp UAS listens", False, f"sipp exit {run.returncode}\n{run.tail(15)}")
        return
    call_id, problem = originate(api, f"sip:bob@127.0.0.1:{port}", outbound_actions(),
                                 ring_timeout)
    if call_id is None:
        harness.stop_process(proc, 2)
        rep.check(f"{name}: POST /v1.0/calls", False, problem)
        return
    rec, seen, why = follow_call(api, call_id, 30)
    harness.wait_sipp(proc, run, 40)
    rep.check(f"{name}: SIPp UAS scenario completes", run.returncode == 0,
              f"sipp exit {run.returncode}\n{run.tail(30)}")
    problems = record_problems(rec, why, *expect, answered=answered)
    if problem:
        problems.append("at creation: " + problem)
    if not statuses_in_order(seen):
        problems.append(f"statuses out of order: {seen}")
    rep.check(f"{name}: call record hangup/{expect[0]}/{expect[1]}", not problems,
              "; ".join(problems) + f"; statuses {seen}; record {json.dumps(rec)}")


# ---------------------------------------------------------------------------------------------
# Hostile traffic

DEVICE_USER, DEVICE_PASSWORD = "e2e-alice", "correct horse battery"
HALF_OPEN_END_TIMEOUT_S = 50  # 64*T1 (32 s) without ACK, then the call must end


def all_calls(api: Api) -> list[dict]:
    """Every call record (follows pages; bounded)."""
    calls: list[dict] = []
    token = None
    for _ in range(50):
        path = "/v1.0/calls?page_size=100" + (f"&page_token={token}" if token else "")
        res = api.call("GET", path)
        calls += [c for c in res.get("result", []) if isinstance(c, dict)]
        token = res.get("next_page_token")
        if not token:
            break
    return calls


def http_health(port: int) -> tuple[int | None, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status, resp.read(200).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return None, str(e)


def metrics_case(rep: Report, api: Api, ports: Ports) -> None:
    """After the ivr calls: /metrics counted them, their flow runs and their RTP, and /healthz is
    ok; both answer without the token."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str) -> tuple[int, str]:
        try:
            with opener.open(f"http://127.0.0.1:{ports.http}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", errors="replace")

    def scrape() -> dict[str, float]:
        status, text = get("/metrics")
        if status != 200:
            raise ValueError(f"GET /metrics: HTTP {status}: {text[:200]}")
        return {series: float(value) for series, value in
                (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")}

    ended = [c for c in all_calls(api)
             if c.get("direction") == "incoming" and c.get("status") == "hangup"]
    normal = sum(1 for c in ended if c.get("hangup_reason") == "normal")
    # The tasks finish just after their records are hung up: wait (bounded) for none active.
    deadline = time.monotonic() + 10
    samples = scrape()
    while samples.get('voxflow_calls_active{direction="incoming"}') != 0 \
            and time.monotonic() < deadline:
        time.sleep(0.1)  # polling a condition with a deadline, not waiting on luck
        samples = scrape()

    def total(prefix: str) -> float:
        return sum(v for k, v in samples.items() if k.startswith(prefix))

    detail = {k: v for k, v in samples.items()
              if k.startswith(("voxflow_calls", "voxflow_rtp", "voxflow_flow"))
              and (v != 0 or "active" in k)}
    rep.check("metrics: no call active once the ivr calls are over",
              samples.get('voxflow_calls_active{direction="incoming"}') == 0, json.dumps(detail))
    rep.check("metrics: calls_total counts the ivr calls by hangup reason",
              normal > 0
              and samples.get('voxflow_calls_total{direction="incoming",result="normal"}') == normal
              and total('voxflow_calls_total{direction="incoming"') == len(ended),
              f"{len(ended)} incoming calls ended, {normal} normal; {json.dumps(detail)}")
    runs_hangup = samples.get('voxflow_flow_runs_total{end_reason="hangup"}', 0)
    rep.check("metrics: a flow run per call, ended by its hangup action, actions counted",
              total("voxflow_flow_runs_total") == len(ended) and runs_hangup > 0
              and samples.get("voxflow_flow_actions_total", 0) >= 6 * runs_hangup,
              json.dumps(detail))
    rep.check("metrics: RTP packets sent and received",
              samples.get("voxflow_rtp_packets_sent_total", 0) > 0
              and samples.get("voxflow_rtp_packets_received_total", 0) > 0, json.dumps(detail))
    status, text = get("/healthz")
    try:
        health = json.loads(text)
    except ValueError:
        health = {}
    checks = health.get("checks") or {}
    rep.check("healthz: 200 ok (store, media workers, SIP)",
              status == 200 and health.get("status") == "ok" and checks.get("store") == "ok"
              and checks.get("media_workers", 0) >= 1
              and checks.get("sip") == f"127.0.0.1:{ports.sip}", f"HTTP {status}: {text[:300]}")


def hostile_case(rep: Report, api: Api, server: Server, ports: Ports, out: str) -> None:
    import hostile

    host, port = "127.0.0.1", ports.sip
    try:
        api.call("POST", "/v1.0/devices", {"username": DEVICE_USER, "password": DEVICE_PASSWORD})
        dev_ok, dev_detail = True, ""
    except (ApiError, OSError, ValueError) as e:
        dev_ok, dev_detail = False, str(e)
    before = {c.get("id") for c in all_calls(api)}
    # The probe's digest code works: the right password registers (Expires 0: no binding).
    reg_before = hostile.register(host, port, DEVICE_USER, DEVICE_PASSWORD)
    rep.check("hostile: setup (device, a REGISTER with the right password gets 401 then 200)",
              dev_ok and reg_before == (401, 200), f"{dev_detail} register {reg_before}")

    # Legitimate traffic during the attack: a SIPp OPTIONS flood from 127.0.0.1.
    flood_calls, flood_rate = 1200, 200
    flood, flood_run = harness.start_sipp(
        "options.xml", remote=f"{host}:{port}", service=IVR_NUMBER, local_port=ports.sip_port(),
        out_dir=out, name="sipp_flood_options", calls=flood_calls, global_timeout_s=30,
        recv_timeout_ms=5000,
        extra=["-r", str(flood_rate), "-rp", "1000", "-l", "400", "-max_non_invite_retrans", "8"])
    attack = hostile.Hostile(host, port, IVR_NUMBER, budget_s=7.5)
    try:
        stats = attack.run(device=(DEVICE_USER, DEVICE_PASSWORD))
        log(f"hostile traffic: {json.dumps(stats.as_dict())}")
        with open(os.path.join(out, "hostile_stats.json"), "w") as f:
            json.dump(stats.as_dict(), f, indent=1)
        rep.check(f"hostile: {stats.sent_udp} UDP messages, {stats.tcp_connections} TCP "
                  f"connections in {stats.duration_s:.1f}s (want >= 300, < 10 s)",
                  stats.sent_udp >= 300 and stats.duration_s < 10,
                  json.dumps(stats.as_dict()))
        rep.check(f"hostile: voxflow responds to every half-open INVITE (retransmitted like "
                  f"a UAC; {stats.half_open_invites} answered)",
                  stats.half_open_invites >= 20 and stats.half_open_unanswered == 0,
                  json.dumps(stats.as_dict()))
        harness.wait_sipp(flood, flood_run, 40)
        rep.check(f"hostile: SIPp OPTIONS flood during the attack ({flood_calls} at "
                  f"{flood_rate}/s) all answered 200", flood_run.returncode == 0,
                  f"sipp exit {flood_run.returncode}\n{flood_run.tail(10)}\n"
                  + sipp_screen_summary(flood_run.screen))
        # Probes, while the idle half-sent TCP connections are still open.
        alive = server.proc.poll() is None
        rep.check("hostile: voxflow still running", alive, f"exit code {server.proc.poll()}")
        udp_code = hostile.options_udp(host, port, 5)
        rep.check("hostile: OPTIONS over UDP -> 200 afterwards", udp_code == 200, f"got {udp_code}")
        tcp_code = hostile.options_tcp(host, port, 5)
        rep.check("hostile: OPTIONS over TCP -> 200 afterwards", tcp_code == 200, f"got {tcp_code}")
        health = http_health(ports.http)
        rep.check("hostile: GET /health answers 200", health[0] == 200, str(health))
        wrong = stats.wrong_password_results
        rep.check("hostile: no wrong-password REGISTER accepted",
                  stats.wrong_password_registers >= 10
                  and not any(k.endswith("/200") for k in wrong), json.dumps(wrong))
        blocked = hostile.register(host, port, DEVICE_USER, DEVICE_PASSWORD,
                                   source=hostile.HOSTILE_SOURCE)
        other = hostile.register(host, port, DEVICE_USER, DEVICE_PASSWORD)
        rep.check("hostile: the guessing source is refused (403) even with the right password, "
                  "another source still registers (200)",
                  blocked[1] == 403 and other == (401, 200),
                  f"guessing source {blocked}, other source {other}")
    finally:
        attack.close()
    # Half-open INVITEs (never ACKed): every call they made must end.
    events = api.events()
    first, why = events.wait(lambda e: e.get("type") == "call_created"
                             and e.get("call_id") not in before, 10)
    if first is None:
        log(f"hostile: no call created by the half-open INVITEs: {why}")
    deadline = time.monotonic() + HALF_OPEN_END_TIMEOUT_S
    while first is not None:
        made = {e.get("call_id") for e in events.snapshot()
                if e.get("type") == "call_created" and e.get("call_id") not in before}
        pending = made - {e.get("call_id") for e in events.snapshot() if is_hangup(e)}
        if not pending:
            break
        ended, why = events.wait(lambda e: is_hangup(e) and e.get("call_id") in pending,
                                 max(0.0, deadline - time.monotonic()))
        if ended is None:
            log(f"hostile: {len(pending)} calls still up: {why}")
            break
    new: list[dict] = []
    try:
        new = [c for c in all_calls(api) if c.get("id") not in before]
    except (ApiError, OSError, ValueError) as e:
        log(f"GET /v1.0/calls: {e}")
    live = [c for c in new if c.get("status") != "hangup"]
    summary: dict[str, int] = {}
    for c in new:
        k = f"{c.get('status')}/{c.get('hangup_reason')}/{c.get('hangup_by')}"
        summary[k] = summary.get(k, 0) + 1
    rep.check(f"hostile: every call made by unACKed INVITEs ends within "
              f"{HALF_OPEN_END_TIMEOUT_S}s", bool(new) and not live,
              f"{len(new)} new calls, {len(live)} still live: {summary}")
    log(f"hostile calls: {summary}")
    rep.check("hostile: voxflow still running at the end", server.proc.poll() is None,
              f"exit code {server.proc.poll()}")


def sipp_screen_summary(screen: str) -> str:
    try:
        with open(screen, errors="replace") as f:
            text = f.read()
    except OSError:
        return "(no screen file)"
    keep = [l for l in text.splitlines()
            if any(k in l for k in ("Successful call", "Failed call", "Retransmissions",
                                     "Dead call", "Timeout"))]
    return "\n".join(keep[-8:])


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get(
        "VOXFLOW_BIN", os.path.join(harness.REPO, "target", "release", "voxflow")))
    ap.add_argument("--out", default=os.path.join(harness.E2E_DIR, "out"),
                    help="parent directory for this run's artifacts")
    ap.add_argument("--only", default="",
                    help="comma-separated case groups to run (ivr, sipp, outbound, media, "
                         "flows, platform, hostile); default all")
    args = ap.parse_args()
    harness.reexec_with_venv()
    isolated = harness.reexec_in_netns()
    ports = Ports(isolated)
    os.makedirs(args.out, exist_ok=True)
    out = tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=args.out)
    log(f"{'network namespace' if isolated else 'no namespace, high ports'}; artifacts in {out}")
    rep = Report()
    started = time.monotonic()

    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        rep.check("voxflow binary exists", False, f"{binary} not found: cargo build --release")
        return rep.finish()

    server = Server(binary, ports, out)
    try:
        run_cases(rep, server, ports, out,
                  {g.strip() for g in args.only.split(",") if g.strip()} or set(GROUPS))
    finally:
        code = server.stop()
        log(f"voxflow exited with {code}; log at {server.log_path}; took "
            f"{time.monotonic() - started:.0f}s")
    if rep.failed:
        print(f"---- voxflow log (last 80 lines of {server.log_path}) ----", flush=True)
        print(server.log_tail(80), flush=True)
        print("----", flush=True)
    return rep.finish()


GROUPS = ("ivr", "sipp", "outbound", "media", "flows", "platform", "hostile")


def run_cases(rep: Report, server: Server, ports: Ports, out: str, groups: set[str]) -> None:
    if not rep.check("voxflow serve prints 'voxflow ready'", server.wait_ready(READY_TIMEOUT_S),
                     f"not within {READY_TIMEOUT_S}s (exit code {server.proc.poll()})"):
        return
    api = Api(ports.http)
    try:
        api.events()  # from now on, every event of the account: cases wait on them
    except (OSError, RuntimeError, ValueError, WebSocketException) as e:
        rep.check("api: subscribe to the account's events over the WebSocket", False, str(e))
        return
    try:
        Api(ports.http, token=None).call("GET", "/v1.0/calls")
        rep.check("api refuses a request without the token", False, "got 2xx")
    except ApiError as e:
        rep.check("api refuses a request without the token", e.status in (401, 403),
                  f"HTTP {e.status}")
    except (OSError, ValueError) as e:
        rep.check("api refuses a request without the token", False, str(e))
    try:
        ivr = api.call("POST", "/v1.0/flows", {"name": "e2e ivr", "actions": ivr_actions()})
        ring = api.call("POST", "/v1.0/flows", {"name": "e2e ringing",
                                                 "actions": ringing_actions()})
        for number, flow in ((IVR_NUMBER, ivr), (RINGING_NUMBER, ring)):
            api.call("POST", "/v1.0/numbers", {"number": number, "call_flow_id": flow["id"]})
        listed = api.call("GET", "/v1.0/calls")
        setup_ok = bool(ivr.get("id")) and bool(ring.get("id")) and isinstance(
            listed.get("result"), list)
        detail = f"flows {ivr.get('id')!r} {ring.get('id')!r}, calls {str(listed)[:200]}"
    except (ApiError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        setup_ok, detail = False, f"{type(e).__name__}: {e}"
    if not rep.check("api: create flows and numbers, list calls", setup_ok, detail):
        return

    def guarded(name: str, fn, *a):
        try:
            return fn(*a)
        except Exception:  # noqa: BLE001 (a harness crash is a failed case, not a dead run)
            rep.check(name, False, traceback.format_exc())
            return None

    if "ivr" in groups:
        # No digit first: it also tells when the menu ends, so digits go after it.
        timing = guarded("ivr no_digit", ivr_case, rep, api, ports, out, "no_digit", "",
                         NO_CHOICE, ports.sip) or {}
        at = 5.0
        if timing.get("menu_end_s") is not None:
            at = min(9.0, max(3.0, timing["menu_end_s"] + 0.7))
        log(f"sending digits {at:.1f}s after the call is confirmed")
        guarded("ivr digit_1", ivr_case, rep, api, ports, out, "digit_1", f"1@{at:.2f}", SALES,
                ports.sip)
        guarded("ivr digit_2", ivr_case, rep, api, ports, out, "digit_2", f"2@{at:.2f}",
                SUPPORT, ports.sip)
        guarded("metrics after ivr", metrics_case, rep, api, ports)
    if "sipp" in groups:
        guarded("sipp cases", sipp_cases, rep, ports, out)
    if "outbound" in groups:
        outbound_cases(rep, api, ports, out, guarded)
    if "media" in groups:
        import media_cases

        guarded("media cases", media_cases.run, rep, media_cases.Context(
            api=api, ports=ports, out=out, binary=server.binary, server_class=Server,
            api_class=Api, api_error=ApiError, phrases=PHRASES, follow_call=follow_call,
            originate=originate, all_calls=all_calls))
    if "flows" in groups:
        import flow_cases

        guarded("flow cases", flow_cases.run, rep, flow_cases.Context(
            api=api, ports=ports, out=out, phrases=PHRASES, follow_call=follow_call,
            originate=originate, all_calls=all_calls, server_log=server.log_path))
    if "platform" in groups:
        import platform_cases

        guarded("platform walk", platform_cases.run, rep, platform_cases.Context(
            binary=server.binary, ports=ports, out=out, server_class=Server, api_class=Api,
            api_error=ApiError, follow_call=follow_call, originate=originate))
    if "hostile" in groups:
        # Last: it leaves half-open calls and a blocked source behind.
        guarded("hostile traffic", hostile_case, rep, api, server, ports, out)


def outbound_cases(rep: Report, api: Api, ports: Ports, out: str, guarded) -> None:
    for mode, ring_timeout, expect, answered, ringing in PJSUA_OUTBOUND:
        guarded(f"outbound pjsua2 {mode}", outbound_pjsua_case, rep, api, ports, out, mode,
                ring_timeout, expect, answered, ringing)
    guarded("outbound pjsua2 api-hangup", outbound_api_hangup_case, rep, api, ports, out)
    for scenario, ring_timeout, expect, answered in SIPP_OUTBOUND:
        guarded(f"outbound sipp {scenario[:-4]}", outbound_sipp_case, rep, api, ports, out,
                scenario, ring_timeout, expect, answered)


if __name__ == "__main__":
    sys.exit(main())

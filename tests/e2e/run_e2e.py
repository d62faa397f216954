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
    dialog -> 481.

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
from harness import Report, log  # noqa: E402

TOKEN = "e2e-token"
IVR_NUMBER = "+15550100"
RINGING_NUMBER = "+15550101"  # a flow that does not answer: the CANCEL case
UNKNOWN_NUMBER = "+15550199"

MENU = "welcome to voxflow press one for sales or two for support"
SALES = "you chose sales"
SUPPORT = "you chose support"
NO_CHOICE = "no choice was made"
PHRASES = [MENU, SALES, SUPPORT, NO_CHOICE]

READY_TIMEOUT_S = 30
CALL_RECORD_TIMEOUT_S = 10


class Ports:
    """The fixed ports of the run: standard ones in a namespace, high ones outside."""

    def __init__(self, isolated: bool):
        if isolated:
            self.http, self.sip, self.rtp = 18080, 5060, "30000-30999"
            self.next_sip, self.next_media = 5070, 40000
        else:
            self.http, self.sip, self.rtp = 62080, 62060, "63000-63499"
            self.next_sip, self.next_media = 62200, 63600

    def sip_port(self) -> int:
        p = self.next_sip
        self.next_sip += 1
        return p

    def media_port(self) -> int:
        p = self.next_media
        self.next_media += 10
        return p


# ---------------------------------------------------------------------------------------------
# voxflow process


class Server:
    """One `voxflow serve` process, its log, and its readiness."""

    def __init__(self, binary: str, ports: Ports, out: str):
        self.data_dir = os.path.join(out, "data")  # fresh: `out` is new for every run
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(out, "voxflow.log")
        self.ready = threading.Event()
        cmd = [binary, "serve",
               "--http-listen", f"127.0.0.1:{ports.http}",
               "--sip-listen", f"127.0.0.1:{ports.sip}",
               "--rtp-ports", ports.rtp,
               "--data-dir", self.data_dir,
               "--bootstrap-token", TOKEN]
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
    """The one new call since `before`, once its status is hangup (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    last = "no new call"
    while time.monotonic() < deadline:
        try:
            new = [c for c in api.calls() if c.get("id") not in before]
        except (ApiError, OSError, ValueError) as e:
            last = f"GET /v1.0/calls: {e}"
            new = []
        if len(new) > 1:
            return None, f"{len(new)} new calls: {new}"
        if len(new) == 1:
            try:
                call = api.get_call(str(new[0]["id"]))
            except (ApiError, OSError, ValueError) as e:
                last = f"GET /v1.0/calls/{new[0]['id']}: {e}"
            else:
                if call.get("status") == "hangup":
                    return call, ""
                last = f"status still {call.get('status')!r}"
        time.sleep(0.1)  # polling a condition with a deadline, not waiting on luck
    return None, last


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get(
        "VOXFLOW_BIN", os.path.join(harness.REPO, "target", "release", "voxflow")))
    ap.add_argument("--out", default=os.path.join(harness.E2E_DIR, "out"),
                    help="parent directory for this run's artifacts")
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
        run_cases(rep, server, ports, out)
    finally:
        code = server.stop()
        log(f"voxflow exited with {code}; log at {server.log_path}; took "
            f"{time.monotonic() - started:.0f}s")
    if rep.failed:
        print(f"---- voxflow log (last 80 lines of {server.log_path}) ----", flush=True)
        print(server.log_tail(80), flush=True)
        print("----", flush=True)
    return rep.finish()


def run_cases(rep: Report, server: Server, ports: Ports, out: str) -> None:
    if not rep.check("voxflow serve prints 'voxflow ready'", server.wait_ready(READY_TIMEOUT_S),
                     f"not within {READY_TIMEOUT_S}s (exit code {server.proc.poll()})"):
        return
    api = Api(ports.http)
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

    # No digit first: it also tells when the menu ends, so digits go after it.
    timing = guarded("ivr no_digit", ivr_case, rep, api, ports, out, "no_digit", "", NO_CHOICE,
                     ports.sip) or {}
    at = 5.0
    if timing.get("menu_end_s") is not None:
        at = min(9.0, max(3.0, timing["menu_end_s"] + 0.7))
    log(f"sending digits {at:.1f}s after the call is confirmed")
    guarded("ivr digit_1", ivr_case, rep, api, ports, out, "digit_1", f"1@{at:.2f}", SALES,
            ports.sip)
    guarded("ivr digit_2", ivr_case, rep, api, ports, out, "digit_2", f"2@{at:.2f}", SUPPORT,
            ports.sip)
    guarded("sipp cases", sipp_cases, rep, ports, out)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the siphon SIPp conformance scenarios against the voxflow release binary.

    python3 tests/conformance/run_siphon.py [--only NAME] [--jobs N] [--binary PATH] [--out DIR]

The scenarios live in <repo>/../shared/conformance/siphon-sipp/ (another project's suite, written
for any SIP server; read-only). Every *.xml there is one case, plus the transport variants the
suite's own runner defines (options/invite_bye/register over TCP, options/register over IPv6).

Each case runs in its own network namespace when root (`unshare -n`, loopback up): its own
`voxflow serve` on a fresh data directory (SIP 127.0.0.1:5060, or [::1]:5060 for the IPv6 cases),
a flow that answers and waits bound to the service number over the API, then one SIPp run with
`-m 1 -timeout 20s -timeout_error` and the case's own arguments. Without root, cases use
127.0.0.1 ports above 62000 instead. Cases run a few at a time (--jobs).

Output: one line per case, `ok`, `FAIL` or `expected-fail` (with the reason), then exactly
`N passed, M failed, K skipped` (K: the expected failures, features not built yet). The exit code is non-zero only when a case
that is not in EXPECTED_FAIL fails. Artifacts (voxflow log, SIPp message/error traces) stay in
--out, one directory per case.

Only processes this script started are stopped, by PID. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from harness import stop_process  # noqa: E402  (shared with the end-to-end tests)

# ---------------------------------------------------------------------------------------------
# Expected failures: scenario case -> why it fails today. Shrink this as features land; a case
# listed here that passes is reported as "ok (... remove it from EXPECTED_FAIL)".

EXPECTED_FAIL: dict[str, str] = {
    # Missing features (voxflow does not claim them yet). Details: the findings document.
    "refer": "no REFER (RFC 3515): in-dialog REFER answered 405, scenario wants 202 + NOTIFY",
    "refer_fail": "no REFER (RFC 3515): in-dialog REFER answered 405, scenario wants 202 + NOTIFY",
    "subscribe_notify": "no SUBSCRIBE/NOTIFY (RFC 6665): SUBSCRIBE answered 405",
    "subscribe_lifecycle": "no SUBSCRIBE/NOTIFY (RFC 6665): SUBSCRIBE answered 405",
    "proxy_invite_bye": "not a proxy: voxflow answers an INVITE for another host itself",
}

# ---------------------------------------------------------------------------------------------
# Cases

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUITE_DIR = os.path.join(os.path.dirname(REPO), "shared", "conformance", "siphon-sipp")
NETNS_ENV = "VOXFLOW_CONFORMANCE_IN_NETNS"

TOKEN = "conformance-token"
ANSWER_NUMBER = "15550100"   # flow: answer, then wait 60 s
RINGING_NUMBER = "15550101"  # flow: never answer (wait 60 s ringing): CANCEL scenarios
AUTH_NUMBER = "15550102"     # answering flow too; the user to protect with digest auth (alice)
AUTH_PASS = "conformance-secret"

ANSWER_FLOW = [{"type": "answer"}, {"type": "sleep", "option": {"duration": 60000}}]
RINGING_FLOW = [{"type": "sleep", "option": {"duration": 60000}}, {"type": "hangup"}]

SIPP_TIMEOUT_S = 20      # -timeout 20s -timeout_error
SIPP_WALL_S = 40         # hard bound on one SIPp process
READY_TIMEOUT_S = 15     # voxflow must print "voxflow ready" within this
STOP_GRACE_S = 3         # SIGTERM, then SIGKILL (voxflow waits for BYE answers on shutdown)
WORKER_WALL_S = 90       # hard bound on one case
RUN_BUDGET_S = 280       # hard bound on the whole run: later cases are reported as not run


@dataclass(frozen=True)
class Case:
    name: str
    scenario: str                 # file name in SUITE_DIR
    transport: str = "udp"        # "udp" or "tcp" (-t t1)
    ipv6: bool = False            # voxflow on [::1], SIPp -i ::1
    service: str = ANSWER_NUMBER  # -s: the Request-URI user part
    args: tuple[str, ...] = ()    # more SIPp arguments
    inf: str = ""                 # "proxy" | "refer": write that CSV (-inf) with our ports
    peer: str = ""                # scenario run as a SIPp UAS at the CSV target (proxy callee)
    role: str = "uac"             # "uas": SIPp waits for voxflow to call it (uas_invite.xml)
    # devices to create first: (username, password, allowed_ips); see DEVICES
    devices: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


# Per-scenario settings; every other scenario runs with the defaults of Case.
SCENARIO_SETTINGS: dict[str, dict] = {
    "cancel.xml": {"service": RINGING_NUMBER},
    # PRACK negative tests: the call must still be ringing when the PRACK arrives (with the
    # answering flow the 200 to the INVITE races the PRACK's response).
    "prack_bad_rack.xml": {"service": RINGING_NUMBER},
    "prack_missing_rack.xml": {"service": RINGING_NUMBER},
    # register.xml wants a 200 without a challenge, auth_register.xml a 401 first: the
    # authenticated scenarios use their own user, the one to configure with credentials.
    # auth_invite: the caller (From: sipp) is a device, so its INVITE is challenged (401).
    "auth_invite.xml": {"service": AUTH_NUMBER, "args": ("-au", "sipp", "-ap", AUTH_PASS),
                        "devices": (("sipp", AUTH_PASS, ()),)},
    # auth_register: the AOR (To: the service) is a device with a password.
    "auth_register.xml": {"service": AUTH_NUMBER, "args": ("-au", AUTH_NUMBER, "-ap", AUTH_PASS),
                          "devices": ((AUTH_NUMBER, AUTH_PASS, ()),)},
    # register*: the AOR is a device trusted by its address (no challenge expected).
    "register.xml": {"devices": ((ANSWER_NUMBER, "", ("127.0.0.0/8", "::1")),)},
    "register_multiple.xml": {"devices": ((ANSWER_NUMBER, "", ("127.0.0.0/8", "::1")),)},
    "register_wildcard.xml": {"devices": ((ANSWER_NUMBER, "", ("127.0.0.0/8", "::1")),)},
    "refer.xml": {"inf": "refer"},
    "proxy_invite_bye.xml": {"inf": "proxy", "peer": "uas_invite.xml"},
    "uas_invite.xml": {"role": "uas"},
    "invite_bye_ipv6.xml": {"ipv6": True},
}

# Transport variants, as in the suite's own runner (RUN_TCP_CORE, RUN_IPV6).
VARIANTS: list[tuple[str, str, dict]] = [
    ("options-tcp", "options.xml", {"transport": "tcp"}),
    ("invite_bye-tcp", "invite_bye.xml", {"transport": "tcp"}),
    ("register-tcp", "register.xml", {"transport": "tcp"}),
    ("options-ipv6", "options.xml", {"ipv6": True}),
    ("register-ipv6", "register.xml", {"ipv6": True}),
]


def all_cases(suite: str) -> list[Case]:
    cases = []
    for fname in sorted(os.listdir(suite)):
        if fname.endswith(".xml"):
            cases.append(Case(name=fname[:-4], scenario=fname, **SCENARIO_SETTINGS.get(fname, {})))
    present = {c.scenario for c in cases}
    for name, scenario, settings in VARIANTS:
        if scenario in present:
            base = next(c for c in cases if c.scenario == scenario)
            cases.append(replace(base, name=name, **settings))
    return cases


# ---------------------------------------------------------------------------------------------
# Ports


@dataclass
class Ports:
    sip: int
    http: int
    rtp: str
    uac: int
    uac_media: int
    peer: int
    peer_media: int
    refer_target: int

    @staticmethod
    def for_slot(isolated: bool, slot: int) -> "Ports":
        if isolated:  # a namespace of our own: standard ports (5070 is the suite's proxy callee)
            return Ports(5060, 18080, "30000-30999", 5080, 40000, 5070, 40100, 5071)
        base = 62100 + 40 * slot
        rtp = 63000 + 100 * slot
        return Ports(base, base + 1, f"{rtp}-{rtp + 99}", base + 2, base + 10, base + 3,
                     base + 20, base + 4)


# ---------------------------------------------------------------------------------------------
# Processes


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Voxflow:
    """One `voxflow serve`; its output goes to a log file; readiness from the ready line."""

    def __init__(self, binary: str, ports: Ports, ipv6: bool, out: str):
        self.data_dir = tempfile.mkdtemp(prefix="data-", dir=out)
        self.log_path = os.path.join(out, "voxflow.log")
        self.ready = threading.Event()
        sip = f"[::1]:{ports.sip}" if ipv6 else f"127.0.0.1:{ports.sip}"
        self.cmd = [binary, "serve", "--http-listen", f"127.0.0.1:{ports.http}",
                    "--sip-listen", sip, "--rtp-ports", ports.rtp, "--data-dir", self.data_dir,
                    "--bootstrap-token", TOKEN,
                    "--log", "info,voxflow_runtime=debug,voxflow_sip=debug"]
        self.log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
        self.log_file.write("$ " + " ".join(self.cmd) + "\n")
        self.log_file.flush()
        env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="1")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = ANSI.sub("", raw.decode("utf-8", errors="replace"))
            self.log_file.write(line)
            self.log_file.flush()
            if "voxflow ready" in line:
                self.ready.set()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.wait(timeout=0.1) or self.proc.poll() is not None:
                break
        return self.ready.is_set()

    def stop(self) -> int | None:
        code = stop_process(self.proc, STOP_GRACE_S)
        self.reader.join(timeout=5)
        self.log_file.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def notable_lines(self, limit: int = 6) -> list[str]:
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        keep = [ln for ln in lines if re.search(r"\b(ERROR|WARN)\b|panicked", ln)]
        return keep[:limit]


class Api:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=10) as resp:
                status, text = resp.status, resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode("utf-8", errors="replace")
        try:
            return status, json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            return status, text

    def setup(self, devices=()) -> str:
        """Create the flows, bind the numbers, create the case's devices; '' or what went wrong."""
        for username, password, allowed_ips in devices:
            body = {"username": username, "allowed_ips": list(allowed_ips)}
            if password:
                body["password"] = password
            status, res = self.call("POST", "/v1.0/devices", body)
            if status >= 300:
                return f"POST /v1.0/devices {username} -> HTTP {status}: {str(res)[:200]}"
        for number, actions in ((ANSWER_NUMBER, ANSWER_FLOW), (RINGING_NUMBER, RINGING_FLOW),
                                (AUTH_NUMBER, ANSWER_FLOW)):
            status, flow = self.call("POST", "/v1.0/flows", {"name": f"conformance {number}",
                                                             "actions": actions})
            if status >= 300 or not isinstance(flow, dict) or not flow.get("id"):
                return f"POST /v1.0/flows -> HTTP {status}: {str(flow)[:200]}"
            status, res = self.call("POST", "/v1.0/numbers", {"number": number,
                                                              "call_flow_id": flow["id"]})
            if status >= 300:
                return f"POST /v1.0/numbers {number} -> HTTP {status}: {str(res)[:200]}"
        return ""

    def originate(self, target_uri: str) -> str:
        """Ask voxflow to place a call to target_uri (POST /v1.0/calls); '' when accepted."""
        # The callee scenario waits for our BYE: a flow that hangs up after two seconds.
        body = {"actions": [{"type": "sleep", "option": {"duration": 2000}}, {"type": "hangup"}],
                "source": {"type": "tel", "target": "+" + ANSWER_NUMBER},
                "destinations": [{"type": "sip", "target": target_uri}]}
        status, res = self.call("POST", "/v1.0/calls", body)
        if status >= 300:
            return f"POST /v1.0/calls -> HTTP {status} {str(res)[:120]!r}".rstrip()
        return ""


# ---------------------------------------------------------------------------------------------
# SIPp


@dataclass
class SippRun:
    label: str
    cmd: list[str]
    message_log: str
    error_log: str
    screen_log: str
    returncode: int | None = None
    wall_timeout: bool = False
    waited_s: float = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.wall_timeout


def sipp_start(label: str, scenario: str, out: str, *, local_ip: str, local_port: int,
               media_port: int, remote: str | None, case: Case,
               extra: list[str]) -> tuple[subprocess.Popen, SippRun]:
    msg, err, screen = (os.path.join(out, f"{label}.{k}.log") for k in ("messages", "errors",
                                                                          "screen"))
    cmd = ["sipp", "-sf", scenario]
    if remote:
        cmd.append(remote)
    cmd += ["-i", local_ip, "-p", str(local_port), "-mi", local_ip, "-mp", str(media_port),
            "-m", "1", "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s", "-timeout_error",
            "-trace_msg", "-message_file", msg, "-trace_err", "-error_file", err,
            "-trace_screen", "-screen_file", screen]
    if case.transport == "tcp":
        cmd += ["-t", "t1"]
    cmd += extra
    with open(os.path.join(out, f"{label}.cmd"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=out)
    return proc, SippRun(label, cmd, msg, err, screen)


def sipp_wait(proc: subprocess.Popen, run: SippRun, timeout_s: float) -> SippRun:
    try:
        run.returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        run.wall_timeout = True
        run.waited_s = timeout_s
        stop_process(proc, 2)
        run.returncode = proc.returncode
    return run


def wait_bound(port: int, ipv6: bool, transport: str, timeout_s: float,
               proc: subprocess.Popen) -> bool:
    """True once something listens on the loopback port (read from /proc/net/*)."""
    table = f"/proc/net/{transport}{'6' if ipv6 else ''}"
    want = (f"00000000000000000000000001000000:{port:04X}" if ipv6
            else f"0100007F:{port:04X}")
    deadline = time.monotonic() + timeout_s
    stop = threading.Event()
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(table) as f:
                if any(len(p) > 1 and p[1] == want for p in (ln.split() for ln in f.readlines()[1:])):
                    return True
        except OSError:
            pass
        stop.wait(0.02)  # re-check the socket table; bounded by the deadline
    return False


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def sipp_reason(run: SippRun) -> str:
    """Why a SIPp run failed, from its error trace (or exit code)."""
    if run.wall_timeout:
        return f"sipp did not end within {run.waited_s:.0f}s: {last_wait(run)}"
    try:
        with open(run.error_log, errors="replace") as f:
            errors = f.read()
    except OSError:
        errors = ""
    m = re.search(r"while expecting '([^']*)'(?: \(index (\d+)\))?, received '([^'\r\n]*)", errors)
    if m:
        return f"expected {m.group(1)} (step {m.group(2)}), got '{m.group(3).strip()}'"
    for pattern, text in ((r"[Rr]etransmission timeout|timeout on max UDP retrans",
                           "no response (SIPp retransmission timeout)"),
                          (r"Call-Id.*timed out|call timeout|timeout occured",
                           "timed out waiting"),):
        if re.search(pattern, errors):
            hit = next(ln for ln in errors.splitlines() if re.search(pattern, ln))
            return f"{text}: {hit.split(': ', 1)[-1][:160]}"
    if run.returncode == 255:
        return f"global timeout ({SIPP_TIMEOUT_S}s) fired: {last_wait(run)}"
    lines = [ln for ln in errors.splitlines() if ln.strip()]
    tail = lines[-1][:200] if lines else "no error trace"
    return f"sipp exit {run.returncode}: {tail}"


def last_wait(run: SippRun) -> str:
    """The last SIP message SIPp traced, to say where it was stuck."""
    try:
        with open(run.message_log, errors="replace") as f:
            text = f.read()
    except OSError:
        return "no message trace"
    blocks = [b for b in re.split(r"-{20,} [0-9-]+ [0-9:.]+\n", text) if b.strip()]
    if not blocks:
        return "no message was exchanged"
    last = blocks[-1].strip().splitlines()
    head = last[0].rstrip(":") if last else ""
    start = first_line("\n".join(last[1:]))
    return f"last traced: {head} '{start}'"


# ---------------------------------------------------------------------------------------------
# One case (runs in the worker process, in its namespace)


def run_case(case: Case, binary: str, suite: str, out: str, isolated: bool, slot: int) -> dict:
    ports = Ports.for_slot(isolated, slot)
    os.makedirs(out, exist_ok=True)
    res = {"name": case.name, "passed": False, "reason": "", "artifacts": out}
    scenario = os.path.join(suite, case.scenario)
    local_ip = "::1" if case.ipv6 else "127.0.0.1"
    remote = f"[::1]:{ports.sip}" if case.ipv6 else f"127.0.0.1:{ports.sip}"
    server = Voxflow(binary, ports, case.ipv6, out)
    peer_proc = None
    try:
        if not server.wait_ready(READY_TIMEOUT_S):
            code = server.proc.poll()
            log_tail = server.notable_lines(3)
            res["reason"] = (f"voxflow did not print 'voxflow ready' within {READY_TIMEOUT_S}s"
                             f" (exit {code}) {' | '.join(log_tail)}")
            return res
        problem = Api(ports.http).setup(case.devices)
        if problem:
            res["reason"] = "API setup: " + problem
            return res

        extra = ["-s", case.service] + list(case.args)
        if case.inf:
            target = ports.peer if case.inf == "proxy" else ports.refer_target
            csv = os.path.join(out, f"{case.inf}_target.csv")
            with open(csv, "w") as f:
                f.write(f"SEQUENTIAL\n127.0.0.1;{target}\n")
            extra += ["-inf", csv]

        peer_run = None
        if case.peer or case.role == "uas":
            peer_scenario = os.path.join(suite, case.peer or case.scenario)
            peer_proc, peer_run = sipp_start("peer", peer_scenario, out, local_ip="127.0.0.1",
                                             local_port=ports.peer, media_port=ports.peer_media,
                                             remote=None, case=replace(case, transport="udp"),
                                             extra=[])
            if not wait_bound(ports.peer, False, "udp", 10, peer_proc):
                res["reason"] = f"SIPp peer did not bind 127.0.0.1:{ports.peer}"
                return res

        if case.role == "uas":
            # SIPp is the callee: voxflow must place the call.
            why = Api(ports.http).originate(f"sip:uas@127.0.0.1:{ports.peer}")
            if why:
                stop_process(peer_proc, 2)
                res["reason"] = f"voxflow cannot originate a call to the SIPp UAS: {why}"
                return res
            sipp_wait(peer_proc, peer_run, SIPP_WALL_S)
            res["passed"] = peer_run.ok
            res["sipp_exit"] = peer_run.returncode
            if not res["passed"]:
                res["reason"] = "SIPp UAS: " + sipp_reason(peer_run)
        else:
            proc, run = sipp_start("sipp", scenario, out, local_ip=local_ip,
                                   local_port=ports.uac, media_port=ports.uac_media,
                                   remote=remote, case=case, extra=extra)
            sipp_wait(proc, run, SIPP_WALL_S)
            res["sipp_exit"] = run.returncode
            res["passed"] = run.ok
            if not res["passed"]:
                res["reason"] = sipp_reason(run)
            if peer_run is not None:
                # The callee behind a proxy: it must have had the whole call too.
                sipp_wait(peer_proc, peer_run, 5)
                res["peer_exit"] = peer_run.returncode
                if not peer_run.ok:
                    got = peer_saw_invite(peer_run)
                    detail = ("the callee SIPp never received the INVITE" if not got
                              else "callee SIPp: " + sipp_reason(peer_run))
                    res["passed"] = False
                    res["reason"] = "; ".join(x for x in (res["reason"], detail) if x)
        if server.proc.poll() is not None:
            res["passed"] = False
            res["reason"] = (res["reason"] + "; " if res["reason"] else "") + \
                f"voxflow exited during the case with code {server.proc.returncode}"
        return res
    finally:
        if peer_proc is not None:
            stop_process(peer_proc, 2)
        code = server.stop()
        res["voxflow_exit"] = code
        notable = server.notable_lines()
        if notable:
            res["voxflow_notes"] = notable


def peer_saw_invite(run: SippRun) -> bool:
    try:
        with open(run.message_log, errors="replace") as f:
            return "INVITE sip:" in f.read()
    except OSError:
        return False


def worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    case = Case(**{**spec["case"], "args": tuple(spec["case"]["args"])})
    isolated = os.environ.get(NETNS_ENV) == "1"
    if isolated:
        up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, timeout=10)
        if up.returncode != 0:
            print(json.dumps({"name": case.name, "passed": False,
                              "reason": "ip link set lo up failed in the namespace"}))
            return 0

    def on_term(signum, frame):  # the parent gave up on us: end our children via finally
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        res = run_case(case, spec["binary"], spec["suite"], spec["out"], isolated, spec["slot"])
    except KeyboardInterrupt:
        res = {"name": case.name, "passed": False, "reason": "case interrupted (wall time)"}
    except Exception as e:  # noqa: BLE001 (a runner crash is a failed case, not a dead run)
        res = {"name": case.name, "passed": False, "reason": f"runner error: {type(e).__name__}: {e}"}
    print(json.dumps(res), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    if os.environ.get(NETNS_ENV) == "0":
        return False
    try:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


class Slots:
    """Port blocks for cases running at the same time outside a namespace."""

    def __init__(self, n: int):
        self.free = list(range(n))
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            return self.free.pop(0)

    def give(self, slot: int) -> None:
        with self.lock:
            self.free.append(slot)


def spawn_case(case: Case, binary: str, suite: str, out_root: str, isolated: bool,
               slots: Slots, run_end: float) -> dict:
    out = os.path.join(out_root, case.name)
    wall = min(WORKER_WALL_S, run_end - time.monotonic())
    if wall < 30:
        return {"name": case.name, "passed": False,
                "reason": f"not run: the run's time budget ({RUN_BUDGET_S}s) is used up"}
    slot = slots.take()
    try:
        spec = json.dumps({"case": asdict(case), "binary": binary, "suite": suite, "out": out,
                           "slot": slot})
        me = [sys.executable, os.path.abspath(__file__), "--_worker", spec]
        cmd = ["unshare", "-n", "--"] + me if isolated else me
        env = dict(os.environ, **{NETNS_ENV: "1" if isolated else "0"})
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=wall)
        except subprocess.TimeoutExpired:
            stop_process(proc, 8)  # the worker stops its voxflow and SIPp on SIGTERM
            stdout, stderr = proc.communicate()
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"name": case.name, "passed": False,
                    "reason": f"worker exit {proc.returncode}: {stderr.strip()[-300:]}",
                    "artifacts": out}
        res = json.loads(lines[-1])
        try:
            with open(os.path.join(out, "result.json"), "w") as f:
                json.dump(res, f, indent=1)
        except OSError:
            pass
        return res
    finally:
        slots.give(slot)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[],
                    help="run only this case (repeatable; comma-separated allowed; .xml optional)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--jobs", type=int, default=3, help="cases run at the same time (1-8)")
    ap.add_argument("--binary", default=os.environ.get(
        "VOXFLOW_BIN", os.path.join(REPO, "target", "release", "voxflow")))
    ap.add_argument("--suite", default=SUITE_DIR,
                    help="scenario directory (default: <repo>/../shared/conformance/siphon-sipp)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "conformance", "out"),
                    help="parent directory for this run's artifacts")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        return worker_main(args._worker)

    if not os.path.isdir(args.suite):
        print(f"FAIL suite: {args.suite} not found", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    cases = all_cases(args.suite)
    if args.list:
        for c in cases:
            print(c.name + (f"  (expected-fail: {EXPECTED_FAIL[c.name]})"
                            if c.name in EXPECTED_FAIL else ""))
        return 0
    if args.only:
        wanted = {w.strip().removesuffix(".xml") for o in args.only for w in o.split(",") if w.strip()}
        unknown = wanted - {c.name for c in cases}
        if unknown:
            print(f"unknown case(s): {', '.join(sorted(unknown))}; --list shows them",
                  file=sys.stderr)
            return 2
        cases = [c for c in cases if c.name in wanted]
    if not shutil.which("sipp"):
        print("FAIL sipp: not installed (apt-get install sip-tester)", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1

    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"FAIL voxflow binary: {binary} not found (cargo build --release)", flush=True)
        print("0 passed, 1 failed", flush=True)
        return 1
    os.makedirs(args.out, exist_ok=True)
    out_root = tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=args.out)
    # One copy of the binary for the whole run: a rebuild meanwhile does not mix versions.
    run_binary = os.path.join(out_root, "voxflow")
    shutil.copy2(binary, run_binary)

    isolated = can_unshare()
    jobs = max(1, min(8, args.jobs))
    print(f"[conformance] {len(cases)} cases, {jobs} at a time, "
          f"{'one network namespace each' if isolated else 'no namespace: 127.0.0.1 ports > 62000'}"
          f"; artifacts in {out_root}", file=sys.stderr, flush=True)
    started = time.monotonic()
    run_end = started + RUN_BUDGET_S
    slots = Slots(jobs)
    passed = failed = expected = unexpected = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(spawn_case, c, run_binary, os.path.abspath(args.suite), out_root,
                                   isolated, slots, run_end)
                       for c in cases]
            for case, fut in zip(cases, futures):
                res = fut.result()
                listed = EXPECTED_FAIL.get(case.name)
                if res.get("passed"):
                    passed += 1
                    note = f" (listed as expected-fail: remove it from EXPECTED_FAIL)" if listed else ""
                    print(f"ok   {case.name}{note}", flush=True)
                else:
                    failed += 1
                    reason = res.get("reason") or "failed"
                    if listed:
                        expected += 1
                        print(f"expected-fail {case.name}: {reason} [listed: {listed}]", flush=True)
                    else:
                        unexpected += 1
                        print(f"FAIL {case.name}: {reason}  [{res.get('artifacts', '')}]",
                              flush=True)
    finally:
        try:
            os.unlink(run_binary)
        except OSError:
            pass
    print(f"[conformance] {expected} of the failures are listed in EXPECTED_FAIL; "
          f"{unexpected} are not; took {time.monotonic() - started:.0f}s",
          file=sys.stderr, flush=True)
    # Expected failures are features not built yet: reported as skipped, not as failures.
    print(f"{passed} passed, {unexpected} failed, {expected} skipped", flush=True)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())

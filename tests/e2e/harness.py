"""Shared plumbing for the end-to-end scripts (run_e2e.py, selftest.py).

Processes are started here and ended here, by PID only. Every wait is bounded. Nothing binds
anywhere but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(E2E_DIR))
SIPP_DIR = os.path.join(E2E_DIR, "sipp")
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")
NETNS_ENV = "VOXFLOW_E2E_IN_NETNS"


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Report:
    """Per-case ok/FAIL lines and the closing 'N passed, M failed' line."""

    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    expected_failures: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def xfail(self, name: str, ok: bool, detail: str, bug: str) -> bool:
        """A check that fails because of a known, reported voxflow bug: printed as `xfail`,
        not counted as failed. Once it passes, it says so (remove the mark)."""
        if ok:
            self.passed += 1
            print(f"ok   {name} (still marked as the known bug '{bug}': remove the mark)",
                  flush=True)
        else:
            self.expected_failures.append(name)
            print(f"xfail {name}: known voxflow bug: {bug}" + (f": {detail}" if detail else ""),
                  flush=True)
        return ok

    def finish(self) -> int:
        if self.expected_failures:
            print(f"{len(self.expected_failures)} expected failure(s) (known voxflow bugs, "
                  "marked xfail above)", flush=True)
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


def log(msg: str) -> None:
    """Progress notes go to stderr so stdout stays the per-case lines."""
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Interpreter and isolation


def reexec_with_venv() -> None:
    """Re-run this script with the repo's venv python if pjsua2/pocketsphinx are missing."""
    try:
        import pjsua2  # noqa: F401
        import pocketsphinx  # noqa: F401

        return
    except ImportError:
        pass
    if os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(REPO, ".venv")):
        sys.exit("e2e: the venv lacks pjsua2/pocketsphinx: run scripts/install-test-deps.sh")
    if not os.path.exists(VENV_PYTHON):
        sys.exit(f"e2e: {VENV_PYTHON} not found: run scripts/install-test-deps.sh first")
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(sys.argv[0])] + sys.argv[1:])


def reexec_in_netns() -> bool:
    """As root, re-run this script in a fresh network namespace with only loopback up.

    Returns True when running inside such a namespace (fixed ports are then free), False when
    isolation is not available (the caller must use high ports).
    """
    if os.environ.get(NETNS_ENV) == "1":
        if subprocess.run(["ip", "link", "set", "lo", "up"], check=False).returncode != 0:
            sys.exit("e2e: could not bring loopback up in the network namespace")
        return True
    if os.environ.get(NETNS_ENV) == "0" or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        log("unshare -n is not permitted here; running without a network namespace")
        return False
    env = dict(os.environ, **{NETNS_ENV: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(
        "unshare", ["unshare", "-n", "--", sys.executable, os.path.abspath(sys.argv[0])]
        + sys.argv[1:], env,
    )
    return True  # not reached


# ---------------------------------------------------------------------------------------------
# Processes


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> int | None:
    """SIGTERM this one process, wait up to grace_s, then SIGKILL it. Returns its exit code."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None
    except ProcessLookupError:
        return proc.poll()


def run_caller(
    uri: str,
    local_port: int,
    record: str,
    *,
    rtp_port: int = 0,
    digits: str = "",
    hangup_after: float | None = None,
    timeout: float = 40.0,
    log_file: str | None = None,
    play: str | None = None,
    play_at: float = 0.0,
    from_user: str | None = None,
) -> dict:
    """Run caller.py once and return its JSON result (or {"error": ...})."""
    cmd = [sys.executable, os.path.join(E2E_DIR, "caller.py"), "--uri", uri,
           "--local-port", str(local_port), "--record", record, "--timeout", str(timeout)]
    if rtp_port:
        cmd += ["--rtp-port", str(rtp_port)]
    if digits:
        cmd += ["--digits", digits]
    if hangup_after is not None:
        cmd += ["--hangup-after", str(hangup_after)]
    if log_file:
        cmd += ["--log", log_file]
    if play:
        cmd += ["--play", play, "--play-at", str(play_at)]
    if from_user:
        cmd += ["--from-user", from_user]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout + 40)
    except subprocess.TimeoutExpired:
        stop_process(proc, 2)
        out, err = proc.communicate()
        return {"error": "caller.py did not end in time", "stderr": err[-2000:]}
    lines = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) != 1:
        return {"error": f"caller.py exit {proc.returncode}, {len(lines)} stdout lines",
                "stdout": out[-2000:], "stderr": err[-2000:]}
    try:
        return json.loads(lines[0])
    except json.JSONDecodeError as e:
        return {"error": f"caller.py printed no JSON: {e}", "stdout": out[-2000:]}


def start_callee(
    port: int,
    mode: str,
    record: str,
    *,
    rtp_port: int = 0,
    ring_s: float | None = None,
    hangup_after: float | None = None,
    timeout: float = 40.0,
    log_file: str | None = None,
) -> subprocess.Popen:
    """Start callee.py (it ends by itself within `timeout`); read it with finish_callee."""
    cmd = [sys.executable, os.path.join(E2E_DIR, "callee.py"), "--port", str(port), "--mode",
           mode, "--record", record, "--timeout", str(timeout)]
    if rtp_port:
        cmd += ["--rtp-port", str(rtp_port)]
    if ring_s is not None:
        cmd += ["--ring-s", str(ring_s)]
    if hangup_after is not None:
        cmd += ["--hangup-after", str(hangup_after)]
    if log_file:
        cmd += ["--log", log_file]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_callee(proc: subprocess.Popen, timeout_s: float) -> dict:
    """Wait (bounded) for callee.py to end and return its JSON result (or {"error": ...})."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc, 2)
        out, err = proc.communicate()
        return {"error": "callee.py did not end in time", "stderr": err[-2000:]}
    lines = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) != 1:
        return {"error": f"callee.py exit {proc.returncode}, {len(lines)} stdout lines",
                "stdout": out[-2000:], "stderr": err[-2000:]}
    try:
        return json.loads(lines[0])
    except json.JSONDecodeError as e:
        return {"error": f"callee.py printed no JSON: {e}", "stdout": out[-2000:]}


@dataclass
class SippRun:
    """How one SIPp UAC run ended and where its traces are."""

    name: str
    returncode: int | None
    message_log: str
    error_log: str
    screen: str

    def tail(self, n: int = 40) -> str:
        parts = []
        for path in (self.error_log, self.message_log):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()
                parts.append(f"--- {os.path.basename(path)} (last {n} lines)\n" + "\n".join(lines[-n:]))
        return "\n".join(parts)


def sipp_command(
    scenario: str,
    *,
    local_port: int,
    out_dir: str,
    name: str,
    remote: str | None = None,
    service: str | None = None,
    media_port: int | None = None,
    calls: int = 1,
    global_timeout_s: int = 20,
    recv_timeout_ms: int | None = 8000,
    keys: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> tuple[list[str], SippRun]:
    """The sipp command line for one scenario, with message and error traces in out_dir.

    scenario is a file (relative paths are under sipp/) or "builtin:uas" for SIPp's own UAS.
    """
    if scenario.startswith("builtin:"):
        source = ["-sn", scenario.split(":", 1)[1]]
    else:
        if not os.path.isabs(scenario):
            scenario = os.path.join(SIPP_DIR, scenario)
        source = ["-sf", scenario]
    msg = os.path.join(out_dir, f"{name}.messages.log")
    err = os.path.join(out_dir, f"{name}.errors.log")
    screen = os.path.join(out_dir, f"{name}.screen.log")
    for path in (msg, err, screen):
        if os.path.exists(path):
            os.unlink(path)
    cmd = ["sipp"] + source
    if remote:
        cmd.append(remote)
    cmd += ["-i", "127.0.0.1", "-p", str(local_port), "-m", str(calls), "-nostdin",
            "-timeout", f"{global_timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", msg, "-trace_err", "-error_file", err,
            "-trace_screen", "-screen_file", screen]
    if recv_timeout_ms:
        cmd += ["-recv_timeout", str(recv_timeout_ms)]
    if media_port:
        cmd += ["-mi", "127.0.0.1", "-mp", str(media_port)]
    if service:
        cmd += ["-s", service]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, v]
    cmd += extra or []
    return cmd, SippRun(name, None, msg, err, screen)


def run_sipp(scenario: str, *, wall_timeout_s: float = 40, **kwargs) -> SippRun:
    """Run one SIPp scenario to its end (bounded) and return how it ended."""
    cmd, run = sipp_command(scenario, **kwargs)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        run.returncode = proc.wait(timeout=wall_timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc, 2)
        run.returncode = None
    return run


def start_sipp(scenario: str, **kwargs) -> tuple[subprocess.Popen, SippRun]:
    """Start a SIPp instance (typically a UAS peer) in the background."""
    cmd, run = sipp_command(scenario, **kwargs)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, run


def wait_sipp(proc: subprocess.Popen, run: SippRun, timeout_s: float = 30) -> SippRun:
    try:
        run.returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc, 2)
        run.returncode = None
    return run


def wait_udp_bound(port: int, timeout_s: float = 10.0, proc: subprocess.Popen | None = None) -> bool:
    """True once something listens on 127.0.0.1:port/UDP (read from /proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open("/proc/net/udp") as f:
                if any(line.split()[1] == want for line in f.readlines()[1:] if len(line.split()) > 1):
                    return True
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def synthesise(text: str, out_dir: str, stem: str) -> tuple[str, str]:
    """espeak-ng speech for text as (8 kHz µ-law raw .ul, 8 kHz 16-bit WAV)."""
    wav = os.path.join(out_dir, f"{stem}.espeak.wav")
    ul = os.path.join(out_dir, f"{stem}.ul")
    wav8 = os.path.join(out_dir, f"{stem}.8k.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", wav, text], check=True,
                   capture_output=True, timeout=30)
    subprocess.run(["sox", "-D", "-V1", wav, "-r", "8000", "-c", "1", "-t", "ul", ul], check=True,
                   capture_output=True, timeout=30)
    subprocess.run(["sox", "-D", "-V1", "-t", "ul", "-r", "8000", "-c", "1", ul, "-b", "16", "-e",
                    "signed-integer", wav8], check=True, capture_output=True, timeout=30)
    return ul, wav8

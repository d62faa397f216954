#!/usr/bin/env python3
"""A real SIP caller for end-to-end tests, built on pjsua2.

It places one call, records what it hears (8 kHz mono 16-bit WAV), sends RFC 4733 digits at
set times after the call is confirmed, optionally plays a WAV file into the call as its voice
(--play, once, --play-at seconds after confirmation), optionally hangs up itself, and always
ends within --timeout. It prints exactly one JSON line on stdout:

    {"connected": bool, "last_status_code": int, "hung_up_by": "remote"|"local"|null,
     "call_duration_s": float, "digits_sent": "...", "record": "path",
     "play_started_s": float|null (with --play), "dtmf_received": "...",
     "dtmf_events": [{"digit", "duration_ms", "method", "t"}], ...}

dtmf_received lists the keys the far end sent (RFC 4733 or SIP INFO), each once, at its end.

hung_up_by is "remote" when the far end ended the call (BYE, or a final error response to the
INVITE), "local" when this script did (--hangup-after, --timeout), null if the call never
ended (it could not be placed). call_duration_s counts from confirmation to disconnection.

Example:
    caller.py --uri sip:+15550100@127.0.0.1:5060 --local-port 5070 --record out.wav \
        --digits "1@6.0" --timeout 30

pjsua2 runs single-threaded (threadCnt=0, mainThreadOnly=True) on the null audio device, with
SIP and RTP bound to 127.0.0.1 (set up by pjcommon.py); events are pumped with
libHandleEvents in a bounded loop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pjcommon  # noqa: E402
from pjcommon import PUMP_MS  # noqa: E402


def parse_digits(spec: str) -> list[tuple[float, str]]:
    """'1@6.0,23@9' -> [(6.0, '1'), (9.0, '23')], sorted by time."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        digits, sep, at = item.partition("@")
        if not sep or not digits:
            raise ValueError(f"bad --digits item {item!r}: want DIGITS@SECONDS")
        if any(c not in "0123456789*#ABCDabcd" for c in digits):
            raise ValueError(f"bad DTMF digits {digits!r}")
        out.append((float(at), digits.upper()))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Place one SIP call with pjsua2 and report it as JSON.")
    ap.add_argument("--uri", required=True, help="SIP URI to call, e.g. sip:+15550100@127.0.0.1:5060")
    ap.add_argument("--local-port", type=int, default=5070, help="local SIP UDP port (127.0.0.1)")
    ap.add_argument("--rtp-port", type=int, default=0,
                    help="first local RTP port (default: local port + 2)")
    ap.add_argument("--record", default="caller.wav", help="WAV file of what the caller hears")
    ap.add_argument("--digits", default="",
                    help='RFC 4733 digits to send, "DIGITS@SECONDS" after confirmation, comma-separated')
    ap.add_argument("--hangup-after", type=float, default=None,
                    help="hang up this many seconds after the call is confirmed "
                         "(default: wait for the far end)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="hard bound in seconds; the call is ended locally when reached")
    ap.add_argument("--play", default=None,
                    help="WAV file (8 kHz mono 16-bit best) to send as the caller's voice, once")
    ap.add_argument("--play-at", type=float, default=0.0,
                    help="seconds after confirmation at which --play starts (default 0)")
    ap.add_argument("--from-user", default="e2e-caller", help="user part of the From URI")
    ap.add_argument("--log", default=None, help="write pjsip's log (level 5) to this file")
    args = ap.parse_args(argv)

    try:
        schedule = parse_digits(args.digits)
    except ValueError as e:
        ap.error(str(e))

    # pjsip may write to stdout before its log config applies: keep fd 1 for our JSON line.
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    # Last resort if the native library wedges: the default SIGALRM action ends the process.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(args.timeout) + 30)

    result = run_call(args, schedule)
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return 0


def run_call(args, schedule: list[tuple[float, str]]) -> dict:
    import pjsua2 as pj

    record_path = os.path.abspath(args.record)
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    if os.path.exists(record_path):
        os.unlink(record_path)
    state = {
        "connected": False,
        "confirmed_at": None,
        "disconnected_at": None,
        "last_status_code": 0,
        "last_reason": "",
        "local_hangup": False,
        "disconnected": False,
    }
    holders: dict = {"recorder": None, "media": None, "player": None}
    play_path = os.path.abspath(args.play) if args.play else None
    play_started = None
    dtmf = pjcommon.DtmfLog()

    class Caller(pj.Call):
        def onCallState(self, prm):  # noqa: N802 (pjsua2 API name)
            pjcommon.note_call_state(state, self.getInfo())

        def onDtmfEvent(self, prm):  # noqa: N802
            confirmed = state["confirmed_at"]
            dtmf.on_event(prm, time.monotonic() - confirmed if confirmed else 0.0)

        def onCallMediaState(self, prm):  # noqa: N802
            ci = self.getInfo()
            for i, mi in enumerate(ci.media):
                if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                    continue
                media = self.getAudioMedia(i)
                holders["media"] = media
                if holders["recorder"] is None:
                    rec = pj.AudioMediaRecorder()
                    rec.createRecorder(record_path)
                    holders["recorder"] = rec
                media.startTransmit(holders["recorder"])

    ep = pjcommon.create_endpoint(args.local_port, "voxflow-e2e-caller", args.log)
    acfg = pjcommon.account_config(f"sip:{args.from_user}@127.0.0.1:{args.local_port}",
                                   args.rtp_port or args.local_port + 2)
    account = pj.Account()
    account.create(acfg)

    call = Caller(account)
    started = time.monotonic()
    deadline = started + args.timeout
    digits_sent = ""
    error = None
    try:
        call.makeCall(args.uri, pj.CallOpParam(True))
    except pj.Error as e:
        error = f"makeCall: {e.info()}"
        state["disconnected"] = True

    pending = list(schedule)
    hangup_sent = False
    while not state["disconnected"]:
        ep.libHandleEvents(PUMP_MS)
        now = time.monotonic()
        if state["disconnected"]:
            break
        confirmed = state["confirmed_at"]
        want_hangup = now >= deadline or (
            confirmed is not None
            and args.hangup_after is not None
            and now - confirmed >= args.hangup_after
        )
        if want_hangup and not hangup_sent:
            hangup_sent = True
            state["local_hangup"] = True
            try:
                call.hangup(pj.CallOpParam(True))
            except pj.Error as e:
                error = f"hangup: {e.info()}"
                break
            deadline = max(deadline, now) + 5.0  # room for the BYE/CANCEL transaction
        elif hangup_sent and now >= deadline:
            error = "call did not end after local hangup"
            break
        if (play_path and play_started is None and confirmed is not None and not hangup_sent
                and holders["media"] is not None and now - confirmed >= args.play_at):
            play_started = round(now - confirmed, 3)
            error = pjcommon.start_player(holders, play_path) or error
        while pending and confirmed is not None and not hangup_sent and now - confirmed >= pending[0][0]:
            _, digits = pending.pop(0)
            prm = pj.CallSendDtmfParam()
            prm.digits = digits
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.duration = 200
            try:
                call.sendDtmf(prm)
                digits_sent += digits
            except pj.Error as e:
                error = f"sendDtmf {digits}: {e.info()}"

    # Teardown: drop the player and recorder (flushes the WAV header), let the BYE/ACK go out,
    # then stop.
    holders["player"] = None
    holders["recorder"] = None
    holders["media"] = None
    pjcommon.pump(ep, 20)
    del call
    account.shutdown()
    del account
    pjcommon.pump(ep, 10)
    ep.libDestroy()
    del ep
    pjcommon.ensure_wav(record_path)

    hung_up_by, duration = pjcommon.call_outcome(state)
    out = {
        "connected": state["connected"],
        "last_status_code": state["last_status_code"],
        "hung_up_by": hung_up_by,
        "call_duration_s": duration,
        "digits_sent": digits_sent,
        "record": record_path,
        "last_reason": state["last_reason"],
        "dtmf_received": dtmf.digits,
        "dtmf_events": dtmf.events,
    }
    if play_path:
        out["play_started_s"] = play_started
    if error:
        out["error"] = error
    return out


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A real SIP callee for end-to-end tests of outbound calls, built on pjsua2.

It registers nowhere: it listens on 127.0.0.1:PORT (UDP) and takes the first INVITE that
arrives. Per --mode it

    answer       answers at once (200 with SDP, PCMU preferred);
    ring-answer  sends 180 Ringing, then answers --ring-s seconds later (default 2);
    reject-486   answers the INVITE with 486 Busy Here;
    reject-603   answers the INVITE with 603 Decline;
    no-answer    sends 180 Ringing and never answers (the caller must CANCEL or give up).

It records what it hears to --record (8 kHz mono 16-bit WAV), optionally plays a WAV file into
the call as its voice (--play, once, --play-at seconds after confirmation), never hangs up an
answered call itself unless --hangup-after is given, and always ends within --timeout (no
INVITE by then, or a call still up then, which it hangs up). A second INVITE while the first
is handled gets 486. It prints exactly one JSON line on stdout:

    {"got_invite": bool, "connected": bool, "last_status_code": int, "last_reason": str,
     "hung_up_by": "remote"|"local"|null, "call_duration_s": float, "saw_cancel": bool,
     "saw_bye": bool, "invite_from": str, "invite_uri": str, "extra_invites": int,
     "record": "path", "dtmf_received": "1234#",
     "dtmf_events": [{"digit", "duration_ms", "method", "t"}],
     "play_started_s": float|null (with --play), ...}

dtmf_received lists each key received (RFC 4733 or SIP INFO, as pjsua2's onDtmfEvent reports
it) once, at its end; t counts seconds from confirmation.

hung_up_by is "remote" when the caller ended the call (BYE, or CANCEL before the answer),
"local" when this script did (a rejection, --hangup-after, --timeout), null if no call ended.
call_duration_s counts from confirmation (ACK) to disconnection.

Example:
    callee.py --port 5080 --mode ring-answer --record heard.wav --timeout 30

The process prints "callee listening" on stderr once its SIP transport is bound; a test
should in any case wait for the UDP port (harness.wait_udp_bound) before dialling it.
pjsua2 runs single-threaded (threadCnt=0, mainThreadOnly=True) on the null audio device, with
SIP and RTP bound to 127.0.0.1 (set up by pjcommon.py); events are pumped with libHandleEvents in a bounded loop.
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

MODES = ("answer", "ring-answer", "reject-486", "reject-603", "no-answer")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Take one SIP call with pjsua2 and report it as JSON.")
    ap.add_argument("--port", type=int, required=True, help="local SIP UDP port (127.0.0.1)")
    ap.add_argument("--rtp-port", type=int, default=0,
                    help="first local RTP port (default: SIP port + 2)")
    ap.add_argument("--mode", choices=MODES, default="answer")
    ap.add_argument("--ring-s", type=float, default=2.0,
                    help="ring-answer: seconds between 180 and 200")
    ap.add_argument("--record", default="callee.wav", help="WAV file of what the callee hears")
    ap.add_argument("--hangup-after", type=float, default=None,
                    help="hang up this many seconds after the call is confirmed "
                         "(default: never, wait for the caller)")
    ap.add_argument("--timeout", type=float, default=40.0,
                    help="hard bound in seconds from start; a live call is then hung up")
    ap.add_argument("--play", default=None,
                    help="WAV file (8 kHz mono 16-bit best) to send as the callee's voice, once")
    ap.add_argument("--play-at", type=float, default=0.0,
                    help="seconds after confirmation at which --play starts (default 0)")
    ap.add_argument("--user", default="bob", help="user part of this callee's URI")
    ap.add_argument("--log", default=None, help="write pjsip's log (level 5) to this file")
    args = ap.parse_args(argv)

    # pjsip may write to stdout before its log config applies: keep fd 1 for our JSON line.
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    # Last resort if the native library wedges: the default SIGALRM action ends the process.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(args.timeout) + 30)

    result = run_callee(args)
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return 0


def run_callee(args) -> dict:
    import pjsua2 as pj

    record_path = os.path.abspath(args.record)
    os.makedirs(os.path.dirname(record_path), exist_ok=True)
    if os.path.exists(record_path):
        os.unlink(record_path)
    state = {
        "got_invite": False,
        "invite_at": None,
        "ringing_sent_at": None,
        "answered": False,
        "connected": False,
        "confirmed_at": None,
        "disconnected": False,
        "disconnected_at": None,
        "last_status_code": 0,
        "last_reason": "",
        "local_hangup": False,
        "saw_cancel": False,
        "saw_bye": False,
        "invite_from": "",
        "invite_uri": "",
        "extra_invites": 0,
        "rx_requests": [],
    }
    holders: dict = {"call": None, "recorder": None, "extra": [], "media": None,
                     "player": None}
    play_path = os.path.abspath(args.play) if args.play else None
    play_started = None
    dtmf = pjcommon.DtmfLog()

    def note_rx_request(prm) -> None:
        """Remember requests received inside the call (CANCEL, BYE) from transaction events."""
        try:
            e = prm.e
            if e.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            ts = e.body.tsxState
            if ts.type != pj.PJSIP_EVENT_RX_MSG:
                return
            tsx = ts.tsx
            if tsx.role != pj.PJSIP_ROLE_UAS:
                return
            method = tsx.method
        except Exception:  # noqa: BLE001 (introspection only; never break the call on it)
            return
        if method and (not state["rx_requests"] or state["rx_requests"][-1] != method):
            state["rx_requests"].append(method)
        if method == "CANCEL":
            state["saw_cancel"] = True
        elif method == "BYE":
            state["saw_bye"] = True

    class Callee(pj.Call):
        def onCallState(self, prm):  # noqa: N802 (pjsua2 API name)
            pjcommon.note_call_state(state, self.getInfo())

        def onCallTsxState(self, prm):  # noqa: N802
            note_rx_request(prm)

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

    class Extra(pj.Call):
        """A further INVITE while the first call is handled: refused with 486."""

    class Acc(pj.Account):
        def onIncomingCall(self, prm):  # noqa: N802
            if holders["call"] is not None:
                state["extra_invites"] += 1
                extra = Extra(self, prm.callId)
                op = pj.CallOpParam()
                op.statusCode = 486
                try:
                    extra.answer(op)
                except pj.Error:
                    pass
                holders["extra"].append(extra)
                return
            call = Callee(self, prm.callId)
            holders["call"] = call
            state["got_invite"] = True
            state["invite_at"] = time.monotonic()
            try:
                ci = call.getInfo()
                state["invite_uri"] = ci.localUri
                state["invite_from"] = ci.remoteUri
            except Exception:  # noqa: BLE001
                pass

    ep = pjcommon.create_endpoint(args.port, "voxflow-e2e-callee", args.log)
    acfg = pjcommon.account_config(f"sip:{args.user}@127.0.0.1:{args.port}",
                                   args.rtp_port or args.port + 2)
    account = Acc()
    account.create(acfg, True)
    print("callee listening", file=sys.stderr, flush=True)

    started = time.monotonic()
    deadline = started + args.timeout
    error = None
    handled = False  # the first INVITE got its scripted reaction (or ringing is under way)
    hangup_sent = False

    def respond(code: int) -> None:
        nonlocal error
        op = pj.CallOpParam(True)
        op.statusCode = code
        try:
            holders["call"].answer(op)
        except pj.Error as e:
            error = f"answer {code}: {e.info()}"

    while not state["disconnected"]:
        ep.libHandleEvents(PUMP_MS)
        now = time.monotonic()
        if state["disconnected"]:
            break
        call = holders["call"]
        if call is not None and not handled:
            handled = True
            if args.mode == "answer":
                state["answered"] = True
                respond(200)
            elif args.mode in ("ring-answer", "no-answer"):
                respond(180)
                state["ringing_sent_at"] = now
            elif args.mode == "reject-486":
                state["local_hangup"] = True
                respond(486)
            elif args.mode == "reject-603":
                state["local_hangup"] = True
                respond(603)
        if (args.mode == "ring-answer" and not state["answered"] and state["ringing_sent_at"]
                is not None and now - state["ringing_sent_at"] >= args.ring_s):
            state["answered"] = True
            respond(200)
        confirmed = state["confirmed_at"]
        want_hangup = now >= deadline or (
            confirmed is not None and args.hangup_after is not None
            and now - confirmed >= args.hangup_after)
        if want_hangup and not hangup_sent:
            if call is None:
                error = "no INVITE before the timeout"
                break
            hangup_sent = True
            state["local_hangup"] = True
            op = pj.CallOpParam(True)
            if not state["answered"]:
                op.statusCode = 480  # still ringing at the timeout: give up with 480
            try:
                call.hangup(op)
            except pj.Error as e:
                error = f"hangup: {e.info()}"
                break
            deadline = max(deadline, now) + 5.0  # room for the BYE / final response
        elif hangup_sent and now >= deadline:
            error = "call did not end after local hangup"
            break
        if (play_path and play_started is None and confirmed is not None and not hangup_sent
                and holders["media"] is not None and now - confirmed >= args.play_at):
            play_started = round(now - confirmed, 3)
            error = pjcommon.start_player(holders, play_path) or error

    # Teardown: pump a little so the ACK of a rejection or the 200 to a BYE is absorbed, drop
    # the player and the recorder (flushes the WAV header), then stop.
    holders["player"] = None
    holders["recorder"] = None
    holders["media"] = None
    call = None  # every Call must be gone before libDestroy (its destructor calls into pjsua)
    pjcommon.pump(ep, 30)
    holders["call"] = None
    holders["extra"] = []
    account.shutdown()
    del account
    pjcommon.pump(ep, 10)
    ep.libDestroy()
    del ep
    pjcommon.ensure_wav(record_path)

    hung_up_by, duration = pjcommon.call_outcome(state)
    out = {
        "mode": args.mode,
        "got_invite": state["got_invite"],
        "connected": state["connected"],
        "last_status_code": state["last_status_code"],
        "last_reason": state["last_reason"],
        "hung_up_by": hung_up_by,
        "call_duration_s": duration,
        "saw_cancel": state["saw_cancel"],
        "saw_bye": state["saw_bye"],
        "rx_requests": state["rx_requests"],
        "invite_from": state["invite_from"],
        "invite_uri": state["invite_uri"],
        "extra_invites": state["extra_invites"],
        "record": record_path,
        "dtmf_received": dtmf.digits,
        "dtmf_events": dtmf.events,
    }
    if state["invite_at"] is not None and state["disconnected_at"] is not None:
        out["invite_to_end_s"] = round(state["disconnected_at"] - state["invite_at"], 3)
    if play_path:
        out["play_started_s"] = play_started
    if error:
        out["error"] = error
    return out


if __name__ == "__main__":
    sys.exit(main())

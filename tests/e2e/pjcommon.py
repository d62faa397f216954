"""pjsua2 set-up shared by caller.py and callee.py.

One place for what every pjsua2 user agent of the suite needs (REAL_CLIENTS.md): the null
audio device, single-threaded (threadCnt=0, mainThreadOnly=True), SIP and RTP bound to
127.0.0.1, 8 kHz mono, no VAD and no echo canceller, PCMU then PCMA only, no ICE and no NAT
rewriting.
"""

from __future__ import annotations

import os
import time
import wave

PUMP_MS = 10
# pjmedia_stream_dtmf_event flags: PJMEDIA_STREAM_DTMF_IS_END (not exported by pjsua2).
DTMF_IS_END = 2


def create_endpoint(sip_port: int, user_agent: str, log_file: str | None):
    """A started pjsua2 Endpoint with one UDP transport on 127.0.0.1:sip_port."""
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = user_agent
    cfg.uaConfig.maxCalls = 4
    cfg.logConfig.consoleLevel = 0
    cfg.logConfig.level = 5 if log_file else 0
    if log_file:
        cfg.logConfig.filename = log_file
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.channelCount = 1
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    ep.libInit(cfg)

    tcfg = pj.TransportConfig()
    tcfg.port = sip_port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 0)
    for codec in ep.codecEnum2():
        if codec.codecId.startswith("PCMU/"):
            ep.codecSetPriority(codec.codecId, 255)
        elif codec.codecId.startswith("PCMA/"):
            ep.codecSetPriority(codec.codecId, 254)
    return ep


def account_config(id_uri: str, rtp_port: int):
    """An AccountConfig: no registration, no ICE/NAT rewriting, RTP on 127.0.0.1:rtp_port+."""
    import pjsua2 as pj

    acfg = pj.AccountConfig()
    acfg.idUri = id_uri
    acfg.regConfig.registerOnAdd = False
    acfg.natConfig.iceEnabled = False
    acfg.natConfig.sdpNatRewriteUse = 0
    acfg.natConfig.viaRewriteUse = 0
    acfg.natConfig.contactRewriteUse = 0
    mt = acfg.mediaConfig.transportConfig
    mt.boundAddress = "127.0.0.1"
    mt.publicAddress = "127.0.0.1"
    mt.port = rtp_port
    mt.portRange = 64
    return acfg


def pump(ep, times: int) -> None:
    for _ in range(times):
        ep.libHandleEvents(PUMP_MS)


def ensure_wav(path: str) -> None:
    """An empty 8 kHz mono WAV when pjsua2 wrote none (the call never had media)."""
    if not os.path.exists(path) or os.path.getsize(path) < 44:
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)


class DtmfLog:
    """Digits received, from pjsua2's onDtmfEvent (start, updates, end: a key counts at its end)."""

    def __init__(self) -> None:
        self.digits = ""
        self.events: list[dict] = []
        self._open: dict[str, int] = {}

    def on_event(self, prm, t: float) -> None:
        digit = str(prm.digit)
        ended = bool(int(prm.flags) & DTMF_IS_END)
        if not ended:
            self._open[digit] = self._open.get(digit, 0) + 1
            return
        self._open.pop(digit, None)
        self.digits += digit
        self.events.append({"digit": digit, "duration_ms": int(prm.duration),
                            "method": int(prm.method), "t": round(t, 3)})


def note_call_state(state: dict, ci) -> None:
    """Records a pjsua2 CallInfo in the shared call state: the last status, when the call was
    confirmed (first time only) and when it was disconnected."""
    import pjsua2 as pj

    if ci.lastStatusCode:
        state["last_status_code"] = int(ci.lastStatusCode)
        state["last_reason"] = ci.lastReason
    if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and state["confirmed_at"] is None:
        state["connected"] = True
        state["confirmed_at"] = time.monotonic()
    elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
        state["disconnected"] = True
        state["disconnected_at"] = time.monotonic()


def call_outcome(state: dict) -> tuple[str | None, float]:
    """Who ended the call ("local", "remote", or None if it never ended) and how long it was up
    (seconds from confirmation to disconnection, 0.0 if never confirmed), from the callbacks'
    `disconnected_at`, `local_hangup` and `confirmed_at`."""
    if state["disconnected_at"] is None:
        hung_up_by = None
    elif state["local_hangup"]:
        hung_up_by = "local"
    else:
        hung_up_by = "remote"
    duration = 0.0
    if state["confirmed_at"] is not None:
        end = state["disconnected_at"] or time.monotonic()
        duration = round(end - state["confirmed_at"], 3)
    return hung_up_by, duration


def start_player(holders: dict, path: str) -> str | None:
    """Play the WAV at `path` once into the call's audio (`holders["media"]`). The player is kept
    only in `holders["player"]`: it must be gone before libDestroy. An error sentence, or None."""
    import pjsua2 as pj

    try:
        holders["player"] = pj.AudioMediaPlayer()
        holders["player"].createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
        holders["player"].startTransmit(holders["media"])
    except pj.Error as e:
        return f"play {path}: {e.info()}"
    return None

#!/usr/bin/env python3
"""Self-test of the end-to-end harness, without voxflow.

Proves the tools the real end-to-end test relies on:
  - hear.py: espeak-ng prompts pushed through 8 kHz µ-law with gaps come back in order;
    silence, noise and an out-of-set sentence give nothing;
  - the SIPp UAC scenarios in sipp/: each passes against a SIPp peer that answers the way
    voxflow must (sipp/peers/), fails against one that answers wrongly, and CANCEL/ACK reuse
    the INVITE's branch;
  - caller.py: against SIPp UAS peers (the built-in `-sn uas` and one streaming a µ-law
    prompt) it connects, records what it hears (recognised by hear.py), reports who hung up,
    sends RFC 4733 digits at the set times (checked on the wire by a local RTP sink), handles
    a rejection and a CANCEL on timeout;
  - the media group's tools: rawsip.py against itself (RFC 4733 without marker bit on a
    foreign SSRC arrives as sent, in-band tones are found by the Goertzel detector, speech is
    not taken for a key), and caller.py --play into callee.py (the callee hears the sentence
    and reports the RFC 4733 keys it got).

Run: .venv/bin/python tests/e2e/selftest.py   (after scripts/install-test-deps.sh)
Prints ok/FAIL per case and "N passed, M failed"; exit code 0 only if all passed.
Uses 127.0.0.1 ports 62100-63999 (or a fresh network namespace when root).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Report, log  # noqa: E402

MENU = "welcome to voxflow press one for sales or two for support"
SALES = "you chose sales"
SUPPORT = "you chose support"
NO_CHOICE = "no choice was made"
OUTBOUND = "this is an outbound test call"  # what run_e2e.py's outbound calls say
PHRASES = [MENU, SALES, SUPPORT, NO_CHOICE, OUTBOUND]


class Ports:
    """Hands out distinct local ports from a base."""

    def __init__(self, base: int):
        self.next = base

    def take(self, n: int = 1) -> int:
        p = self.next
        self.next += n
        return p


def mulaw_silence(seconds: float) -> bytes:
    return b"\xff" * int(8000 * seconds)


def ul_to_wav(ul_bytes: bytes, path: str) -> str:
    raw = path + ".ul"
    with open(raw, "wb") as f:
        f.write(ul_bytes)
    subprocess.run(["sox", "-D", "-V1", "-t", "ul", "-r", "8000", "-c", "1", raw, "-b", "16", "-e",
                    "signed-integer", path], check=True, capture_output=True, timeout=30)
    return path


# ---------------------------------------------------------------------------------------------


def test_hear(rep: Report, out: str) -> dict[str, str]:
    import hear

    others = ["the weather is nice today in paris", "the number you have dialed is not in service",
              "thank you for calling goodbye"]
    ul = {}
    for i, text in enumerate(PHRASES + others):
        ul_path, _ = harness.synthesise(text, out, f"prompt{i}")
        with open(ul_path, "rb") as f:
            ul[text] = f.read()

    def heard(name: str, parts: list, expect: list[str]) -> None:
        data = b"".join(ul[p] if isinstance(p, str) else mulaw_silence(p) for p in parts)
        wav = ul_to_wav(data, os.path.join(out, f"hear_{name}.wav"))
        got = hear.hear(wav, PHRASES)
        rep.check(f"hear {name}", got == expect, f"heard {got}, want {expect}")

    for i, text in enumerate(PHRASES):
        heard(f"alone_{i}", [0.5, text, 0.5], [text])
    heard("menu_then_sales_gap1s", [0.7, MENU, 1.0, SALES, 1.0], [MENU, SALES])
    heard("menu_then_support_gap0.3s", [0.2, MENU, 0.3, SUPPORT, 0.2], [MENU, SUPPORT])
    heard("menu_wait_no_choice", [0.5, MENU, 6.0, NO_CHOICE, 0.5], [MENU, NO_CHOICE])
    heard("four_in_order", [0.3, NO_CHOICE, 0.8, SUPPORT, 0.8, MENU, 0.8, SALES, 0.3],
          [NO_CHOICE, SUPPORT, MENU, SALES])
    heard("menu_at_recording_start", [0.04, MENU, 0.5], [MENU])
    heard("prompt_at_recording_end", [0.5, MENU, 0.8, SALES], [MENU, SALES])
    heard("silence", [5.0], [])
    for i, text in enumerate(others):
        heard(f"out_of_set_sentence_{i}", [0.5, text, 0.5], [])
    # A prompt cut short ("you chose sa...") must not pass for the whole prompt.
    ul["truncated"] = ul[SALES][: int(8000 * 0.6)]
    heard("truncated_prompt", [0.5, "truncated", 0.5], [])

    noise = os.path.join(out, "hear_noise.wav")
    subprocess.run(["sox", "-V1", "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    noise, "synth", "3", "whitenoise", "vol", "0.1"], check=True, timeout=30)
    got = hear.hear(noise, PHRASES)
    rep.check("hear white_noise", got == [], f"heard {got}")
    tone = os.path.join(out, "hear_tone.wav")
    subprocess.run(["sox", "-V1", "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    tone, "synth", "2", "sine", "1000", "vol", "0.3"], check=True, timeout=30)
    got = hear.hear(tone, PHRASES)
    rep.check("hear tone_1khz", got == [], f"heard {got}")
    empty = os.path.join(out, "hear_missing.wav")
    rep.check("hear missing_file", hear.hear(empty, PHRASES) == [])
    return {text: os.path.join(out, f"prompt{i}.ul") for i, text in enumerate(PHRASES)}


def branch_of(messages_log: str, start_line: str) -> list[str]:
    """Via branches of the messages in a SIPp trace whose first line starts with start_line."""
    out = []
    with open(messages_log, errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(start_line):
            for h in lines[i + 1:i + 15]:
                if h.lower().startswith("via:") and "branch=" in h:
                    out.append(h.split("branch=", 1)[1].split(";")[0].strip())
                    break
    return out


def test_scenarios(rep: Report, out: str, ports: Ports) -> None:
    cases = [
        # scenario, peer, keys, number, want_rc, what
        ("cancel.xml", "peers/cancel_target.xml", {}, "+15550101", 0, "CANCEL -> 200 + 487"),
        ("no_common_codec.xml", "peers/reject_invite.xml.in",
         {"code": "488", "reason": "Not Acceptable Here"}, "+15550100", 0, "488"),
        ("unknown_number.xml", "peers/reject_invite.xml.in",
         {"code": "404", "reason": "Not Found"}, "+15550199", 0, "404"),
        ("options.xml", "peers/respond.xml.in", {"code": "200", "reason": "OK"}, "+15550100", 0, "200"),
        ("malformed.xml", "peers/respond.xml.in",
         {"code": "400", "reason": "Bad Request"}, "+15550100", 0, "400 echoing the broken CSeq"),
        ("unknown_method.xml", "peers/respond.xml.in",
         {"code": "501", "reason": "Not Implemented"}, "+15550100", 0, "501"),
        ("bye_unknown_dialog.xml", "peers/respond.xml.in",
         {"code": "481", "reason": "Call/Transaction Does Not Exist"}, "+15550100", 0, "481"),
        # The scenarios must notice a wrong answer.
        ("options.xml", "peers/respond.xml.in", {"code": "404", "reason": "Not Found"}, "+15550100",
         1, "fails on 404 instead of 200"),
        ("unknown_number.xml", "peers/reject_invite.xml.in",
         {"code": "486", "reason": "Busy Here"}, "+15550199", 1, "fails on 486 instead of 404"),
    ]
    for scenario, peer, keys, number, want_rc, what in cases:
        name = scenario[:-4] + ("" if want_rc == 0 else "_negative")
        peer_port, uac_port, media = ports.take(), ports.take(), ports.take(4)
        if peer.endswith(".in"):
            peer = peer_from_template(out, os.path.basename(peer)[:-7], f"peer_{name}",
                                      code=keys["code"], reason=keys["reason"])
        peer_proc, peer_run = harness.start_sipp(
            peer, local_port=peer_port, out_dir=out, name=f"peer_{name}",
            recv_timeout_ms=None, global_timeout_s=15, media_port=ports.take(4))
        if not harness.wait_udp_bound(peer_port, 10, peer_proc):
            rep.check(f"sipp {name} ({what})", False, "peer did not start")
            harness.stop_process(peer_proc, 2)
            continue
        run = harness.run_sipp(scenario, remote=f"127.0.0.1:{peer_port}", service=number,
                               local_port=uac_port, media_port=media, out_dir=out, name=name,
                               recv_timeout_ms=5000)
        if want_rc == 0:
            harness.wait_sipp(peer_proc, peer_run, 10)
        else:
            harness.stop_process(peer_proc, 2)
        ok = run.returncode == want_rc
        detail = f"sipp exit {run.returncode}, want {want_rc}\n{run.tail(20)}"
        if ok and want_rc == 0 and peer_run.returncode != 0:
            ok, detail = False, f"peer exit {peer_run.returncode}\n{peer_run.tail(20)}"
        if ok and want_rc == 0 and scenario in ("cancel.xml", "no_common_codec.xml",
                                                 "unknown_number.xml"):
            invite = branch_of(run.message_log, "INVITE ")
            later = branch_of(run.message_log, "CANCEL ") + branch_of(run.message_log, "ACK ")
            ok = len(invite) >= 1 and len(later) >= 1 and all(b == invite[0] for b in later)
            detail = f"INVITE branch {invite}, CANCEL/ACK branches {later}"
        rep.check(f"sipp {name} ({what})", ok, detail)


def peer_from_template(out: str, template: str, name: str, **subst: str) -> str:
    """Write sipp/peers/<template>.xml.in with @KEY@ tokens replaced; returns its path."""
    with open(os.path.join(harness.SIPP_DIR, "peers", f"{template}.xml.in")) as f:
        text = f.read()
    for key, value in subst.items():
        text = text.replace(f"@{key.upper()}@", value)
    path = os.path.join(out, f"{name}.xml")
    with open(path, "w") as f:
        f.write(text)
    return path


def play_peer(out: str, prompt_ul: str | None, hold_ms: int, sdp_audio_port: str, name: str) -> str:
    play = "<!-- no prompt -->"
    if prompt_ul:
        play = (f'<nop><action><exec rtp_stream="{os.path.abspath(prompt_ul)},1,0"/>'
                "</action></nop>")
    return peer_from_template(out, "answer_and_play", name, play=play, hold_ms=str(hold_ms),
                              sdp_audio_port=sdp_audio_port)


class RtpSink:
    """A UDP socket on 127.0.0.1 that keeps (arrival time, payload type, payload) of RTP."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, int, int, bytes]] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                break
            if len(data) >= 12 and data[0] >> 6 == 2:
                cc = data[0] & 0x0F
                ts = struct.unpack("!I", data[4:8])[0]
                self.packets.append((time.monotonic(), data[1] & 0x7F, ts, data[12 + 4 * cc:]))

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()

    def digits(self, event_pt: int) -> list[tuple[str, float]]:
        """RFC 4733 digits (one per event timestamp, once an end packet arrived) and their
        onset relative to the first audio packet."""
        names = "0123456789*#ABCD"
        first = next((t for t, pt, _, _ in self.packets if pt != event_pt), None)
        seen: dict[int, tuple[str, float, bool]] = {}
        for t, pt, ts, payload in self.packets:
            if pt != event_pt or len(payload) < 4 or payload[0] > 15:
                continue
            name = names[payload[0]]
            end = bool(payload[1] & 0x80)
            if ts not in seen:
                seen[ts] = (name, t, end)
            elif end:
                seen[ts] = (seen[ts][0], seen[ts][1], True)
        base = first if first is not None else 0.0
        return [(n, round(t - base, 2)) for ts, (n, t, end) in sorted(seen.items(), key=lambda kv: kv[1][1]) if end]


def test_caller(rep: Report, out: str, ports: Ports, prompts: dict[str, str]) -> None:
    import hear

    # 1. Built-in SIPp UAS: answers; the caller hangs up itself.
    peer_port = ports.take()
    proc, run = harness.start_sipp("builtin:uas", local_port=peer_port, out_dir=out,
                                   name="peer_builtin_uas", recv_timeout_ms=None,
                                   media_port=ports.take(4))
    if harness.wait_udp_bound(peer_port, 10, proc):
        res = harness.run_caller(f"sip:service@127.0.0.1:{peer_port}", ports.take(), os.path.join(
            out, "caller_builtin.wav"), rtp_port=ports.take(8), hangup_after=1.0, timeout=15)
        harness.wait_sipp(proc, run, 10)
        ok = (res.get("connected") is True and res.get("hung_up_by") == "local"
              and res.get("last_status_code") == 200 and 0.8 <= res.get("call_duration_s", 0) <= 3
              and run.returncode == 0)
        rep.check("caller vs sipp -sn uas: connects, hangs up itself", ok, f"{res} peer exit {run.returncode}")
    else:
        harness.stop_process(proc, 2)
        rep.check("caller vs sipp -sn uas: connects, hangs up itself", False, "uas did not start")

    # 2. A UAS that streams a prompt then hangs up: the caller hears it, remote hangup.
    for text, stem in ((SUPPORT, "support"), (MENU, "menu")):
        peer_port = ports.take()
        scen = play_peer(out, prompts[text], 6000 if text == MENU else 3000, "[media_port]",
                         f"peer_play_{stem}")
        proc, run = harness.start_sipp(scen, local_port=peer_port, out_dir=out,
                                       name=f"peer_play_{stem}", recv_timeout_ms=None,
                                       media_port=ports.take(4))
        if not harness.wait_udp_bound(peer_port, 10, proc):
            harness.stop_process(proc, 2)
            rep.check(f"caller hears a streamed prompt ({stem})", False, "peer did not start")
            continue
        record = os.path.join(out, f"caller_play_{stem}.wav")
        res = harness.run_caller(f"sip:+15550100@127.0.0.1:{peer_port}", ports.take(), record,
                                 rtp_port=ports.take(8), timeout=20,
                                 log_file=os.path.join(out, f"caller_play_{stem}.pjsip.log"))
        harness.wait_sipp(proc, run, 10)
        got = hear.hear(record, PHRASES) if os.path.exists(record) else None
        ok = (res.get("connected") is True and res.get("hung_up_by") == "remote"
              and res.get("last_status_code") == 200 and res.get("record") == os.path.abspath(record)
              and got == [text] and run.returncode == 0)
        rep.check(f"caller hears a streamed prompt ({stem}), remote hangup", ok,
                  f"{res} heard {got} peer exit {run.returncode}\n{run.tail(10)}")

    # 3. RFC 4733 digits at the set times, seen on the wire by an RTP sink.
    peer_port, sink_port = ports.take(), ports.take(2)
    sink = RtpSink(sink_port)
    # No prompt here: pjsua latches its RTP onto the source of what it receives.
    scen = play_peer(out, None, 20000, str(sink_port), "peer_dtmf")
    proc, run = harness.start_sipp(scen, local_port=peer_port, out_dir=out, name="peer_dtmf",
                                   recv_timeout_ms=None, media_port=ports.take(4))
    if harness.wait_udp_bound(peer_port, 10, proc):
        res = harness.run_caller(f"sip:+15550100@127.0.0.1:{peer_port}", ports.take(),
                                 os.path.join(out, "caller_dtmf.wav"), rtp_port=ports.take(8),
                                 digits="1@1.0,2#@2.0", hangup_after=3.5, timeout=15)
        harness.wait_sipp(proc, run, 10)
        sink.close()
        digits = sink.digits(101)
        names = "".join(d for d, _ in digits)
        times_ok = (len(digits) == 3 and abs(digits[0][1] - 1.0) < 0.35
                    and abs(digits[1][1] - 2.0) < 0.35 and digits[2][1] - digits[1][1] < 0.6)
        ok = (res.get("digits_sent") == "12#" and res.get("hung_up_by") == "local"
              and names == "12#" and times_ok and run.returncode == 0)
        rep.check("caller sends RFC 4733 digits at the set times", ok,
                  f"{res} on the wire {digits} peer exit {run.returncode}")
    else:
        harness.stop_process(proc, 2)
        sink.close()
        rep.check("caller sends RFC 4733 digits at the set times", False, "peer did not start")

    # 4. Rejected call: final status reported, nobody connected.
    peer_port = ports.take()
    busy = peer_from_template(out, "reject_invite", "peer_busy", code="486", reason="Busy Here")
    proc, run = harness.start_sipp(busy, local_port=peer_port, out_dir=out, name="peer_busy",
                                   recv_timeout_ms=None, media_port=ports.take(4))
    if harness.wait_udp_bound(peer_port, 10, proc):
        res = harness.run_caller(f"sip:+15550100@127.0.0.1:{peer_port}", ports.take(),
                                 os.path.join(out, "caller_busy.wav"), rtp_port=ports.take(8),
                                 timeout=10)
        harness.wait_sipp(proc, run, 10)
        ok = (res.get("connected") is False and res.get("last_status_code") == 486
              and res.get("hung_up_by") == "remote" and run.returncode == 0
              and os.path.exists(res.get("record", "")))
        rep.check("caller reports a 486 rejection", ok, f"{res} peer exit {run.returncode}")
    else:
        harness.stop_process(proc, 2)
        rep.check("caller reports a 486 rejection", False, "peer did not start")

    # 5. Never answered: --timeout ends the call with a CANCEL (the peer checks 200/487/ACK).
    peer_port = ports.take()
    proc, run = harness.start_sipp("peers/cancel_target.xml", local_port=peer_port, out_dir=out,
                                   name="peer_ring", recv_timeout_ms=None,
                                   media_port=ports.take(4))
    if harness.wait_udp_bound(peer_port, 10, proc):
        t0 = time.monotonic()
        res = harness.run_caller(f"sip:+15550101@127.0.0.1:{peer_port}", ports.take(),
                                 os.path.join(out, "caller_ring.wav"), rtp_port=ports.take(8),
                                 timeout=2.0)
        took = time.monotonic() - t0
        harness.wait_sipp(proc, run, 10)
        ok = (res.get("connected") is False and res.get("hung_up_by") == "local"
              and res.get("last_status_code") == 487 and run.returncode == 0 and took < 10)
        rep.check("caller --timeout cancels an unanswered call", ok,
                  f"{res} took {took:.1f}s peer exit {run.returncode}")
    else:
        harness.stop_process(proc, 2)
        rep.check("caller --timeout cancels an unanswered call", False, "peer did not start")


def test_media_tools(rep: Report, out: str, ports: Ports) -> None:
    import hear
    import media_cases
    import rawsip

    said = "my voice comes back to me"
    _, said_wav = harness.synthesise(said, out, "media_said")
    found = rawsip.detect_digits(rawsip.read_wav_8k(said_wav))
    rep.check("rawsip: the Goertzel detector finds no key in speech", found == [], str(found))

    # rawsip uac -> rawsip uas: what the uac crafts arrives as crafted.
    uas_port, uas_rtp = ports.take(), ports.take(2)
    record = os.path.join(out, "rawsip_uas.wav")
    uas = media_cases.start_rawsip("uas", uas_port, uas_rtp,
                                   ["--codecs", "0,101", "--record", record, "--timeout", "15"])
    if not harness.wait_udp_bound(uas_port, 10, uas):
        rep.check("rawsip uac -> uas", False, str(media_cases.finish_rawsip(uas, 5)))
        return
    uac = media_cases.start_rawsip(
        "uac", ports.take(), ports.take(2),
        ["--server", f"127.0.0.1:{uas_port}", "--to", "bob", "--codecs", "0,101",
         "--rfc4733", "5@0.4", "--dtmf-ssrc", "foreign", "--dtmf-no-marker",
         "--inband", "7@1.0", "--hangup-after", "2.0", "--timeout", "10"])
    a = media_cases.finish_rawsip(uac, 20)
    b = media_cases.finish_rawsip(uas, 20)
    events = b.get("te_events") or []
    audio = set((b.get("audio_ssrcs") or {}).keys())
    tones = [d["digit"] for d in rawsip.detect_digits(rawsip.read_wav_8k(record))] \
        if os.path.exists(record) else []
    ok = (a.get("connected") and b.get("connected") and a.get("hung_up_by") == "local"
          and b.get("hung_up_by") == "remote" and len(events) == 1
          and events[0]["digit"] == "5" and events[0]["end"] and not events[0]["marker"]
          and str(events[0]["ssrc"]) not in audio and len(audio) == 1
          and events[0]["duration"] == 1600 and tones == ["7"])
    rep.check("rawsip uac -> uas: RFC 4733 '5' without marker on a foreign SSRC, in-band '7', "
              "BYE", bool(ok), f"uac {a}; uas {b}; tones {tones}")

    # caller.py --play and --digits -> callee.py: the callee hears the sentence, gets the keys.
    callee_port = ports.take()
    heard_wav = os.path.join(out, "callee_heard.wav")
    callee = harness.start_callee(callee_port, "answer", heard_wav, rtp_port=ports.take(8),
                                  timeout=20)
    if not harness.wait_udp_bound(callee_port, 10, callee):
        rep.check("caller --play -> callee", False, str(harness.finish_callee(callee, 5)))
        return
    res = harness.run_caller(f"sip:bob@127.0.0.1:{callee_port}", ports.take(),
                             os.path.join(out, "caller_play.wav"), rtp_port=ports.take(8),
                             play=said_wav, play_at=0.3, digits="12#@3.5", hangup_after=5.0,
                             timeout=15)
    got = harness.finish_callee(callee, 20)
    heard = hear.hear(heard_wav, PHRASES + [said])
    ok = (res.get("connected") and res.get("play_started_s") is not None
          and got.get("dtmf_received") == "12#" and heard == [said])
    rep.check("caller --play/--digits -> callee: the callee hears the sentence and reports "
              "the keys once each", bool(ok), f"caller {res}; callee {got}; heard {heard}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(harness.E2E_DIR, "out", "selftest"),
                    help="directory for recordings and SIPp traces")
    ap.add_argument("--only", choices=["hear", "sipp", "caller", "media"], action="append")
    args = ap.parse_args()
    harness.reexec_with_venv()
    harness.reexec_in_netns()
    os.makedirs(args.out, exist_ok=True)
    out = tempfile.mkdtemp(prefix="run-", dir=args.out)
    log(f"artifacts in {out}")
    rep = Report()
    ports = Ports(62100)
    only = set(args.only or ["hear", "sipp", "caller", "media"])
    prompts = {}
    if "hear" in only or "caller" in only:
        if "hear" in only:
            prompts = test_hear(rep, out)
        else:
            for i, text in enumerate(PHRASES):
                prompts[text] = harness.synthesise(text, out, f"prompt{i}")[0]
    if "sipp" in only:
        test_scenarios(rep, out, ports)
    if "caller" in only:
        test_caller(rep, out, ports, prompts)
    if "media" in only:
        test_media_tools(rep, out, ports)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())

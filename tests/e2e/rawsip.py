#!/usr/bin/env python3
"""A hand-written SIP user agent over UDP with its own RTP, for media no SIP client sends.

pjsua2 always sends RFC 4733 with the marker bit and its own SSRC, and offers telephone-event;
this script sends exactly what it is told, and keeps everything it receives:

  uac  places one call (INVITE, ACK to the 2xx, BYE when --hangup-after, 200 to the far end's
       BYE, 200 to INFO/OPTIONS), offering the payload types of --codecs (0 = PCMU, 101 =
       telephone-event);
  uas  takes the first INVITE on --sip-port, answers it 200 with the payload types of --codecs
       that were offered, and keeps the call until the far end's BYE.

Media, once the call is confirmed, one 20 ms packet at a time:
  - PCMU audio on one SSRC: --send-wav (8 kHz mono 16-bit, from --send-at seconds) plus
    in-band DTMF tones (--inband "5@0.5,#@2"), else silence; --no-rtp sends nothing at all;
  - RFC 4733 events (--rfc4733 "5@0.5"; --dtmf-ms long, 3 end packets) with the marker bit on
    the first packet unless --dtmf-no-marker, on the audio's SSRC (audio paused meanwhile) or,
    with --dtmf-ssrc foreign, on a second SSRC with its own sequence and timestamps while the
    audio goes on.
Received PCMU is decoded to --record (8 kHz mono 16-bit WAV, placed by RTP timestamp);
received RFC 4733 events are reported.

It always ends within --timeout and prints one JSON line:
    {"role", "connected", "final_code", "hung_up_by": "remote"|"local"|null,
     "bye_after_s" (confirmation -> far end's BYE), "call_duration_s", "rtp_sent",
     "rtp_received", "rtcp_received", "payload_types_received", "te_events": [{"digit",
     "end", "marker", "ssrc", "timestamp", "duration", "packets"}] (one per event),
     "audio_ssrcs": {ssrc: PCMU packets}, "answer_payload_types", "record", "error"?}

The module also holds the G.711 µ-law codec, DTMF tone generation and a Goertzel DTMF
detector (`detect_digits`) used by media_cases.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import time
import wave

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
PTIME_S = 0.02
T1 = 0.5
TE_PT = 101

# ---------------------------------------------------------------------------------------------
# G.711 µ-law

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_one(sample: int) -> int:
    sign = 0
    if sample < 0:
        sample = -sample
        sign = 0x80
    sample = min(sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_one(byte: int) -> int:
    u = ~byte & 0xFF
    exponent = (u >> 4) & 7
    sample = (((u & 0x0F) << 3) + _BIAS) << exponent
    sample -= _BIAS
    return -sample if u & 0x80 else sample


ULAW_DECODE = [_ulaw_decode_one(b) for b in range(256)]
_ULAW_ENCODE = bytes(_ulaw_encode_one(s - 32768) for s in range(65536))


def ulaw_encode(samples) -> bytes:
    return bytes(_ULAW_ENCODE[max(-32768, min(32767, int(s))) + 32768] for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    return [ULAW_DECODE[b] for b in data]


# ---------------------------------------------------------------------------------------------
# DTMF tones and their detection

DTMF_LOW = (697, 770, 852, 941)
DTMF_HIGH = (1209, 1336, 1477, 1633)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


def dtmf_freqs(digit: str) -> tuple[int, int]:
    for r, row in enumerate(DTMF_KEYS):
        c = row.find(digit.upper())
        if c >= 0:
            return DTMF_LOW[r], DTMF_HIGH[c]
    raise ValueError(f"not a DTMF key: {digit!r}")


def dtmf_tone(digit: str, ms: int, amplitude: float = 7000.0) -> list[int]:
    """The two sines of a key, `amplitude` each (about -13 dBFS)."""
    lo, hi = dtmf_freqs(digit)
    n = RATE * ms // 1000
    return [int(amplitude * (math.sin(2 * math.pi * lo * i / RATE)
                             + math.sin(2 * math.pi * hi * i / RATE))) for i in range(n)]


def _goertzel_power(block: list[int], freq: float) -> float:
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def detect_digits(samples: list[int], block: int = 160) -> list[dict]:
    """DTMF keys in 8 kHz audio: [{"digit", "start_s", "duration_s"}], in order.

    Per 20 ms block: the strongest row and column frequencies must together hold most of the
    block's energy, each dominate the others of its group, and be within 8 dB of each other.
    A key is a run of at least two such blocks (one odd block inside a run is bridged).
    """
    freqs = DTMF_LOW + DTMF_HIGH
    per_block: list[str | None] = []
    for i in range(0, len(samples) - block + 1, block):
        chunk = samples[i:i + block]
        energy = sum(x * x for x in chunk)
        if energy < block * 100.0 ** 2:  # below about -50 dBFS: silence
            per_block.append(None)
            continue
        # 2|X|^2 / (N * E): a sine's share of the block's energy, about 1 for a pure one.
        share = [2.0 * _goertzel_power(chunk, f) / (block * energy) for f in freqs]
        low, high = share[:4], share[4:]
        li = max(range(4), key=low.__getitem__)
        hi = max(range(4), key=high.__getitem__)
        lo_v, hi_v = low[li], high[hi]
        others_lo = max(v for k, v in enumerate(low) if k != li)
        others_hi = max(v for k, v in enumerate(high) if k != hi)
        ok = (lo_v + hi_v > 0.6 and lo_v > 0.1 and hi_v > 0.1
              and lo_v > 6 * others_lo and hi_v > 6 * others_hi
              and max(lo_v, hi_v) < 6.3 * min(lo_v, hi_v))
        per_block.append(DTMF_KEYS[li][hi] if ok else None)
    # Bridge one odd block inside a run.
    for i in range(1, len(per_block) - 1):
        if per_block[i] != per_block[i - 1] and per_block[i - 1] == per_block[i + 1]:
            per_block[i] = per_block[i - 1]
    found = []
    i = 0
    while i < len(per_block):
        d = per_block[i]
        j = i
        while j < len(per_block) and per_block[j] == d:
            j += 1
        if d is not None and j - i >= 2:
            found.append({"digit": d, "start_s": round(i * block / RATE, 3),
                          "duration_s": round((j - i) * block / RATE, 3)})
        i = j
    return found


def read_wav_8k(path: str) -> list[int]:
    """Samples of an 8 kHz mono 16-bit WAV (what harness.synthesise and caller.py write)."""
    with wave.open(path, "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: want 8 kHz mono 16-bit")
        data = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def write_wav_8k(path: str, samples: list[int]) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h",
                                  *(max(-32768, min(32767, s)) for s in samples)))


# ---------------------------------------------------------------------------------------------
# SIP messages

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type"}


class Msg:
    def __init__(self, first: str, headers: list[tuple[str, str]], body: bytes):
        self.first = first
        self.headers = headers
        self.body = body

    @property
    def is_response(self) -> bool:
        return self.first.startswith("SIP/2.0 ")

    @property
    def code(self) -> int:
        return int(self.first.split()[1]) if self.is_response else 0

    @property
    def method(self) -> str:
        if self.is_response:
            return self.get("cseq").split()[-1].upper()
        return self.first.split()[0].upper()

    def get(self, name: str) -> str:
        vals = self.all(name)
        return vals[0] if vals else ""

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if COMPACT.get(k.lower(), k.lower()) == name]


def parse(data: bytes) -> Msg | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return Msg(lines[0], headers, body)


def tag_of(value: str) -> str:
    m = re.search(r";\s*tag=([^;>\s]+)", value)
    return m.group(1) if m else ""


def uri_of(value: str) -> str:
    m = re.search(r"<([^>]+)>", value)
    return m.group(1) if m else value.split(";")[0].strip()


def host_port_of(uri: str) -> tuple[str, int]:
    m = re.match(r"sips?:(?:[^@]*@)?([^:;>]+)(?::(\d+))?", uri)
    if not m:
        raise ValueError(f"no host in {uri!r}")
    return m.group(1), int(m.group(2) or 5060)


def sdp_media(body: bytes) -> tuple[tuple[str, int] | None, list[int]]:
    """(RTP address, payload types) of the first audio m= line."""
    text = body.decode("utf-8", errors="replace")
    host = None
    addr = None
    pts: list[int] = []
    for line in text.splitlines():
        if line.startswith("c=IN IP4 "):
            host = line.split()[2]
        elif line.startswith("m=audio ") and addr is None:
            parts = line.split()
            addr = ("", int(parts[1]))
            pts = [int(p) for p in parts[3:] if p.isdigit()]
    if addr is None or host is None:
        return None, pts
    return (host, addr[1]), pts


def make_sdp(rtp_port: int, pts: list[int]) -> bytes:
    lines = ["v=0", f"o=rawsip {random.randint(1, 10**9)} 1 IN IP4 127.0.0.1", "s=rawsip",
             "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP " + " ".join(str(p) for p in pts)]
    for pt in pts:
        if pt == 0:
            lines.append("a=rtpmap:0 PCMU/8000")
        elif pt == TE_PT:
            lines += [f"a=rtpmap:{TE_PT} telephone-event/8000", f"a=fmtp:{TE_PT} 0-16"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


def rand_token(n: int = 10) -> str:
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


# ---------------------------------------------------------------------------------------------
# The user agent


def parse_at(spec: str) -> list[tuple[float, str]]:
    """'5@0.5,#@2' -> [(0.5, '5'), (2.0, '#')]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        digits, sep, at = item.partition("@")
        if not sep or not digits:
            raise ValueError(f"bad item {item!r}: want DIGITS@SECONDS")
        for k, d in enumerate(digits):
            dtmf_freqs(d)
            out.append((float(at) + k * 0.5, d))
    return sorted(out)


class Agent:
    def __init__(self, args):
        self.args = args
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", args.sip_port))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", args.rtp_port))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", args.rtp_port + 1))
        self.local = f"127.0.0.1:{args.sip_port}"
        self.started = time.monotonic()
        self.deadline = self.started + args.timeout
        self.pts = [int(p) for p in args.codecs.split(",") if p.strip()]
        # dialog
        self.call_id = f"{rand_token(16)}@127.0.0.1"
        self.local_tag = rand_token()
        self.local_uri = ""
        self.remote_hdr = ""  # the far end's From/To header value, with its tag
        self.local_hdr = ""
        self.remote_target = ""
        self.peer: tuple[str, int] | None = None  # where requests go
        self.cseq = 1
        # state
        self.confirmed_at: float | None = None
        self.ended_at: float | None = None
        self.final_code = 0
        self.hung_up_by: str | None = None
        self.bye_after_s: float | None = None
        self.error = ""
        self.answer_pts: list[int] = []
        # retransmission of our last request / response
        self.pending: tuple[bytes, tuple[str, int], float, float] | None = None
        self.pending_what = ""
        # media
        self.remote_rtp: tuple[str, int] | None = None
        self.rtp_sent = 0
        self.rtp_received = 0
        self.rtcp_received = 0
        self.pt_counts: dict[int, int] = {}
        self.te_events: dict[tuple[int, int], dict] = {}
        self.rx_audio: dict[int, list] = {}  # ssrc -> [(arrival, ts, payload)]
        self.audio_ssrcs: dict[int, int] = {}  # ssrc -> PCMU packets
        self.ssrc = random.getrandbits(32)
        self.foreign_ssrc = (self.ssrc ^ 0x5A5A5A5A) & 0xFFFFFFFF
        self.seq = random.getrandbits(16)
        self.foreign_seq = random.getrandbits(16)
        self.ts0 = random.getrandbits(32)
        self.foreign_ts0 = random.getrandbits(32)
        self.packet_index = 0
        self.media_started: float | None = None
        self.audio = self._audio_timeline()
        self.events = [(at, d) for at, d in parse_at(args.rfc4733)]
        self.event_packets = self._event_schedule()

    # --- media plan ---------------------------------------------------------------------------

    def _audio_timeline(self) -> list[int]:
        samples: list[int] = []
        if self.args.send_wav:
            wav = read_wav_8k(self.args.send_wav)
            samples = [0] * int(self.args.send_at * RATE) + wav
        for at, d in parse_at(self.args.inband):
            start = int(at * RATE)
            tone = dtmf_tone(d, self.args.dtmf_ms)
            if len(samples) < start + len(tone):
                samples += [0] * (start + len(tone) - len(samples))
            for i, v in enumerate(tone):
                samples[start + i] += v
        return samples

    def _event_schedule(self) -> dict[int, list[tuple[str, int, bool, int]]]:
        """packet index -> [(digit, duration in samples, end, event start index)]."""
        plan: dict[int, list] = {}
        n = max(1, self.args.dtmf_ms // 20)
        for at, d in self.events:
            first = int(round(at / PTIME_S))
            for k in range(n):
                plan.setdefault(first + k, []).append((d, (k + 1) * FRAME, False, first))
            for k in range(3):
                plan.setdefault(first + n + k, []).append((d, n * FRAME, True, first))
        return plan

    # --- sending ------------------------------------------------------------------------------

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sip.sendto(data, to)

    def request(self, method: str, uri: str, *, body: bytes = b"", ctype: str = "",
                branch: str | None = None, cseq: int | None = None, to_hdr: str | None = None,
                reliable: bool = True) -> bytes:
        branch = branch or f"z9hG4bK{rand_token(12)}"
        cseq = self.cseq if cseq is None else cseq
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.local};branch={branch};rport",
                 "Max-Forwards: 70",
                 f"From: {self.local_hdr}",
                 f"To: {to_hdr if to_hdr is not None else self.remote_hdr}",
                 f"Call-ID: {self.call_id}",
                 f"CSeq: {cseq} {method}",
                 f"Contact: <{self.local_uri}>",
                 "User-Agent: voxflow-e2e-rawsip",
                 "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"]
        if body:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        assert self.peer is not None
        self.send(data, self.peer)
        if reliable:
            self.pending = (data, self.peer, time.monotonic() + T1, T1)
            self.pending_what = method
        return data

    def respond(self, req: Msg, code: int, reason: str, src: tuple[str, int], *,
                body: bytes = b"", to_tag: str | None = None, reliable: bool = False) -> None:
        lines = [f"SIP/2.0 {code} {reason}"]
        for v in req.all("via"):
            lines.append(f"Via: {v}")
        lines.append(f"From: {req.get('from')}")
        to = req.get("to")
        if to_tag and not tag_of(to):
            to += f";tag={to_tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {req.get('call-id')}")
        lines.append(f"CSeq: {req.get('cseq')}")
        if code == 200 and req.method == "INVITE":
            lines.append(f"Contact: <{self.local_uri}>")
            lines.append("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.send(data, src)
        if reliable:
            self.pending = (data, src, time.monotonic() + T1, T1)
            self.pending_what = f"{code}"

    def rtp_packet(self, pt: int, payload: bytes, *, marker: bool, foreign: bool,
                   ts: int) -> bytes:
        if foreign:
            seq = self.foreign_seq
            self.foreign_seq = (self.foreign_seq + 1) & 0xFFFF
            ssrc = self.foreign_ssrc
        else:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFFFF
            ssrc = self.ssrc
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq,
                           ts & 0xFFFFFFFF, ssrc) + payload

    def send_media_tick(self) -> None:
        """The packet(s) of this 20 ms tick."""
        if self.remote_rtp is None or self.args.no_rtp:
            self.packet_index += 1
            return
        k = self.packet_index
        self.packet_index += 1
        foreign = self.args.dtmf_ssrc == "foreign"
        events = self.event_packets.get(k, [])
        te_ok = TE_PT in self.answer_pts
        if events and te_ok:
            for digit, dur, end, first in events:
                code = "0123456789*#ABCD".index(digit)
                payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, dur)
                marker = (k == first) and not self.args.dtmf_no_marker
                base = self.foreign_ts0 if foreign else self.ts0
                self.rtp.sendto(self.rtp_packet(TE_PT, payload, marker=marker, foreign=foreign,
                                                ts=base + first * FRAME), self.remote_rtp)
                self.rtp_sent += 1
            if not foreign:
                return  # the event replaces the audio on its own SSRC
        chunk = self.audio[k * FRAME:(k + 1) * FRAME]
        chunk += [0] * (FRAME - len(chunk))
        self.rtp.sendto(self.rtp_packet(0, ulaw_encode(chunk), marker=(k == 0), foreign=False,
                                        ts=self.ts0 + k * FRAME), self.remote_rtp)
        self.rtp_sent += 1

    # --- receiving ----------------------------------------------------------------------------

    def on_rtp(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:  # RTCP on the RTP port
            self.rtcp_received += 1
            return
        cc = data[0] & 0x0F
        off = 12 + 4 * cc
        if data[0] & 0x10 and len(data) >= off + 4:
            off += 4 + 4 * struct.unpack("!H", data[off + 2:off + 4])[0]
        payload = data[off:]
        if data[0] & 0x20 and payload:
            payload = payload[:-payload[-1]]
        _, _, _, ts, ssrc = struct.unpack("!BBHII", data[:12])
        self.rtp_received += 1
        self.pt_counts[pt] = self.pt_counts.get(pt, 0) + 1
        if pt == 0:
            self.rx_audio.setdefault(ssrc, []).append((time.monotonic(), ts, payload))
            self.audio_ssrcs[ssrc] = self.audio_ssrcs.get(ssrc, 0) + 1
        elif pt == TE_PT and len(payload) >= 4:
            code, flags, dur = struct.unpack("!BBH", payload[:4])
            ev = self.te_events.setdefault((ssrc, ts), {
                "digit": "0123456789*#ABCD"[code] if code < 16 else str(code), "end": False,
                "ssrc": ssrc, "timestamp": ts, "duration": 0, "packets": 0, "marker": False})
            ev["end"] = ev["end"] or bool(flags & 0x80)
            ev["marker"] = ev["marker"] or bool(data[1] & 0x80)
            ev["duration"] = max(ev["duration"], dur)
            ev["packets"] += 1

    def write_record(self) -> None:
        if not self.args.record:
            return
        out: list[int] = []
        if self.rx_audio:
            t0 = min(p[0][0] for p in self.rx_audio.values())
            for packets in self.rx_audio.values():
                base_at = int(round((packets[0][0] - t0) / PTIME_S)) * FRAME
                base_ts = packets[0][1]
                for _, ts, payload in packets:
                    pos = base_at + ((ts - base_ts) & 0xFFFFFFFF)
                    if pos < 0 or pos > RATE * 600:
                        continue
                    pcm = ulaw_decode(payload)
                    if len(out) < pos + len(pcm):
                        out += [0] * (pos + len(pcm) - len(out))
                    out[pos:pos + len(pcm)] = pcm
        write_wav_8k(self.args.record, out)

    # --- SIP ----------------------------------------------------------------------------------

    def on_sip(self, msg: Msg, src: tuple[str, int]) -> None:
        now = time.monotonic()
        if msg.is_response:
            self.on_response(msg, now)
            return
        method = msg.method
        if method == "INVITE" and self.args.role == "uas" and self.confirmed_at is None:
            self.on_invite(msg, src, now)
        elif method == "INVITE":
            self.respond(msg, 200, "OK", src, body=make_sdp(self.args.rtp_port, self.answer_pts),
                         to_tag=self.local_tag)
        elif method == "ACK":
            if self.args.role == "uas" and self.confirmed_at is None and self.pending_what == "200":
                self.pending = None
                self.confirm(now)
        elif method == "BYE":
            self.respond(msg, 200, "OK", src)
            if self.ended_at is None:
                self.ended_at = now
                self.hung_up_by = "remote"
                if self.confirmed_at is not None:
                    self.bye_after_s = round(now - self.confirmed_at, 3)
        elif method == "CANCEL":
            self.respond(msg, 200, "OK", src)
        else:
            self.respond(msg, 200, "OK", src)

    def on_invite(self, msg: Msg, src: tuple[str, int], now: float) -> None:
        if self.remote_hdr:  # a retransmission: the 200 goes again with the timer
            return
        self.call_id = msg.get("call-id")
        self.remote_hdr = msg.get("from")
        self.local_hdr = msg.get("to") + f";tag={self.local_tag}"
        self.local_uri = f"sip:rawsip@{self.local}"
        self.remote_target = uri_of(msg.get("contact")) or uri_of(msg.get("from"))
        self.peer = src
        addr, offered = sdp_media(msg.body)
        self.remote_rtp = addr
        self.answer_pts = [p for p in self.pts if p in offered]
        if not self.answer_pts or self.answer_pts == [TE_PT]:
            self.respond(msg, 488, "Not Acceptable Here", src, to_tag=self.local_tag)
            self.final_code = 488
            self.ended_at = now
            return
        self.respond(msg, 100, "Trying", src)
        self.respond(msg, 200, "OK", src, body=make_sdp(self.args.rtp_port, self.answer_pts),
                     to_tag=self.local_tag, reliable=True)
        self.final_code = 200

    def on_response(self, msg: Msg, now: float) -> None:
        method = msg.method
        code = msg.code
        if method == "INVITE":
            if self.pending_what == "INVITE" and code >= 100:
                self.pending = None
            if code < 200:
                return
            self.final_code = code
            if code >= 300:
                # ACK a failure on the INVITE's branch.
                branch = re.search(r"branch=([^;\s]+)", msg.get("via")).group(1)
                self.request("ACK", self.remote_target, branch=branch, to_hdr=msg.get("to"),
                             reliable=False)
                self.ended_at = now
                self.hung_up_by = "remote"
                return
            first = self.confirmed_at is None
            if first:
                self.remote_hdr = msg.get("to")
                contact = uri_of(msg.get("contact"))
                if contact:
                    self.remote_target = contact
                    self.peer = host_port_of(contact)
                addr, pts = sdp_media(msg.body)
                self.remote_rtp = addr
                self.answer_pts = pts
            self.request("ACK", self.remote_target, cseq=1, reliable=False)
            if first:
                self.confirm(now)
        elif method == "BYE" and self.pending_what == "BYE" and code >= 200:
            self.pending = None
            self.ended_at = now

    def confirm(self, now: float) -> None:
        self.confirmed_at = now
        self.media_started = now
        self.packet_index = 0

    def hangup(self) -> None:
        self.cseq += 1
        self.request("BYE", self.remote_target)
        self.hung_up_by = "local"

    # --- main loop ----------------------------------------------------------------------------

    def run(self) -> dict:
        if self.args.role == "uac":
            host, port = self.args.server.rsplit(":", 1)
            self.peer = (host, int(port))
            self.local_uri = f"sip:{self.args.from_user}@{self.local}"
            self.local_hdr = f"<{self.local_uri}>;tag={self.local_tag}"
            self.remote_target = f"sip:{self.args.to}@{self.args.server}"
            self.remote_hdr = f"<{self.remote_target}>"
            self.request("INVITE", self.remote_target, body=make_sdp(self.args.rtp_port, self.pts),
                         ctype="application/sdp")
        else:
            print("rawsip listening", file=sys.stderr, flush=True)
        bye_sent_at = None
        while True:
            now = time.monotonic()
            if self.ended_at is not None and self.pending is None:
                break
            if self.ended_at is not None and now - self.ended_at > 2:
                break
            if now >= self.deadline:
                if self.confirmed_at is not None and bye_sent_at is None and self.ended_at is None:
                    self.hangup()
                    bye_sent_at = now
                    self.deadline = now + 4
                    self.error = "timeout: hung up"
                else:
                    self.error = self.error or ("timeout" if self.confirmed_at is None
                                                else "timeout: BYE not answered")
                    break
            if (self.args.hangup_after is not None and self.confirmed_at is not None
                    and bye_sent_at is None and self.ended_at is None
                    and now - self.confirmed_at >= self.args.hangup_after):
                self.hangup()
                bye_sent_at = now
            # Timers: retransmission, then the next media tick.
            if self.pending is not None and now >= self.pending[2]:
                data, to, _, interval = self.pending
                if interval >= 4:
                    self.pending = None
                    if self.pending_what == "BYE":
                        self.ended_at = now
                else:
                    self.send(data, to)
                    interval *= 2
                    self.pending = (data, to, now + interval, interval)
            wakeups = [self.deadline]
            if self.pending is not None:
                wakeups.append(self.pending[2])
            media_live = self.media_started is not None and self.ended_at is None
            if media_live:
                due = self.media_started + self.packet_index * PTIME_S
                if now >= due:
                    self.send_media_tick()
                    continue
                wakeups.append(due)
            timeout = max(0.0, min(wakeups) - now)
            if self.ended_at is not None:
                timeout = min(timeout, 0.05)
            ready, _, _ = select.select([self.sip, self.rtp, self.rtcp], [], [], timeout)
            for sock in ready:
                try:
                    data, src = sock.recvfrom(65535)
                except OSError:
                    continue
                if sock is self.rtp:
                    self.on_rtp(data)
                elif sock is self.rtcp:
                    self.rtcp_received += 1
                else:
                    msg = parse(data)
                    if msg is not None:
                        try:
                            self.on_sip(msg, src)
                        except Exception as e:  # noqa: BLE001 (report, never hang)
                            self.error = f"{type(e).__name__}: {e}"
        self.write_record()
        duration = 0.0
        if self.confirmed_at is not None:
            duration = round((self.ended_at or time.monotonic()) - self.confirmed_at, 3)
        out = {
            "role": self.args.role,
            "connected": self.confirmed_at is not None,
            "final_code": self.final_code,
            "hung_up_by": self.hung_up_by,
            "bye_after_s": self.bye_after_s,
            "call_duration_s": duration,
            "rtp_sent": self.rtp_sent,
            "rtp_received": self.rtp_received,
            "rtcp_received": self.rtcp_received,
            "payload_types_received": {str(k): v for k, v in sorted(self.pt_counts.items())},
            "te_events": list(self.te_events.values()),
            "audio_ssrcs": {str(k): v for k, v in self.audio_ssrcs.items()},
            "answer_payload_types": self.answer_pts,
            "record": os.path.abspath(self.args.record) if self.args.record else None,
        }
        if self.error:
            out["error"] = self.error
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role", choices=("uac", "uas"))
    ap.add_argument("--server", default="127.0.0.1:5060", help="uac: where the INVITE goes")
    ap.add_argument("--to", default="+15550100", help="uac: Request-URI user")
    ap.add_argument("--from-user", default="e2e-rawsip", help="uac: From user")
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--rtp-port", type=int, required=True, help="RTP port (RTCP: the next one)")
    ap.add_argument("--codecs", default="0,101", help="payload types offered/accepted")
    ap.add_argument("--send-wav", default=None, help="8 kHz mono 16-bit WAV sent as audio")
    ap.add_argument("--send-at", type=float, default=0.0)
    ap.add_argument("--inband", default="", help='in-band DTMF tones, "5@0.5,#@2"')
    ap.add_argument("--rfc4733", default="", help='RFC 4733 events, "5@0.5"')
    ap.add_argument("--dtmf-ms", type=int, default=200, help="length of each key")
    ap.add_argument("--dtmf-ssrc", choices=("same", "foreign"), default="same")
    ap.add_argument("--dtmf-no-marker", action="store_true")
    ap.add_argument("--no-rtp", action="store_true", help="send no RTP (nor RTCP) at all")
    ap.add_argument("--record", default=None, help="WAV of the PCMU received")
    ap.add_argument("--hangup-after", type=float, default=None)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    json_out = sys.stdout
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(args.timeout) + 20)
    try:
        result = Agent(args).run()
    except Exception as e:  # noqa: BLE001
        result = {"error": f"{type(e).__name__}: {e}"}
    json_out.write(json.dumps(result) + "\n")
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Hostile SIP traffic against a SIP server, and the probes that tell it survived.

`send_hostile()` sends, from raw UDP and TCP sockets bound to a separate loopback source
address (127.0.0.2 by default, so that a source the server blocks is not the one the probes
use), a bounded set of broken and hostile messages:

  UDP  truncated requests, binary garbage, huge headers (60 KB values, thousands of Via
       lines), wrong Content-Length (larger, smaller, negative, not a number, huge, two
       conflicting ones), structurally broken requests (no Via / Call-ID / CSeq, SIP/3.0, NUL
       bytes, Max-Forwards 0, a Via pointing at the server itself or at an unroutable host),
       stray responses, INVITEs to a real number that are never ACKed (half-open), INVITEs
       with broken SDP, CANCEL / BYE / ACK for unknown dialogs, and REGISTERs answering the
       digest challenge with a wrong password;
  TCP  a 100 KB message, a 100 KB header section that never ends, a body shorter than its
       Content-Length left hanging, a Content-Length smaller than the body, binary garbage,
       and idle half-sent connections kept open while the probes run.

Everything is bounded: a fixed number of messages, a time budget (the traffic stops when it
runs out), socket timeouts on every read. Nothing is sent anywhere but the given server.

`options_udp()`, `options_tcp()` and `register()` are the probes; they return the status
code of the final response (or None).

CLI (for a quick manual run): hostile.py HOST:PORT --number +15550100 [--user U --password P]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import socket
import time
import uuid
from dataclasses import dataclass, field

HOSTILE_SOURCE = "127.0.0.2"


# ---------------------------------------------------------------------------------------------
# Building and reading messages


def branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:16]


def request(method: str, uri: str, *, via_host: str, via_port: int, transport: str = "UDP",
            call_id: str | None = None, cseq: int = 1, cseq_method: str | None = None,
            from_tag: str | None = None, to_tag: str | None = None, to_uri: str | None = None,
            extra: list[str] | None = None, body: bytes = b"", content_length: str | None = None,
            content_type: str | None = None) -> bytes:
    """A well-formed request (the base the broken variants are made from)."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host}:{via_port};branch={branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:hostile@{via_host}>;tag={from_tag or uuid.uuid4().hex[:10]}",
        f"To: <{to_uri or uri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or uuid.uuid4().hex}@hostile",
        f"CSeq: {cseq} {cseq_method or method}",
        f"Contact: <sip:hostile@{via_host}:{via_port}>",
        "User-Agent: voxflow-e2e-hostile",
    ]
    lines += extra or []
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sdp(port: int = 9, *, host: str = "127.0.0.1") -> bytes:
    """An offer whose media port nothing listens on (RTP sent there is refused)."""
    return (f"v=0\r\no=hostile 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").encode()


def status_of(data: bytes) -> tuple[int | None, str]:
    """(status code, CSeq method) of a response, (None, '') for anything else."""
    m = re.match(rb"SIP/2\.0 (\d{3})", data)
    if not m:
        return None, ""
    cseq = re.search(rb"(?im)^(?:CSeq|cseq)\s*:\s*\d+\s+([A-Za-z]+)", data)
    return int(m.group(1)), cseq.group(1).decode() if cseq else ""


def header_params(value: str) -> dict[str, str]:
    return {k.lower(): v1 or v2 for k, v1, v2 in
            re.findall(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value)}


def digest_authorization(challenge_msg: bytes, method: str, uri: str, user: str,
                         password: str) -> str | None:
    """An Authorization header value answering a 401's challenge (MD5 preferred, or SHA-256)."""
    text = challenge_msg.decode("utf-8", errors="replace")
    challenges = re.findall(r"(?im)^WWW-Authenticate\s*:\s*Digest\s+(.*)$", text)
    if not challenges:
        return None
    parsed = [header_params(c) for c in challenges]
    chosen = next((p for p in parsed if p.get("algorithm", "MD5").upper() == "MD5"), parsed[0])
    algorithm = chosen.get("algorithm", "MD5")
    h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if "256" in algorithm else (
        lambda s: hashlib.md5(s.encode()).hexdigest())
    realm, nonce = chosen.get("realm", ""), chosen.get("nonce", "")
    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f"algorithm={algorithm}"]
    qop = chosen.get("qop", "")
    if "auth" in [q.strip() for q in qop.split(",")]:
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in chosen:
        parts.append(f'opaque="{chosen["opaque"]}"')
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Probes


def _udp_socket(source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    return s


def _recv_final_udp(s: socket.socket, deadline: float, method: str,
                    resend: bytes | None = None, target=None) -> tuple[int | None, bytes]:
    """Read until a final response for `method` arrives (bounded); resend like Timer A."""
    interval, next_send = 0.5, time.monotonic() + 0.5
    while True:
        now = time.monotonic()
        if now >= deadline:
            return None, b""
        s.settimeout(max(0.01, min(deadline, next_send) - now))
        try:
            data, _ = s.recvfrom(70000)
        except socket.timeout:
            if resend is not None and time.monotonic() >= next_send:
                s.sendto(resend, target)
                interval = min(interval * 2, 4.0)
                next_send = time.monotonic() + interval
            continue
        code, m = status_of(data)
        if code is not None and code >= 200 and m.upper() == method:
            return code, data


def options_udp(host: str, port: int, timeout_s: float = 5.0,
                source: str = "127.0.0.1") -> int | None:
    """Status code of the final response to an OPTIONS over UDP (retransmitted), or None."""
    with _udp_socket(source) as s:
        lport = s.getsockname()[1]
        msg = request("OPTIONS", f"sip:{host}:{port}", via_host=source, via_port=lport)
        s.sendto(msg, (host, port))
        code, _ = _recv_final_udp(s, time.monotonic() + timeout_s, "OPTIONS", msg, (host, port))
        return code


def options_tcp(host: str, port: int, timeout_s: float = 5.0,
                source: str = "127.0.0.1") -> int | None:
    """Status code of the response to an OPTIONS over a new TCP connection, or None."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s,
                                      source_address=(source, 0)) as s:
            lport = s.getsockname()[1]
            s.sendall(request("OPTIONS", f"sip:{host}:{port};transport=tcp", via_host=source,
                              via_port=lport, transport="TCP"))
            buf = b""
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^(?:Content-Length|l)\s*:\s*(\d+)", head)
                    clen = int(m.group(1)) if m else 0
                    if len(rest) < clen:
                        break
                    buf = rest[clen:]
                    code, method = status_of(head)
                    if code is not None and code >= 200 and method.upper() == "OPTIONS":
                        return code
    except OSError:
        return None
    return None


def register(host: str, port: int, user: str, password: str, *, source: str = "127.0.0.1",
             timeout_s: float = 3.0, expires: int = 0) -> tuple[int | None, int | None]:
    """REGISTER, answer the challenge with `password`: (first status, final status)."""
    deadline = time.monotonic() + timeout_s
    with _udp_socket(source) as s:
        lport = s.getsockname()[1]
        uri = f"sip:{host}:{port}"
        call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:10]
        aor = f"sip:{user}@{host}:{port}"

        def reg(cseq: int, auth: str | None) -> bytes:
            extra = [f"Expires: {expires}"] + ([f"Authorization: {auth}"] if auth else [])
            return request("REGISTER", uri, via_host=source, via_port=lport, call_id=call_id,
                           cseq=cseq, from_tag=tag, to_uri=aor, extra=extra).replace(
                f"From: <sip:hostile@{source}>".encode(), f"From: <{aor}>".encode(), 1)

        first = reg(1, None)
        s.sendto(first, (host, port))
        code1, resp = _recv_final_udp(s, deadline, "REGISTER", first, (host, port))
        if code1 != 401:
            return code1, code1
        auth = digest_authorization(resp, "REGISTER", uri, user, password)
        if auth is None:
            return code1, None
        second = reg(2, auth)
        s.sendto(second, (host, port))
        code2, _ = _recv_final_udp(s, deadline, "REGISTER", second, (host, port))
        return code1, code2


def udp_drops(port: int, host: str = "127.0.0.1") -> int | None:
    """Datagrams the kernel dropped on the UDP socket bound to host:port (receive buffer full)."""
    want = "".join(f"{int(b):02X}" for b in reversed(host.split("."))) + f":{port:04X}"
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if len(cols) > 12 and cols[1] == want:
                    return int(cols[-1])
    except (OSError, ValueError):
        pass
    return None


# ---------------------------------------------------------------------------------------------
# The hostile traffic


@dataclass
class HostileStats:
    sent_udp: int = 0
    tcp_connections: int = 0
    send_errors: int = 0
    responses: dict[str, int] = field(default_factory=dict)  # "METHOD code" -> count
    half_open_invites: int = 0  # INVITEs the server responded to (then never ACKed)
    half_open_unanswered: int = 0  # INVITEs with no response at all after 4 sends
    sip_socket_drops: int | None = None  # the server's UDP socket drop count (/proc/net/udp)
    half_open_answered: int = 0
    wrong_password_registers: int = 0
    wrong_password_results: dict[str, int] = field(default_factory=dict)
    tcp_outcomes: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    budget_exhausted: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Hostile:
    def __init__(self, host: str, port: int, number: str, *, source: str = HOSTILE_SOURCE,
                 budget_s: float = 8.0, seed: int = 4733):
        self.host, self.port, self.number, self.source = host, port, number, source
        self.target = (host, port)
        self.deadline = time.monotonic() + budget_s
        self.rng = random.Random(seed)
        self.stats = HostileStats()
        self.udp = _udp_socket(source)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.lport = self.udp.getsockname()[1]
        self.idle_tcp: list[socket.socket] = []

    # -- plumbing

    def over(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.stats.budget_exhausted = True
            return True
        return False

    def send(self, data: bytes) -> None:
        if self.over():
            return
        try:
            self.udp.sendto(data[:65507], self.target)
            self.stats.sent_udp += 1
        except OSError:
            self.stats.send_errors += 1
        if self.stats.sent_udp % 25 == 0:
            self.drain()

    def drain(self) -> None:
        """Read whatever responses are queued (non-blocking) and count them."""
        self.udp.setblocking(False)
        try:
            while True:
                try:
                    data, _ = self.udp.recvfrom(70000)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue  # an ICMP error surfaced on this socket
                self._count(data)
        finally:
            self.udp.setblocking(True)

    def _count(self, data: bytes) -> None:
        code, method = status_of(data)
        key = f"{method or '?'} {code}" if code is not None else "non-response"
        self.stats.responses[key] = self.stats.responses.get(key, 0) + 1
        if code == 200 and method.upper() == "INVITE":
            self.stats.half_open_answered += 1  # retransmitted 200s count again; fine

    def req(self, method: str, uri: str | None = None, **kw) -> bytes:
        return request(method, uri or f"sip:{self.number}@{self.host}:{self.port}",
                       via_host=self.source, via_port=self.lport, **kw)

    # -- the traffic

    def run(self, *, device: tuple[str, str] | None = None) -> HostileStats:
        started = time.monotonic()
        try:
            self.tcp_idle_connections(20)
            self.truncated(60)
            self.garbage(60)
            self.huge_headers()
            self.wrong_content_length()
            self.structural()
            self.stray_responses(20)
            self.half_open_invites(20)
            self.broken_sdp_invites()
            self.unknown_dialogs(30)
            self.tcp_hostile()
            if device:
                self.wrong_passwords(device[0], 30)
            self.tcp_idle_connections(30)
            self.drain()
        finally:
            self.stats.sip_socket_drops = udp_drops(self.port, self.host)
            self.stats.duration_s = round(time.monotonic() - started, 2)
        return self.stats

    def close(self) -> None:
        for s in self.idle_tcp:
            try:
                s.close()
            except OSError:
                pass
        self.idle_tcp = []
        self.udp.close()

    def truncated(self, n: int) -> None:
        base = self.req("INVITE", body=sdp(), content_type="application/sdp")
        for i in range(n):
            cut = max(1, (len(base) * i) // n)
            self.send(base[:cut])

    def garbage(self, n: int) -> None:
        for i in range(n):
            size = self.rng.choice([1, 2, 3, 16, 100, 512, 1400, 4000, 20000])
            data = bytes(self.rng.getrandbits(8) for _ in range(size))
            if i % 4 == 0:
                data = b"INVITE " + data  # garbage that starts like a request
            elif i % 4 == 1:
                data = b"SIP/2.0 " + data  # garbage that starts like a response
            self.send(data)

    def huge_headers(self) -> None:
        for size in (1000, 8000, 30000, 60000, 64000):
            self.send(self.req("OPTIONS", extra=[f"X-Huge: {'a' * size}"]))
        for count in (500, 2000):
            vias = [f"Via: SIP/2.0/UDP 10.0.{i // 250}.{i % 250}:5060;branch={branch()}"
                    for i in range(count)]
            self.send(self.req("OPTIONS", extra=vias))
        self.send(self.req("OPTIONS", extra=[f"X-Many-{i}: v" for i in range(4000)]))
        self.send(self.req("OPTIONS", uri="sip:" + "u" * 60000 + f"@{self.host}"))
        self.send(self.req("OPTIONS", extra=["Subject: " + "é" * 20000]))

    def wrong_content_length(self) -> None:
        body = sdp()
        for clen in ("99999", "100000000000000000000", "-1", "abc", "0", "1", "",
                     str(len(body) + 1), str(len(body) - 1), "4294967296"):
            for method in ("INVITE", "OPTIONS"):
                self.send(self.req(method, body=body, content_type="application/sdp",
                                   content_length=clen))
        two = self.req("OPTIONS", body=b"abcd", extra=["Content-Length: 900"])
        for _ in range(5):
            self.send(two)
            self.send(self.req("MESSAGE", body=b"x" * 3000, content_type="text/plain",
                               content_length="10"))

    def structural(self) -> None:
        good = self.req("OPTIONS").decode()

        def without(header: str) -> bytes:
            return "\r\n".join(l for l in good.split("\r\n")
                               if not l.lower().startswith(header.lower() + ":")).encode()

        variants = [
            without("Via"), without("Call-ID"), without("CSeq"), without("From"), without("To"),
            without("Max-Forwards"),
            good.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1).encode(),
            good.replace("OPTIONS sip:", "OPTIONS  sip:", 1).encode(),
            good.replace("OPTIONS sip:", "options sip:", 1).encode(),
            good.replace("Max-Forwards: 70", "Max-Forwards: 0").encode(),
            good.replace("Max-Forwards: 70", "Max-Forwards: -1").encode(),
            good.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").encode(),
            good.replace("CSeq: 1 OPTIONS", "CSeq: 99999999999999999999 OPTIONS").encode(),
            good.replace("Call-ID: ", "Call-ID: \x00\x00").encode(),
            good.replace("From: ", "From: \xff\xfe ").encode("latin-1"),
            good.replace("To: ", "To:").encode() + b"\x00" * 100,
            good.replace("\r\n", "\n").encode(),
            good.replace("\r\n", "\r").encode(),
            good.replace("Max-Forwards: 70", "Max-Forwards: 70\r\n continuation").encode(),
            good.replace("Max-Forwards: 70", "NoColonHeader").encode(),
            good.replace("OPTIONS sip:", "OPTIONS sip:@:", 1).encode(),
            good.replace("OPTIONS sip:", "OPTIONS <sip:>", 1).encode(),
            b"\r\n\r\n" + good.encode(),
            b"OPTIONS\r\n\r\n",
            b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            b" \t \r\n",
        ]
        # A Via that sends the responses back to the server itself, and one nowhere.
        for via in (f"{self.host}:{self.port}", "192.0.2.1:5060", "[::1]:5060",
                    "unresolvable.invalid:5060"):
            variants.append(re.sub(r"Via: [^\r]*", f"Via: SIP/2.0/UDP {via};branch={branch()}",
                                   good, count=1).encode())
        for v in variants:
            self.send(v)

    def stray_responses(self, n: int) -> None:
        for i in range(n):
            code = (100, 180, 183, 200, 407, 487, 500)[i % 7]
            method = ("INVITE", "BYE", "OPTIONS")[i % 3]
            self.send((f"SIP/2.0 {code} Stray\r\n"
                       f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch()}\r\n"
                       f"From: <sip:x@{self.host}>;tag=a{i}\r\nTo: <sip:y@{self.host}>;tag=b{i}\r\n"
                       f"Call-ID: stray{i}@hostile\r\nCSeq: {i + 1} {method}\r\n"
                       "Content-Length: 0\r\n\r\n").encode())

    def send_until_answered(self, data: bytes, tries: int = 4, interval_s: float = 0.5) -> bool:
        """Send like a UAC over UDP: retransmit until any response for this Call-ID arrives.

        Earlier hostile datagrams may fill the server's receive buffer, so a single send can be
        dropped by the kernel; a real attacker's INVITE is retransmitted (Timer A) too.
        """
        m = re.search(rb"Call-ID: ([^\r\n]+)", data)
        call_id = m.group(1) if m else b""
        for _ in range(tries):
            if self.over():
                return False
            self.send(data)
            end = min(self.deadline, time.monotonic() + interval_s)
            while time.monotonic() < end:
                self.udp.settimeout(max(0.01, end - time.monotonic()))
                try:
                    got, _ = self.udp.recvfrom(70000)
                except socket.timeout:
                    break
                except OSError:
                    continue
                self._count(got)
                if call_id and call_id in got:
                    return True
        return False

    def half_open_invites(self, n: int) -> None:
        """INVITEs to a number whose flow answers, never ACKed (nor CANCELled)."""
        for _ in range(n):
            if self.send_until_answered(self.req("INVITE", body=sdp(),
                                                 content_type="application/sdp")):
                self.stats.half_open_invites += 1
            else:
                self.stats.half_open_unanswered += 1

    def broken_sdp_invites(self) -> None:
        bodies = [
            b"this is not sdp",
            b"v=0\r\nm=audio 0 RTP/AVP 0\r\n",
            b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n",
            sdp().replace(b"RTP/AVP 0 101", b"RTP/AVP " + b" ".join(
                str(i).encode() for i in range(96, 128)) * 20),
            sdp().replace(b"m=audio 9", b"m=audio 99999999"),
            sdp().replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 999.1.1.1"),
        ]
        for body in bodies:
            self.send(self.req("INVITE", body=body, content_type="application/sdp"))

    def unknown_dialogs(self, n: int) -> None:
        for i in range(n):
            self.send(self.req("CANCEL"))
            self.send(self.req("BYE", from_tag=f"f{i}", to_tag=f"t{i}"))
            if i % 3 == 0:
                self.send(self.req("ACK", from_tag=f"f{i}", to_tag=f"t{i}"))

    def wrong_passwords(self, user: str, n: int) -> None:
        """REGISTERs that answer the challenge with a wrong password (sequential, bounded)."""
        for i in range(n):
            if self.over():
                return
            remaining = max(0.2, min(1.5, self.deadline - time.monotonic()))
            first, final = register(self.host, self.port, user, f"wrong-{i}", source=self.source,
                                    timeout_s=remaining)
            self.stats.wrong_password_registers += 1
            key = f"{first}/{final}"
            self.stats.wrong_password_results[key] = self.stats.wrong_password_results.get(key, 0) + 1

    # -- TCP

    def _tcp(self) -> socket.socket | None:
        if self.over():
            return None
        try:
            s = socket.create_connection(self.target, timeout=1.0,
                                         source_address=(self.source, 0))
            self.stats.tcp_connections += 1
            return s
        except OSError:
            self.stats.send_errors += 1
            return None

    def _tcp_outcome(self, name: str, payloads: list[bytes], wait_s: float = 1.0) -> None:
        """Send payloads on a fresh connection; note whether the server answered or closed."""
        s = self._tcp()
        if s is None:
            self.stats.tcp_outcomes[name] = "not connected"
            return
        outcome = "open"
        try:
            for p in payloads:
                s.sendall(p)
            s.shutdown(socket.SHUT_WR) if name.endswith("+eof") else None
            end = min(self.deadline, time.monotonic() + wait_s)
            got = b""
            while time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    outcome = "closed by server"
                    break
                got += chunk
            codes = re.findall(rb"SIP/2\.0 (\d{3})", got)
            if codes:
                outcome = "answered " + ",".join(c.decode() for c in codes[:5]) + (
                    "; then closed" if outcome == "closed by server" else "")
        except OSError as e:
            outcome = f"error {e.__class__.__name__}"
        finally:
            s.close()
        self.stats.tcp_outcomes[name] = outcome

    def tcp_hostile(self) -> None:
        tcp_req = lambda method, **kw: request(  # noqa: E731
            method, f"sip:{self.number}@{self.host}:{self.port};transport=tcp",
            via_host=self.source, via_port=5060, transport="TCP", **kw)
        self._tcp_outcome("100 KB body", [tcp_req("OPTIONS", body=b"x" * 100_000,
                                                   content_type="text/plain")])
        self._tcp_outcome("100 KB header, no end", [b"OPTIONS sip:x SIP/2.0\r\nX-Long: "
                                                     + b"h" * 100_000])
        self._tcp_outcome("body shorter than Content-Length",
                          [tcp_req("OPTIONS", body=b"abc", content_length="5000")], wait_s=0.3)
        self._tcp_outcome("Content-Length smaller than body",
                          [tcp_req("OPTIONS", body=b"x" * 200 + b"\r\n\r\n",
                                   content_length="10")])
        self._tcp_outcome("negative Content-Length",
                          [tcp_req("OPTIONS", body=b"abc", content_length="-5")])
        self._tcp_outcome("binary garbage",
                          [bytes(self.rng.getrandbits(8) for _ in range(10_000))])
        self._tcp_outcome("garbage then OPTIONS",
                          [b"\x00\xff garbage\r\n\r\n", tcp_req("OPTIONS")])
        self._tcp_outcome("1000 CRLF keep-alives then OPTIONS+eof",
                          [b"\r\n" * 1000, tcp_req("OPTIONS")])
        self._tcp_outcome("50 pipelined OPTIONS",
                          [b"".join(tcp_req("OPTIONS") for _ in range(50))])
        self._tcp_outcome("half-open INVITE over TCP",
                          [tcp_req("INVITE", body=sdp(), content_type="application/sdp")],
                          wait_s=0.3)

    def tcp_idle_connections(self, n: int) -> None:
        """Connections left open with a half-sent request (closed by close())."""
        for i in range(n):
            s = self._tcp()
            if s is None:
                return
            try:
                s.sendall(b"OPTIONS sip:" if i % 2 else b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP")
            except OSError:
                self.stats.send_errors += 1
            self.idle_tcp.append(s)


def main() -> int:
    ap = argparse.ArgumentParser(description="Send hostile SIP traffic, then probe the server.")
    ap.add_argument("target", help="HOST:PORT of the SIP server")
    ap.add_argument("--number", default="+15550100", help="a number whose flow answers")
    ap.add_argument("--user", default=None)
    ap.add_argument("--budget", type=float, default=8.0)
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    h = Hostile(host, int(port), args.number, budget_s=args.budget)
    try:
        stats = h.run(device=(args.user, "") if args.user else None)
        print(json.dumps(stats.as_dict()))
        print(json.dumps({"options_udp": options_udp(host, int(port)),
                          "options_tcp": options_tcp(host, int(port))}))
    finally:
        h.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

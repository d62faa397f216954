#!/usr/bin/env python3
"""RTP send jitter and loss, measured from a packet capture (classic pcap; standard library only).

    bench/rtp_stats.py CAPTURE.pcap --caller-port 6000 [--ptime 20] [--json]

Every UDP datagram that looks like RTP (version 2, not RTCP) is put in a stream keyed by
(source address, destination address, SSRC). A stream whose destination port is the caller's
media port (SIPp's -mp) was sent by the server ("server->caller"); one whose source port is it
was sent by the caller ("caller->server"). Other RTP in the capture is counted and ignored.

Per stream, in capture order, for consecutive packets:
  - sequence step 1: the interval deviation |dt - ptime| goes into the pool;
  - sequence step k in 2..3000: k-1 packets were never sent (or lost before the capture point);
    the interval is not used for jitter;
  - step 0 or backwards: duplicate or reordered.
Loss is lost / (received + lost). Percentiles are nearest-rank over all intervals of all
streams of a direction. Capture timestamps on the loopback interface are taken as the packet is
transmitted, so for the server's streams this is its send jitter.
"""

import argparse
import json
import mmap
import struct
import sys

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINK_ETHERNET, LINK_NULL, LINK_RAW, LINK_SLL, LINK_SLL2 = 1, 0, 101, 113, 276
ETH_IPV4, ETH_IPV6, ETH_VLAN = 0x0800, 0x86DD, 0x8100


def network_offset(linktype, data, off):
    """Offset of the IP header in a frame starting at `off`, and the IP version, or None."""
    if linktype == LINK_ETHERNET:
        if len(data) < off + 14:
            return None
        ethertype = struct.unpack_from(">H", data, off + 12)[0]
        ip = off + 14
        while ethertype == ETH_VLAN and len(data) >= ip + 4:
            ethertype = struct.unpack_from(">H", data, ip + 2)[0]
            ip += 4
    elif linktype == LINK_SLL:
        if len(data) < off + 16:
            return None
        ethertype = struct.unpack_from(">H", data, off + 14)[0]
        ip = off + 16
    elif linktype == LINK_SLL2:
        if len(data) < off + 20:
            return None
        ethertype = struct.unpack_from(">H", data, off)[0]
        ip = off + 20
    elif linktype == LINK_NULL:
        ip = off + 4
        ethertype = ETH_IPV4 if len(data) > ip and data[ip] >> 4 == 4 else ETH_IPV6
    elif linktype in (LINK_RAW, 12, 14):
        ip = off
        ethertype = ETH_IPV4 if len(data) > ip and data[ip] >> 4 == 4 else ETH_IPV6
    else:
        raise SystemExit(f"unsupported pcap link type {linktype}")
    if ethertype == ETH_IPV4:
        return ip, 4
    if ethertype == ETH_IPV6:
        return ip, 6
    return None


def read_packets(path):
    """Yield (timestamp seconds, src, sport, dst, dport, udp payload memoryview) of UDP packets."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if f.seek(0, 2) else b""
    if len(data) < 24:
        return
    magic = bytes(data[:4])
    if magic not in PCAP_MAGIC:
        if magic == b"\x0a\x0d\x0d\x0a":
            raise SystemExit("pcapng is not supported: capture with tcpdump, or dumpcap -P")
        raise SystemExit(f"{path}: not a pcap file")
    endian, unit = PCAP_MAGIC[magic]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    off, end = 24, len(data)
    view = memoryview(data)
    while off + 16 <= end:
        sec, frac, caplen, _ = record.unpack_from(data, off)
        frame = off + 16
        off = frame + caplen
        if off > end:
            break  # truncated last record (capture stopped mid-write)
        net = network_offset(linktype, data, frame)
        if net is None:
            continue
        ip, version = net
        if version == 4:
            if off < ip + 20:
                continue
            ihl = (data[ip] & 0x0F) * 4
            if data[ip + 9] != 17 or struct.unpack_from(">H", data, ip + 6)[0] & 0x1FFF:
                continue  # not UDP, or a non-first fragment
            src, dst = bytes(data[ip + 12:ip + 16]), bytes(data[ip + 16:ip + 20])
            udp = ip + ihl
        else:
            if off < ip + 40 or data[ip + 6] != 17:
                continue  # not UDP (extension headers are not followed)
            src, dst = bytes(data[ip + 8:ip + 24]), bytes(data[ip + 24:ip + 40])
            udp = ip + 40
        if off < udp + 8:
            continue
        sport, dport = struct.unpack_from(">HH", data, udp)
        yield sec + frac * unit, src, sport, dst, dport, view[udp + 8:off]


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # nearest rank, ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


class Stream:
    __slots__ = ("first_ts", "last_ts", "last_seq", "received", "lost", "disorder", "devs")

    def __init__(self, ts, seq):
        self.first_ts = self.last_ts = ts
        self.last_seq = seq
        self.received = 1
        self.lost = 0
        self.disorder = 0
        self.devs = []


def analyse(path, caller_port, ptime_ms):
    ptime = ptime_ms / 1000.0
    streams = {"server->caller": {}, "caller->server": {}}
    other = 0
    t_first = t_last = None
    for ts, src, sport, dst, dport, payload in read_packets(path):
        if len(payload) < 12 or payload[0] >> 6 != 2 or 192 <= payload[1] <= 223:
            continue  # not RTP, or RTCP
        if dport == caller_port:
            direction = "server->caller"
        elif sport == caller_port:
            direction = "caller->server"
        else:
            other += 1
            continue
        t_first = ts if t_first is None else t_first
        t_last = ts
        seq = (payload[2] << 8) | payload[3]
        key = (src, sport, dst, dport, bytes(payload[8:12]))
        table = streams[direction]
        s = table.get(key)
        if s is None:
            table[key] = Stream(ts, seq)
            continue
        step = (seq - s.last_seq) & 0xFFFF
        if step == 1:
            s.devs.append(abs(ts - s.last_ts - ptime))
        elif 1 < step <= 3000:
            s.lost += step - 1
        else:
            s.disorder += 1
            s.received += 1
            continue  # keep the highest sequence number seen
        s.received += 1
        s.last_seq = seq
        s.last_ts = ts
    window = (t_last - t_first) if t_first is not None else 0.0
    result = {"capture": path, "window_s": round(window, 3), "other_rtp_packets": other}
    for direction, table in streams.items():
        devs = sorted(d for s in table.values() for d in s.devs)
        received = sum(s.received for s in table.values())
        lost = sum(s.lost for s in table.values())
        ms = lambda v: None if v is None else round(v * 1000, 3)
        result[direction] = {
            "streams": len(table),
            "packets": received,
            "packets_per_s": round(received / window, 1) if window > 0 else None,
            "intervals": len(devs),
            "dev_p50_ms": ms(percentile(devs, 50)),
            "dev_p99_ms": ms(percentile(devs, 99)),
            "dev_max_ms": ms(devs[-1] if devs else None),
            "intervals_over_10ms": sum(1 for d in devs if d > 0.010),
            "lost": lost,
            "loss_pct": round(100.0 * lost / (received + lost), 4) if received + lost else None,
            "disordered": sum(s.disorder for s in table.values()),
        }
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--caller-port", type=int, required=True,
                    help="the caller's (SIPp's) RTP port: tells the two directions apart")
    ap.add_argument("--ptime", type=float, default=20.0, help="packet interval in ms (20)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = ap.parse_args()
    r = analyse(args.pcap, args.caller_port, args.ptime)
    if args.json:
        json.dump(r, sys.stdout)
        print()
        return
    print(f"{r['capture']}: {r['window_s']} s captured")
    for direction in ("server->caller", "caller->server"):
        d = r[direction]
        print(f"  {direction}: {d['streams']} streams, {d['packets']} packets "
              f"({d['packets_per_s']}/s); |dt-{args.ptime:g}ms| p50 {d['dev_p50_ms']} ms, "
              f"p99 {d['dev_p99_ms']} ms, max {d['dev_max_ms']} ms; "
              f"lost {d['lost']} ({d['loss_pct']} %), disordered {d['disordered']}")


if __name__ == "__main__":
    main()

"""The `media` group of run_e2e.py: playback formats, echo, digits_send, DTMF variants,
recording and the RTP timeout, each checked by what crossed the wire or what a client heard.

Cases (they run in parallel threads; their ok/FAIL/xfail lines are printed in this order at
the end):

  play     three pjsua2 callers (two at once, the third once the files were fetched) call a
           flow that `play`s a WAV (16 kHz stereo), an MP3 (44.1 kHz) and an OGG/Vorbis
           (22 kHz) of three espeak-ng sentences served by a local HTTP server: each must hear
           the three sentences in order (hear.py), and the server must have had exactly one
           GET per URL (downloads shared by concurrent calls, then cached).
  echo     `echo` (and, in a second call, `stream_echo`) 4000 ms then `talk` "echo finished":
           the pjsua2 caller plays a spoken WAV into the call and presses "3" after it; it must
           hear its sentence back, then the prompt about 4 s after the answer; the key must come
           back (RFC 4733) from stream_echo only.
  record   `talk`, `recording_start` (beep, end_of_key "#", duration 20), `digits_receive`
           until "#", `talk`: the pjsua2 caller speaks after the beep and presses "#"; the
           recording is listed for the call (ended, 2 channels, duration = beep end to
           "#"), its file is a 2-channel 8 kHz WAV whose left channel holds the caller's
           sentence (hear.py) and whose right channel holds none of it; it ended by the key
           (end_reason "key") and does not contain the beep.
  record-mp3  the same without beep or prompt, as `format: "mp3"`, `channels: 1`: a signed
           `recording_finished` webhook says it ended as mp3 with one channel, its file is
           served as audio/mpeg, and decoded (lame --decode) it holds the caller's sentence.
  send     outbound calls with `digits_send` "1234#" (200 ms, 100 ms apart): a pjsua2 callee
           must get the keys once each as RFC 4733; a raw callee answering PCMU only (no
           telephone-event) must get no RFC 4733 packet and the five tones in its audio
           (Goertzel detector on the decoded RTP).
  dtmf     a flow that waits 4 s for keys; when it got exactly "5" it says "you have pressed
           the digit ${voipbin.call.digits}" and hangs up "busy", else it hangs up "normal":
           "5" as SIP INFO (SIPp), as RFC 4733 without marker bit on a foreign SSRC
           (rawsip.py), as in-band tones in PCMU with no telephone-event offered (rawsip.py);
           and speech with no key (in-band detection on) must give "normal" and no prompt.
  timeout  a second `voxflow serve --rtp-timeout 3`: a SIPp caller that sends no RTP gets a BYE
           about 3 s after the answer and the record says `rtp_timeout`; a caller sending RTP
           meanwhile keeps its call until the flow ends it.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
import wave
from dataclasses import dataclass
from typing import Any, Callable

import harness
import rawsip
from events import wait_ended_call
from harness import log

# Prompts the suite speaks (talk) or plays, and sentences the callers say.
PLAY_WAV = "red roses grow in the garden"
PLAY_MP3 = "seven blue boats sail at noon"
PLAY_OGG = "the old clock strikes twelve"
ECHO_SAID = "my voice comes back to me"
ECHO_DONE = "echo finished"
REC_PROMPT = "please speak after the beep"
REC_SAID = "this sentence goes into the recording"
REC_DONE = "your message was recorded"
PRESSED_5 = "you have pressed the digit five"
SPEECH = "nothing but plain speech is heard here"
MEDIA_PHRASES = [PLAY_WAV, PLAY_MP3, PLAY_OGG, ECHO_SAID, ECHO_DONE, REC_PROMPT, REC_SAID,
                 REC_DONE, PRESSED_5, SPEECH]

PLAY_NUMBER = "+15550110"
ECHO_NUMBER = "+15550111"
REC_NUMBER = "+15550112"
REC_MP3_NUMBER = "+15550115"
DTMF_NUMBER = "+15550113"
STREAM_ECHO_NUMBER = "+15550114"
TIMEOUT_NUMBER = "+15550120"  # on the second server

RTP_TIMEOUT_S = 3
TIMEOUT_FLOW_SLEEP_MS = 6000
DIGITS = "1234#"
ECHO_KEY, ECHO_KEY_AT = "3", 3.0  # pressed during the echo, after the sentence
REC_PLAY_AT = 3.2  # the caller starts speaking (after the prompt and the beep)


@dataclass
class Context:
    api: Any
    ports: Any
    out: str
    binary: str
    server_class: Any
    api_class: Any
    api_error: type
    phrases: list[str]
    follow_call: Callable
    originate: Callable
    all_calls: Callable


class Collect:
    """Report's check/xfail interface; the lines are replayed into the Report in case order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool, str, str | None]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append((name, bool(ok), detail, None))
        return bool(ok)

    def xfail(self, name: str, ok: bool, detail: str, bug: str) -> bool:
        self.items.append((name, bool(ok), detail, bug))
        return bool(ok)

    def replay(self, rep) -> None:
        for name, ok, detail, bug in self.items:
            if bug is None:
                rep.check(name, ok, detail)
            else:
                rep.xfail(name, ok, detail, bug)


def run_parallel(rep, group: str, cases, ctx, deadline_s: float) -> None:
    """Run each case `(name, fn, extra args)` as `fn(Collect, ctx, *extra)` in its own thread,
    all within `deadline_s`, then replay their checks into `rep` in the order given (a case
    that crashed or overran is a failed check)."""
    collected: list[tuple[str, Collect]] = []
    threads = []
    for name, fn, extra in cases:
        col = Collect()
        collected.append((name, col))

        def body(fn=fn, col=col, extra=extra, name=name):
            try:
                fn(col, ctx, *extra)
            except Exception:  # noqa: BLE001 (a harness crash fails the case)
                col.check(f"{group} {name}", False, traceback.format_exc())

        t = threading.Thread(target=body, name=f"{group}-{name}", daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + deadline_s
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    for (name, col), t in zip(collected, threads):
        col.replay(rep)
        if t.is_alive():
            rep.check(f"{group} {name}: finishes within {deadline_s:.0f} s", False,
                      "still running")


_HEAR_LOCK = threading.Lock()


def heard_in(path: str, phrases: list[str]) -> tuple[list[str], str]:
    """(phrases heard, a description of the segments) — one decoder at a time."""
    import hear

    try:
        with _HEAR_LOCK:
            segs = hear.hear_segments(path, phrases)
    except Exception as e:  # noqa: BLE001 (a recogniser failure fails the case)
        return [], f"hear.py failed: {e}"
    return ([p for s in segs for p in s.phrases],
            str([(s.start_s, s.end_s, s.hypothesis or s.refused) for s in segs]))


def segments_in(path: str, phrases: list[str]):
    import hear

    try:
        with _HEAR_LOCK:
            return hear.hear_segments(path, phrases)
    except Exception as e:  # noqa: BLE001
        log(f"hear {path}: {e}")
        return []


# ---------------------------------------------------------------------------------------------
# Fixtures: prompts in several formats, and a counting HTTP server


def run_tool(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def make_prompts(out: str) -> dict[str, str]:
    """espeak-ng sentences: the play files in three formats, and the callers' sentences."""
    media = os.path.join(out, "media")
    os.makedirs(os.path.join(media, "www"), exist_ok=True)
    files: dict[str, str] = {}
    for key, text in (("wav", PLAY_WAV), ("mp3", PLAY_MP3), ("ogg", PLAY_OGG),
                      ("echo", ECHO_SAID), ("rec", REC_SAID), ("speech", SPEECH)):
        _, wav8 = harness.synthesise(text, media, key)
        files[key + "_8k"] = wav8
        files[key + "_src"] = os.path.join(media, f"{key}.espeak.wav")  # 22.05 kHz mono
    www = os.path.join(media, "www")
    files["wav"] = os.path.join(www, "prompt-a.wav")
    run_tool(["sox", "-D", "-V1", files["wav_src"], "-r", "16000", "-c", "2", "-b", "16",
              files["wav"]])
    files["mp3"] = os.path.join(www, "prompt-b.mp3")
    run_tool(["lame", "--quiet", "-b", "64", "--resample", "44.1", files["mp3_src"],
              files["mp3"]])
    files["ogg"] = os.path.join(www, "prompt-c.ogg")
    run_tool(["oggenc", "-Q", "-q", "2", "-o", files["ogg"], files["ogg_src"]])
    files["www"] = www
    return files


class CountingHttp:
    """A static file server on 127.0.0.1:0 that counts requests per (method, path)."""

    def __init__(self, directory: str):
        self.counts: dict[str, int] = {}
        lock = self.changed = threading.Condition()
        counts = self.counts

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def log_message(self, *a):  # quiet
                pass

            def note(self):
                with lock:
                    key = f"{self.command} {self.path}"
                    counts[key] = counts.get(key, 0) + 1
                    lock.notify_all()

            def do_GET(self):  # noqa: N802
                self.note()
                super().do_GET()

            def do_HEAD(self):  # noqa: N802
                self.note()
                super().do_HEAD()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{os.path.basename(path)}"

    def snapshot(self) -> dict[str, int]:
        with self.changed:
            return dict(self.counts)

    def wait_requests(self, n: int, timeout_s: float) -> bool:
        """True once n requests were made (bounded wait on the server's notifications)."""
        with self.changed:
            return self.changed.wait_for(lambda: sum(self.counts.values()) >= n, timeout_s)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Flows


def aid() -> str:
    return str(uuid.uuid4())


def talk(text: str) -> dict:
    return {"id": aid(), "type": "talk", "option": {"text": text, "language": "en-US"}}


def play_flow(urls: list[str]) -> list[dict]:
    return [{"id": aid(), "type": "answer"},
            {"id": aid(), "type": "play", "option": {"stream_urls": urls}},
            {"id": aid(), "type": "hangup"}]


def echo_flow(kind: str = "echo") -> list[dict]:
    return [{"id": aid(), "type": "answer"},
            {"id": aid(), "type": kind, "option": {"duration": 4000}},
            talk(ECHO_DONE),
            {"id": aid(), "type": "hangup"}]


def record_flow() -> list[dict]:
    return [{"id": aid(), "type": "answer"},
            talk(REC_PROMPT),
            {"id": aid(), "type": "recording_start",
             "option": {"format": "wav", "end_of_key": "#", "duration": 20, "beep_start": True}},
            {"id": aid(), "type": "digits_receive",
             "option": {"key": "#", "length": 10, "duration": 12000}},
            talk(REC_DONE),
            {"id": aid(), "type": "hangup"}]


def record_mp3_flow() -> list[dict]:
    return [{"id": aid(), "type": "answer"},
            {"id": aid(), "type": "recording_start",
             "option": {"format": "mp3", "channels": 1, "end_of_key": "#", "duration": 20}},
            {"id": aid(), "type": "digits_receive",
             "option": {"key": "#", "length": 10, "duration": 12000}},
            {"id": aid(), "type": "hangup"}]


def dtmf_flow() -> list[dict]:
    """4 s for keys: exactly "5" -> "you have pressed the digit 5", hangup busy; else normal.

    ("you pressed five" is too quick for hear.py at espeak-ng's default speed: it refuses the
    squeezed "pressed".)"""
    other = aid()
    return [{"id": aid(), "type": "answer"},
            {"id": aid(), "type": "digits_receive", "option": {"length": 2, "duration": 4000}},
            {"id": aid(), "type": "condition_variable",
             "option": {"condition": "==", "variable": "voipbin.call.digits",
                        "value_type": "string", "value_string": "5",
                        "false_target_id": other}},
            talk("you have pressed the digit ${voipbin.call.digits}"),
            {"id": aid(), "type": "hangup", "option": {"reason": "busy"}},
            {"id": other, "type": "hangup", "option": {"reason": "normal"}}]


def digits_send_flow() -> list[dict]:
    return [{"id": aid(), "type": "digits_send",
             "option": {"digits": DIGITS, "duration": 200, "interval": 100}},
            {"id": aid(), "type": "hangup"}]


def timeout_flow() -> list[dict]:
    return [{"id": aid(), "type": "answer"},
            {"id": aid(), "type": "sleep", "option": {"duration": TIMEOUT_FLOW_SLEEP_MS}},
            {"id": aid(), "type": "hangup"}]


def bind_number(api, number: str, name: str, actions: list[dict]) -> None:
    flow = api.call("POST", "/v1.0/flows", {"name": name, "actions": actions})
    api.call("POST", "/v1.0/numbers", {"number": number, "call_flow_id": flow["id"]})


# ---------------------------------------------------------------------------------------------
# Call records


def find_call(ctx: Context, api, from_user: str, timeout_s: float) -> tuple[dict | None, str]:
    """The ended incoming call whose caller (From user) is from_user (bounded)."""
    return wait_ended_call(api, ctx.all_calls,
                           lambda c: (c.get("source") or {}).get("target") == from_user,
                           f"from {from_user}", timeout_s)


def incoming_problems(rec: dict | None, why: str, reason: str, by: str = "local") -> list[str]:
    if rec is None:
        return [why or "no call record"]
    problems = []
    for k, want in (("status", "hangup"), ("direction", "incoming"), ("hangup_reason", reason),
                    ("hangup_by", by)):
        if rec.get(k) != want:
            problems.append(f"{k}={rec.get(k)!r} (want {want!r})")
    return problems


def seconds_between(a: str | None, b: str | None) -> float | None:
    try:
        return (datetime.datetime.fromisoformat(str(b).replace("Z", "+00:00"))
                - datetime.datetime.fromisoformat(str(a).replace("Z", "+00:00"))).total_seconds()
    except (TypeError, ValueError):
        return None


def get_bytes(api, path: str) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(api.base + path)
    req.add_header("Authorization", f"Bearer {api.token}")
    try:
        with api.opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# ---------------------------------------------------------------------------------------------
# Processes: rawsip.py


def start_rawsip(role: str, sip_port: int, rtp_port: int, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, os.path.join(harness.E2E_DIR, "rawsip.py"), role,
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port)] + args
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish_rawsip(proc: subprocess.Popen, timeout_s: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        harness.stop_process(proc, 2)
        out, err = proc.communicate()
        return {"error": "rawsip.py did not end in time", "stderr": err[-2000:]}
    lines = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) != 1:
        return {"error": f"rawsip.py exit {proc.returncode}, {len(lines)} stdout lines",
                "stdout": out[-2000:], "stderr": err[-2000:]}
    try:
        return json.loads(lines[0])
    except json.JSONDecodeError as e:
        return {"error": f"rawsip.py printed no JSON: {e}", "stdout": out[-2000:]}


def brief(res: dict) -> str:
    """A rawsip result without its bulky parts."""
    return json.dumps({k: v for k, v in res.items() if k not in ("te_events",)})[:1500]


# ---------------------------------------------------------------------------------------------
# Cases


def play_case(c: Collect, ctx: Context, files: dict, httpd: CountingHttp, phrases: list[str]
              ) -> None:
    results: dict[str, dict] = {}

    def one(tag: str, port: int, rtp: int) -> None:
        results[tag] = harness.run_caller(
            f"sip:{PLAY_NUMBER}@127.0.0.1:{ctx.ports.sip}", port,
            os.path.join(ctx.out, f"media_play_{tag}.wav"), rtp_port=rtp, timeout=30,
            from_user=f"e2e-play-{tag}",
            log_file=os.path.join(ctx.out, f"media_play_{tag}.pjsip.log"))

    # a and b at once (one download shared by both), c once the three files were fetched (from
    # the cache).
    threads = [threading.Thread(target=one, args=(tag, ctx.ports.sip_port(),
                                                  ctx.ports.media_port()))
               for tag in ("a", "b", "c")]
    threads[0].start()
    threads[1].start()
    fetched = httpd.wait_requests(3, 15)
    threads[2].start()
    for t in threads:
        t.join(timeout=80)
    want = [PLAY_WAV, PLAY_MP3, PLAY_OGG]
    c.check("media play: the three URLs are fetched when the first calls play them", fetched,
            f"requests {httpd.snapshot()}")
    for tag in ("a", "b", "c"):
        res = results.get(tag, {"error": "no result"})
        log(f"media play {tag}: {json.dumps(res)}")
        c.check(f"media play {tag}: call connects, voxflow hangs up after the playlist",
                res.get("connected") is True and res.get("hung_up_by") == "remote"
                and "error" not in res, json.dumps(res))
        heard, segs = heard_in(res.get("record") or "", phrases)
        c.check(f"media play {tag}: caller hears the WAV, MP3 and OGG prompts in order",
                heard == want, f"heard {heard}; segments {segs}")
        rec, why = find_call(ctx, ctx.api, f"e2e-play-{tag}", 10)
        problems = incoming_problems(rec, why, "normal")
        c.check(f"media play {tag}: call record hangup/normal/local", not problems,
                "; ".join(problems) + f"; record {json.dumps(rec)}")
    counts = httpd.snapshot()
    expect = {f"GET /{os.path.basename(files[k])}": 1 for k in ("wav", "mp3", "ogg")}
    c.check("media play: three calls playing the same 3 URLs (two at once, one later) make one "
            "GET per URL", counts == expect, f"requests {counts}, want {expect}")


def echo_case(c: Collect, ctx: Context, files: dict, phrases: list[str]) -> None:
    """echo and stream_echo at once: both echo the voice; only stream_echo echoes the key."""
    results: dict[str, dict] = {}

    def one(kind: str, number: str, port: int, rtp: int) -> None:
        results[kind] = harness.run_caller(
            f"sip:{number}@127.0.0.1:{ctx.ports.sip}", port,
            os.path.join(ctx.out, f"media_{kind}.wav"), rtp_port=rtp, timeout=30,
            play=files["echo_8k"], play_at=0.5, digits=f"{ECHO_KEY}@{ECHO_KEY_AT}",
            from_user=f"e2e-{kind}", log_file=os.path.join(ctx.out, f"media_{kind}.pjsip.log"))

    threads = [threading.Thread(target=one, args=(kind, number, ctx.ports.sip_port(),
                                                  ctx.ports.media_port()))
               for kind, number in (("echo", ECHO_NUMBER), ("stream_echo", STREAM_ECHO_NUMBER))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=80)
    for kind in ("echo", "stream_echo"):
        res = results.get(kind, {"error": "no result"})
        log(f"media {kind}: {json.dumps(res)}")
        c.check(f"media {kind}: call connects, caller speaks and presses {ECHO_KEY}, voxflow "
                "hangs up", res.get("connected") is True and res.get("hung_up_by") == "remote"
                and res.get("play_started_s") is not None and res.get("digits_sent") == ECHO_KEY
                and "error" not in res, json.dumps(res))
        segs = segments_in(res.get("record") or "", phrases)
        heard = [p for s in segs for p in s.phrases]
        done_at = next((s.start_s for s in segs if ECHO_DONE in s.phrases), None)
        c.check(f"media {kind}: caller hears its own sentence back, then 'echo finished' ~4 s "
                "after the answer", heard == [ECHO_SAID, ECHO_DONE] and done_at is not None
                and 3.7 <= done_at <= 5.5,
                f"heard {heard}; 'echo finished' segment at {done_at}s; segments "
                f"{[(s.start_s, s.end_s, s.hypothesis or s.refused) for s in segs]}")
        want = ECHO_KEY if kind == "stream_echo" else ""
        c.check(f"media {kind}: the key pressed during it is "
                + ("echoed back once (RFC 4733)" if want else "not echoed"),
                res.get("dtmf_received") == want,
                f"caller received keys {res.get('dtmf_received')!r} {res.get('dtmf_events')}")
        rec, why = find_call(ctx, ctx.api, f"e2e-{kind}", 10)
        problems = incoming_problems(rec, why, "normal")
        c.check(f"media {kind}: call record hangup/normal/local", not problems,
                "; ".join(problems) + f"; record {json.dumps(rec)}")


def beep_end_s(path: str) -> float | None:
    """End of the first run of 1 kHz (voxflow's beep) in an 8 kHz mono WAV, in seconds."""
    try:
        samples = rawsip.read_wav_8k(path)
    except (OSError, ValueError, wave.Error):
        return None
    run_start = None
    for i in range(0, len(samples) - 160 + 1, 160):
        chunk = samples[i:i + 160]
        energy = sum(x * x for x in chunk)
        tone = energy > 160 * 300.0 ** 2 and (
            2.0 * rawsip._goertzel_power(chunk, 1000.0) / (160 * energy) > 0.7)
        if tone and run_start is None:
            run_start = i
        elif not tone and run_start is not None:
            if i - run_start >= 5 * 160:
                return i / 8000
            run_start = None
    return None


def record_case(c: Collect, ctx: Context, files: dict, phrases: list[str]) -> None:
    said_s = wav_seconds(files["rec_8k"])
    hash_at = round(REC_PLAY_AT + said_s + 0.6, 2)
    res = harness.run_caller(
        f"sip:{REC_NUMBER}@127.0.0.1:{ctx.ports.sip}", ctx.ports.sip_port(),
        os.path.join(ctx.out, "media_record_caller.wav"), rtp_port=ctx.ports.media_port(),
        timeout=30, play=files["rec_8k"], play_at=REC_PLAY_AT, digits=f"#@{hash_at}",
        from_user="e2e-record", log_file=os.path.join(ctx.out, "media_record.pjsip.log"))
    log(f"media record: {json.dumps(res)}")
    c.check("media record: call connects, caller speaks and presses #, voxflow hangs up",
            res.get("connected") is True and res.get("hung_up_by") == "remote"
            and res.get("digits_sent") == "#" and "error" not in res, json.dumps(res))
    caller_wav = res.get("record") or ""
    heard, segs = heard_in(caller_wav, phrases)
    c.check("media record: caller hears the prompt, (the beep,) then 'your message was recorded'",
            heard == [REC_PROMPT, REC_DONE], f"heard {heard}; segments {segs}")
    rec, why = find_call(ctx, ctx.api, "e2e-record", 10)
    problems = incoming_problems(rec, why, "normal")
    c.check("media record: call record hangup/normal/local", not problems,
            "; ".join(problems) + f"; record {json.dumps(rec)}")
    if rec is None:
        return
    call_id = rec.get("id")
    listed = ctx.api.call("GET", f"/v1.0/recordings?call_id={call_id}")
    items = listed.get("result") if isinstance(listed, dict) else None
    one = items[0] if isinstance(items, list) and len(items) == 1 else {}
    beep_end = beep_end_s(caller_wav)
    dur = one.get("duration_ms")
    problems = []
    if not one:
        problems.append(f"want one recording, got {str(listed)[:400]}")
    for k, want in (("status", "ended"), ("format", "wav"), ("channels", 2),
                    ("call_id", call_id)):
        if one and one.get(k) != want:
            problems.append(f"{k}={one.get(k)!r} (want {want!r})")
    if not isinstance(dur, int) or dur <= 0:
        problems.append(f"duration_ms={dur!r}")
    try:
        call = ctx.api.get_call(call_id)
        if one and one.get("id") not in (call.get("recording_ids") or []):
            problems.append(f"call's recording_ids={call.get('recording_ids')!r}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"GET /v1.0/calls/{call_id}: {e}")
    c.check("media record: GET /recordings?call_id lists one recording: ended, wav, 2 "
            "channels, in the call's recording_ids", not problems,
            "; ".join(problems) + f"; recording {json.dumps(one)}")
    c.check("media record: the recording's end_reason is 'key' (ended by the '#' key)",
            one.get("end_reason") == "key",
            f"end_reason={one.get('end_reason')!r}; recording {json.dumps(one)}")
    if not one:
        return
    status, headers, body = get_bytes(ctx.api, f"/v1.0/recordings/{one.get('id')}/file")
    path = os.path.join(ctx.out, "media_record_file.wav")
    with open(path, "wb") as f:
        f.write(body)
    info = {}
    try:
        with wave.open(path, "rb") as w:
            info = {"channels": w.getnchannels(), "rate": w.getframerate(),
                    "width": w.getsampwidth(),
                    "ms": round(1000 * w.getnframes() / w.getframerate())}
    except (wave.Error, EOFError, OSError) as e:
        info = {"error": str(e)}
    ok = (status == 200 and info.get("channels") == 2 and info.get("rate") == 8000
          and info.get("width") == 2 and isinstance(dur, int) and abs(info["ms"] - dur) <= 100)
    c.check("media record: GET /recordings/{id}/file is a 2-channel 8 kHz 16-bit WAV of that "
            "length", ok, f"HTTP {status} {headers.get('Content-Type')}; wav {info}; "
            f"duration_ms {dur}")
    if not ok:
        return
    left = os.path.join(ctx.out, "media_record_left.wav")
    right = os.path.join(ctx.out, "media_record_right.wav")
    run_tool(["sox", "-D", "-V1", path, left, "remix", "1"])
    run_tool(["sox", "-D", "-V1", path, right, "remix", "2"])
    heard_l, segs_l = heard_in(left, phrases)
    heard_r, segs_r = heard_in(right, phrases)
    c.check("media record: the file's left channel holds the caller's sentence, the right "
            "channel (voxflow) none of it", heard_l == [REC_SAID] and heard_r == [],
            f"left heard {heard_l} {segs_l}; right heard {heard_r} {segs_r}")
    # The beep is played before recording: the file must not begin with it.
    beep_in_file = beep_end_s(right)
    c.check("media record: the recording begins after the beep (no beep in the file)",
            beep_in_file is None,
            f"the right channel holds a 1 kHz tone ending at {beep_in_file}s")
    # From the beep's end (as the caller heard it) to the end of the '#' key, which pjsua2
    # sends for 200 ms.
    expect_ms = None if beep_end is None else (hash_at + 0.2 - beep_end) * 1000
    log(f"media record: beep ends at {beep_end}s, '#' at {hash_at}s: expect {expect_ms} ms, "
        f"recorded {dur} ms")
    c.check("media record: the recording lasts from the beep to the end of the '#' key "
            "(+-200 ms)", expect_ms is not None and abs(dur - expect_ms) <= 200,
            f"duration_ms={dur}, want {expect_ms} (beep end heard at {beep_end}s, '#' sent at "
            f"{hash_at}s for 200 ms)")


def record_mp3_case(c: Collect, ctx: Context, files: dict, phrases: list[str]) -> None:
    from platform_cases import SECRET, Sink  # the signed-webhook receiver

    # The file is encoded after the recording ends; `recording_finished` says when it is done.
    sink = Sink(ctx.ports.media_port())
    hook = ctx.api.call("POST", "/v1.0/webhooks", {
        "uri": sink.url(), "secret": SECRET,
        "event_types": ["recording_finished", "recording_failed"]})
    try:
        record_mp3_call(c, ctx, files, phrases, sink)
    finally:
        ctx.api.call("DELETE", f"/v1.0/webhooks/{hook.get('id')}")
        sink.down()


def record_mp3_call(c: Collect, ctx: Context, files: dict, phrases: list[str], sink) -> None:
    play_at = 1.0
    hash_at = round(play_at + wav_seconds(files["rec_8k"]) + 0.6, 2)
    res = harness.run_caller(
        f"sip:{REC_MP3_NUMBER}@127.0.0.1:{ctx.ports.sip}", ctx.ports.sip_port(),
        os.path.join(ctx.out, "media_record_mp3_caller.wav"), rtp_port=ctx.ports.media_port(),
        timeout=30, play=files["rec_8k"], play_at=play_at, digits=f"#@{hash_at}",
        from_user="e2e-record-mp3",
        log_file=os.path.join(ctx.out, "media_record_mp3.pjsip.log"))
    log(f"media record-mp3: {json.dumps(res)}")
    c.check("media record-mp3: call connects, caller speaks and presses #",
            res.get("connected") is True and res.get("digits_sent") == "#"
            and "error" not in res, json.dumps(res))
    rec, why = find_call(ctx, ctx.api, "e2e-record-mp3", 10)
    if rec is None:
        c.check("media record-mp3: call record", False, why)
        return

    def ours(events: list[dict]) -> list[dict]:
        return [e for e in events if (e.get("data") or {}).get("call_id") == rec.get("id")]

    sink.wait(lambda events: bool(ours(events)), 30)
    event = (ours(sink.events) or [{}])[0]
    one = event.get("data") or {}
    want = {"status": "ended", "format": "mp3", "channels": 1, "end_reason": "key"}
    c.check("media record-mp3: recording_finished says ended, mp3, 1 channel (by the key)",
            event.get("type") == "recording_finished"
            and all(one.get(k) == v for k, v in want.items()), json.dumps(event))
    if not one:
        return
    status, headers, body = get_bytes(ctx.api, f"/v1.0/recordings/{one.get('id')}/file")
    mp3 = os.path.join(ctx.out, "media_record_file.mp3")
    decoded = os.path.join(ctx.out, "media_record_mp3_decoded.wav")
    with open(mp3, "wb") as f:
        f.write(body)
    try:
        run_tool(["lame", "--quiet", "--decode", mp3, decoded])
        heard, segs = heard_in(decoded, phrases)
    except (OSError, subprocess.SubprocessError) as e:
        heard, segs = [], f"lame --decode failed: {e}"
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type")
    c.check("media record-mp3: /file is audio/mpeg and, decoded, holds the caller's sentence",
            status == 200 and content_type == "audio/mpeg" and heard == [REC_SAID],
            f"HTTP {status} {content_type}; heard {heard} {segs}")


def wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


def send_pjsua_case(c: Collect, ctx: Context) -> None:
    name = "media digits_send to pjsua2 (RFC 4733)"
    port = ctx.ports.sip_port()
    proc = harness.start_callee(port, "answer", os.path.join(ctx.out, "media_send_pjsua.wav"),
                                rtp_port=ctx.ports.media_port(), timeout=20,
                                log_file=os.path.join(ctx.out, "media_send_pjsua.pjsip.log"))
    if not harness.wait_udp_bound(port, 10, proc):
        c.check(f"{name}: callee listens", False, json.dumps(harness.finish_callee(proc, 5)))
        return
    call_id, problem = ctx.originate(ctx.api, f"sip:bob@127.0.0.1:{port}", digits_send_flow())
    if call_id is None:
        harness.stop_process(proc, 2)
        c.check(f"{name}: POST /v1.0/calls", False, problem)
        return
    rec, seen, why = ctx.follow_call(ctx.api, call_id, 20)
    res = harness.finish_callee(proc, 30)
    log(f"{name}: callee {json.dumps(res)}; record {json.dumps(rec)}")
    events = res.get("dtmf_events") or []
    durations = [e.get("duration_ms") for e in events]
    times = [e.get("t", 0) for e in events]
    gaps_ok = all(b - a >= 0.15 for a, b in zip(times, times[1:]))
    rfc4733 = all(e.get("method") == 0 for e in events)  # PJSUA_DTMF_METHOD_RFC2833
    c.check(f"{name}: callee receives {DIGITS!r} as RFC 4733, each key once, ~200 ms, in order",
            res.get("connected") is True and res.get("dtmf_received") == DIGITS and rfc4733
            and all(isinstance(d, int) and 140 <= d <= 300 for d in durations) and gaps_ok,
            f"received {res.get('dtmf_received')!r}; events {events}; "
            f"callee {json.dumps(res)[:600]}")
    problems = [] if rec else [why]
    if rec and (rec.get("hangup_reason"), rec.get("hangup_by")) != ("normal", "local"):
        problems.append(f"hangup {rec.get('hangup_reason')}/{rec.get('hangup_by')}")
    c.check(f"{name}: call record hangup/normal/local", not problems and not problem,
            "; ".join(problems + [problem]) + f"; record {json.dumps(rec)}")


def send_inband_case(c: Collect, ctx: Context) -> None:
    name = "media digits_send to a PCMU-only callee (in-band)"
    port = ctx.ports.sip_port()
    record = os.path.join(ctx.out, "media_send_inband.wav")
    proc = start_rawsip("uas", port, ctx.ports.media_port(),
                        ["--codecs", "0", "--record", record, "--timeout", "20"])
    if not harness.wait_udp_bound(port, 10, proc):
        c.check(f"{name}: callee listens", False, brief(finish_rawsip(proc, 5)))
        return
    call_id, problem = ctx.originate(ctx.api, f"sip:bob@127.0.0.1:{port}", digits_send_flow())
    if call_id is None:
        harness.stop_process(proc, 2)
        c.check(f"{name}: POST /v1.0/calls", False, problem)
        return
    rec, seen, why = ctx.follow_call(ctx.api, call_id, 20)
    res = finish_rawsip(proc, 30)
    log(f"{name}: callee {brief(res)}; record {json.dumps(rec)}")
    found: list[dict] = []
    try:
        found = rawsip.detect_digits(rawsip.read_wav_8k(record))
    except (OSError, ValueError, wave.Error) as e:
        res.setdefault("error", f"record: {e}")
    digits = "".join(d["digit"] for d in found)
    durations_ok = all(0.14 <= d["duration_s"] <= 0.28 for d in found)
    gaps = [round(b["start_s"] - a["start_s"] - a["duration_s"], 3)
            for a, b in zip(found, found[1:])]
    gaps_ok = all(0.04 <= g <= 0.2 for g in gaps)
    c.check(f"{name}: the callee's audio holds the tones {DIGITS!r} (Goertzel), ~200 ms each, "
            "~100 ms apart, and no RFC 4733 packet",
            res.get("connected") is True and res.get("answer_payload_types") == [0]
            and digits == DIGITS and durations_ok and gaps_ok
            and set(res.get("payload_types_received", {})) == {"0"},
            f"tones {found}; gaps {gaps}; callee {brief(res)}")
    problems = [] if rec else [why]
    if rec and (rec.get("hangup_reason"), rec.get("hangup_by")) != ("normal", "local"):
        problems.append(f"hangup {rec.get('hangup_reason')}/{rec.get('hangup_by')}")
    c.check(f"{name}: call record hangup/normal/local", not problems and not problem,
            "; ".join(problems + [problem]) + f"; record {json.dumps(rec)}")


def send_cases(c: Collect, ctx: Context) -> None:
    send_pjsua_case(c, ctx)
    send_inband_case(c, ctx)


def dtmf_cases(c: Collect, ctx: Context, files: dict, phrases: list[str]) -> None:
    server = f"127.0.0.1:{ctx.ports.sip}"
    # SIP INFO: SIPp.
    info_port = ctx.ports.sip_port()
    sipp, sipp_run = harness.start_sipp(
        "info_dtmf.xml", remote=server, service=DTMF_NUMBER, local_port=info_port,
        media_port=ctx.ports.media_port(), out_dir=ctx.out, name="sipp_media_info_dtmf",
        global_timeout_s=25, recv_timeout_ms=15000, keys={"from_user": "e2e-dtmf-info"})
    raw = {
        # name: (from user, rawsip args, expected reason, expected phrases)
        "RFC 4733 without marker bit, foreign SSRC": (
            "e2e-dtmf-4733", ["--codecs", "0,101", "--rfc4733", "5@0.6", "--dtmf-ssrc",
                              "foreign", "--dtmf-no-marker"], "busy", [PRESSED_5]),
        "in-band tones, PCMU only offered": (
            "e2e-dtmf-inband", ["--codecs", "0", "--inband", "5@0.6"], "busy", [PRESSED_5]),
        "speech, no key, PCMU only offered (no false digit)": (
            "e2e-dtmf-speech", ["--codecs", "0", "--send-wav", files["speech_8k"],
                                "--send-at", "0.3"], "normal", []),
    }
    procs = {}
    for label, (user, args, _, _) in raw.items():
        record = os.path.join(ctx.out, f"media_{user}.wav")
        procs[label] = (start_rawsip("uac", ctx.ports.sip_port(), ctx.ports.media_port(),
                                     ["--server", server, "--to", DTMF_NUMBER, "--from-user",
                                      user, "--record", record, "--timeout", "20"] + args),
                        record)
    harness.wait_sipp(sipp, sipp_run, 30)
    rec, why = find_call(ctx, ctx.api, "e2e-dtmf-info", 10)
    problems = incoming_problems(rec, why, "busy")
    if sipp_run.returncode != 0:
        problems.append(f"sipp exit {sipp_run.returncode}\n{sipp_run.tail(20)}")
    c.check("media dtmf SIP INFO (SIPp, Signal=5): flow got exactly '5' (hangup busy), BYE "
            "answered", not problems, "; ".join(problems) + f"; record {json.dumps(rec)}")
    for label, (user, args, reason, want) in raw.items():
        proc, record = procs[label]
        res = finish_rawsip(proc, 40)
        log(f"media dtmf {label}: {brief(res)}")
        heard, segs = heard_in(record, phrases)
        rec, why = find_call(ctx, ctx.api, user, 10)
        problems = incoming_problems(rec, why, reason)
        offered_te = "0,101" in args
        want_pts = [0, rawsip.TE_PT] if offered_te else [0]
        if not (res.get("connected") and res.get("hung_up_by") == "remote"
                and "error" not in res and res.get("rtp_sent", 0) > 100
                and res.get("answer_payload_types") == want_pts):
            problems.append(f"caller {brief(res)} (want answer payload types {want_pts})")
        if heard != want:
            problems.append(f"caller heard {heard} (want {want}); segments {segs}")
        what = ("flow got exactly '5': caller hears 'you have pressed the digit 5', hangup busy"
                if reason == "busy" else "flow got no key: hangup normal, no prompt")
        c.check(f"media dtmf {label}: {what}", not problems,
                "; ".join(problems) + f"; record {json.dumps(rec)}")


def timeout_case(c: Collect, ctx: Context) -> None:
    ports = ctx.ports
    server = ctx.server_class(ctx.binary, ports, ctx.out, name="voxflow-rtp-timeout",
                              http=ports.http2, sip=ports.sip2, rtp=ports.rtp2,
                              extra=["--rtp-timeout", str(RTP_TIMEOUT_S)])
    try:
        if not c.check(f"media rtp-timeout: a second server with --rtp-timeout {RTP_TIMEOUT_S} "
                       "is ready", server.wait_ready(30),
                       f"exit {server.proc.poll()}\n{server.log_tail(30)}"):
            return
        api = ctx.api_class(ports.http2)
        bind_number(api, TIMEOUT_NUMBER, "e2e rtp timeout", timeout_flow())
        remote = f"127.0.0.1:{ports.sip2}"
        control = start_rawsip("uac", ports.sip_port(), ports.media_port(),
                               ["--server", remote, "--to", TIMEOUT_NUMBER, "--from-user",
                                "e2e-rtp-flowing", "--codecs", "0", "--timeout", "20"])
        sipp, run = harness.start_sipp(
            "no_rtp.xml", remote=remote, service=TIMEOUT_NUMBER, local_port=ports.sip_port(),
            media_port=ports.media_port(), out_dir=ctx.out, name="sipp_media_no_rtp",
            global_timeout_s=20, recv_timeout_ms=12000, keys={"from_user": "e2e-no-rtp"})
        harness.wait_sipp(sipp, run, 30)
        rec, why = find_call(ctx, api, "e2e-no-rtp", 10)
        problems = incoming_problems(rec, why, "rtp_timeout")
        took = seconds_between((rec or {}).get("tm_progressing"), (rec or {}).get("tm_hangup"))
        if took is None or not RTP_TIMEOUT_S - 0.3 <= took <= RTP_TIMEOUT_S + 2:
            problems.append(f"answer to hangup {took}s (want ~{RTP_TIMEOUT_S})")
        if run.returncode != 0:
            problems.append(f"sipp exit {run.returncode} (no BYE?)\n{run.tail(20)}")
        c.check(f"media rtp-timeout: a caller sending no RTP gets a BYE ~{RTP_TIMEOUT_S}s after "
                "the answer, record hangup/rtp_timeout/local", not problems,
                "; ".join(problems) + f"; record {json.dumps(rec)}")
        res = finish_rawsip(control, 30)
        rec, why = find_call(ctx, api, "e2e-rtp-flowing", 10)
        problems = incoming_problems(rec, why, "normal")
        after = res.get("bye_after_s")
        want = TIMEOUT_FLOW_SLEEP_MS / 1000
        if not (res.get("connected") and isinstance(after, (int, float))
                and want - 0.5 <= after <= want + 2 and res.get("rtp_sent", 0) > 100):
            problems.append(f"caller {brief(res)}")
        c.check("media rtp-timeout: a caller sending RTP keeps its call until the flow hangs up "
                f"({want:.0f}s)", not problems, "; ".join(problems) + f"; record {json.dumps(rec)}")
    finally:
        code = server.stop()
        log(f"rtp-timeout server exited with {code}; log at {server.log_path}")


# ---------------------------------------------------------------------------------------------


def run(rep, ctx: Context) -> None:
    """Set up (prompts, HTTP server, flows), run the cases in parallel, report in order."""
    started = time.monotonic()
    phrases = list(ctx.phrases) + MEDIA_PHRASES
    try:
        files = make_prompts(ctx.out)
    except (OSError, subprocess.SubprocessError) as e:
        rep.check("media: prompts made (espeak-ng, sox, lame, oggenc)", False, str(e))
        return
    httpd = CountingHttp(files["www"])
    try:
        urls = [httpd.url(files[k]) for k in ("wav", "mp3", "ogg")]
        try:
            for number, name, actions in (
                    (PLAY_NUMBER, "e2e play", play_flow(urls)),
                    (ECHO_NUMBER, "e2e echo", echo_flow("echo")),
                    (STREAM_ECHO_NUMBER, "e2e stream_echo", echo_flow("stream_echo")),
                    (REC_NUMBER, "e2e record", record_flow()),
                    (REC_MP3_NUMBER, "e2e record mp3", record_mp3_flow()),
                    (DTMF_NUMBER, "e2e dtmf", dtmf_flow())):
                bind_number(ctx.api, number, name, actions)
            ok, detail = True, ""
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"{type(e).__name__}: {e}"
        if not rep.check("media: flows (play, echo, recording, digits) and numbers created",
                         ok, detail):
            return
        cases = [
            ("play", play_case, (files, httpd, phrases)),
            ("echo", echo_case, (files, phrases)),
            ("record", record_case, (files, phrases)),
            ("record-mp3", record_mp3_case, (files, phrases)),
            ("digits_send", send_cases, ()),
            ("dtmf", dtmf_cases, (files, phrases)),
            ("rtp-timeout", timeout_case, ()),
        ]
        run_parallel(rep, "media", cases, ctx, 150)
    finally:
        httpd.close()
        log(f"media group took {time.monotonic() - started:.0f}s")

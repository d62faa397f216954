#!/usr/bin/env python3
"""What did the caller hear? Recognise known prompts in a recording.

The recording (any WAV sox can read; the caller writes 8 kHz mono 16-bit) is upsampled to
16 kHz (pocketsphinx's en-us model is 16 kHz), split on silence, and every segment is decoded
by pocketsphinx against a closed JSGF grammar made of the candidate phrases (every prompt in
the suite). The result is the ordered list of phrases heard. A grammar forces some phrase
onto any speech, so a hypothesis is refused when its alignment gives it away (a word squeezed
to the models' minimum length, or much of the sound aligned to silence; see
Recogniser.decode). Silence, noise, tones, a truncated prompt and most other sentences then
yield nothing; a sentence that sounds much like a prompt ("you chose billing") does not.

Module use:
    from hear import hear
    hear("call.wav", ["you chose sales", "you chose support"])  -> ["you chose sales"]
    hear_segments(...) -> [Segment(start_s, end_s, phrases)] for timing.

CLI:
    hear.py call.wav --phrase "you chose sales" --phrase "you chose support"
    hear.py call.wav --phrases-file prompts.txt [--segments]
prints one JSON line: the list of phrases heard (or, with --segments, the segments).

Phrases should not be prefixes of one another. Words missing from the CMU dictionary are
accepted when they are a compound of two dictionary words ("voxflow" = "vox" + "flow") or are
given with --pronounce WORD=PHONES.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, asdict

RATE = 16000
FRAME = RATE // 100  # 10 ms analysis frames
# Silence a segment gets on each side at least before decoding (10 ms frames), and its level.
EDGE_FRAMES = 30
SILENT_DB = -120.0
# A recognised word shorter than this (in 10 ms frames per phone of its pronunciation) was
# forced onto audio that does not contain it; see Recogniser.decode.
MIN_FRAMES_PER_PHONE = 4.0
# A larger share of a segment's loud frames aligned to silence means speech that the
# phrase does not explain. Measured on espeak-ng prompts over G.711: at most 0.2 for the
# right phrase, 0.3 and more for other sentences forced onto a phrase.
MAX_UNEXPLAINED_SHARE = 0.25

_DIGIT_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}


@dataclass
class Segment:
    """One stretch of sound between silences and what was recognised in it."""

    start_s: float
    end_s: float
    phrases: list[str]
    hypothesis: str
    refused: str = ""


def normalise(phrase: str) -> str:
    """Lower-case words only: the form phrases are compared and returned in."""
    text = phrase.lower()
    text = re.sub(r"\d", lambda m: " " + _DIGIT_WORDS[m.group(0)] + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def hear(wav_path: str, phrases: list[str], **kwargs) -> list[str]:
    """The ordered list of phrases (normalised, see `normalise`) heard in the recording."""
    heard: list[str] = []
    for seg in hear_segments(wav_path, phrases, **kwargs):
        heard.extend(seg.phrases)
    return heard


def hear_segments(
    wav_path: str,
    phrases: list[str],
    *,
    min_gap_s: float = 0.35,
    pronunciations: dict[str, str] | None = None,
) -> list[Segment]:
    """Every non-silent segment of the recording with the phrases recognised in it."""
    samples = load_16k(wav_path)
    spans = split_on_silence(samples, min_gap_s=min_gap_s)
    if not spans:
        return []
    recogniser = Recogniser(phrases, pronunciations or {})
    out = []
    levels = frame_levels(samples)
    for start, end in spans:
        seg_levels = levels[start // FRAME:end // FRAME]
        seg = samples[start:end]
        # Speech right at the start of a recording left the decoder no silence to begin in,
        # and it missed a prompt that it got from the same audio 30 ms later. Top the
        # silence on each side up to EDGE_FRAMES (only then: extra zeros cost accuracy).
        if seg_levels:
            loud = max(seg_levels) - 30.0
            first = next(i for i, lv in enumerate(seg_levels) if lv > loud)
            last = max(i for i, lv in enumerate(seg_levels) if lv > loud)
            lead = max(0, EDGE_FRAMES - first)
            trail = max(0, EDGE_FRAMES - (len(seg_levels) - 1 - last))
            seg = (array.array("h", bytes(2 * lead * FRAME)) + seg
                   + array.array("h", bytes(2 * trail * FRAME)))
            seg_levels = [SILENT_DB] * lead + seg_levels + [SILENT_DB] * trail
        hyp = recogniser.decode(seg, seg_levels)
        out.append(
            Segment(
                start_s=round(start / RATE, 3),
                end_s=round(end / RATE, 3),
                phrases=recogniser.phrases_in(hyp),
                hypothesis=hyp,
                refused=recogniser.last_refusal,
            )
        )
    return out


def load_16k(wav_path: str) -> array.array:
    """The recording as 16 kHz mono signed 16-bit samples (resampled with sox)."""
    if not os.path.exists(wav_path) or os.path.getsize(wav_path) <= 44:
        return array.array("h")
    proc = subprocess.run(
        ["sox", "-D", "-V1", wav_path, "-t", "raw", "-r", str(RATE), "-e", "signed-integer",
         "-b", "16", "-c", "1", "-L", "-"],
        capture_output=True, check=False, timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sox could not read {wav_path}: {proc.stderr.decode(errors='replace')}")
    data = proc.stdout
    samples = array.array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def split_on_silence(
    samples: array.array,
    *,
    min_gap_s: float = 0.35,
    min_sound_s: float = 0.2,
    pad_s: float = 0.3,
) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of sound separated by at least `min_gap_s` of silence.

    Silence is judged per 10 ms frame against a threshold set from the recording itself
    (above its noise floor, below its loudest part, never under -50 dBFS). Each range is
    widened by `pad_s` of the original samples on both sides (never into its neighbour).
    """
    levels = frame_levels(samples)
    n_frames = len(levels)
    if n_frames == 0:
        return []
    ordered = sorted(levels)
    floor = ordered[len(ordered) // 10]
    peak = ordered[-1]
    if peak < -50.0:
        return []
    threshold = max(-50.0, min(floor + 12.0, peak - 20.0))
    loud = [lv > threshold for lv in levels]

    runs: list[list[int]] = []
    i = 0
    while i < n_frames:
        if loud[i]:
            j = i
            while j < n_frames and loud[j]:
                j += 1
            runs.append([i, j])
            i = j
        else:
            i += 1
    gap = max(1, round(min_gap_s * 100))
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    min_sound = max(1, round(min_sound_s * 100))
    merged = [r for r in merged if r[1] - r[0] >= min_sound]

    pad = round(pad_s * 100)
    spans = []
    for k, (a, b) in enumerate(merged):
        lo = 0 if k == 0 else (merged[k - 1][1] + a) // 2
        hi = n_frames if k == len(merged) - 1 else (b + merged[k + 1][0]) // 2
        spans.append((max(lo, a - pad) * FRAME, min(hi, b + pad) * FRAME))
    return spans


def frame_levels(samples: array.array) -> list[float]:
    """Level in dBFS of each 10 ms frame (the decoder's frame rate)."""
    levels = []
    for i in range(len(samples) // FRAME):
        chunk = samples[i * FRAME:(i + 1) * FRAME]
        power = sum(s * s for s in chunk) / FRAME
        levels.append(10 * math.log10(power / (32768.0 * 32768.0) + 1e-12))
    return levels


class Recogniser:
    """pocketsphinx with a closed grammar: one or more of the given phrases in a row."""

    def __init__(self, phrases: list[str], pronunciations: dict[str, str]):
        from pocketsphinx import Decoder  # imported late: the CLI --help works without it

        self.phrases = []
        for p in phrases:
            n = normalise(p)
            if n and n not in self.phrases:
                self.phrases.append(n)
        if not self.phrases:
            raise ValueError("no candidate phrases")
        self.decoder = Decoder(
            lm=None,
            samprate=RATE,
            # Wide beams: with the ones REAL_CLIENTS.md found (1e-80/1e-60/1e-80) a few
            # voices and speeds lost the right path to pruning.
            beam=1e-100,
            wbeam=1e-80,
            pbeam=1e-100,
            # The lattice best-path pass drops the last word of a segment with little
            # trailing silence ("you chose sales" -> "you chose"); the first pass does not.
            bestpath=False,
            # G.711 silence decodes to exact zeros (log energy -inf), which makes the
            # decoder miss prompts; a faint dither with a fixed seed avoids that, and
            # keeps every run the same.
            dither=True,
            seed=1,
            loglevel="FATAL",
        )
        words = sorted({w for p in self.phrases for w in p.split()})
        for word in words:
            self._ensure_word(word, pronunciations)
        alternatives = " | ".join(f"( {p} )" for p in self.phrases)
        grammar = (
            "#JSGF V1.0;\n"
            "grammar prompts;\n"
            f"<phrase> = {alternatives};\n"
            "public <utterance> = <phrase>+;\n"
        )
        self.decoder.add_jsgf_string("prompts", grammar)
        self.decoder.activate_search("prompts")
        self.last_refusal = ""

    def _ensure_word(self, word: str, pronunciations: dict[str, str]) -> None:
        if word in pronunciations:
            self.decoder.add_word(word, pronunciations[word], True)
            return
        if self.decoder.lookup_word(word) is not None:
            return
        for cut in range(2, len(word) - 1):
            head = self.decoder.lookup_word(word[:cut])
            tail = self.decoder.lookup_word(word[cut:])
            if head and tail:
                self.decoder.add_word(word, f"{head} {tail}", True)
                return
        raise ValueError(
            f"word {word!r} is not in the dictionary; give it with --pronounce {word}=PHONES"
        )

    def decode(self, samples: array.array, levels: list[float] | None = None) -> str:
        """The best hypothesis for one segment ('' when nothing in the grammar fits).

        A closed grammar forces some phrase onto any speech; two signs give a forced match
        away, and such a hypothesis is refused (the reason is kept in `last_refusal`):
          - a word of 3 or more phones squeezed to the models' minimum length (3 frames per
            phone): a prompt cut short ("you chose sa...") or other words. Real speech stays
            well above it (espeak-ng at 120-190 wpm: 6 frames per phone or more);
          - over a quarter of the loud frames (within 30 dB of the segment's peak; `levels`
            are the segment's frame levels) aligned to silence or fillers: speech that the
            phrase does not explain.
        """
        buf = samples
        if sys.byteorder != "little":
            buf = array.array("h", samples)
            buf.byteswap()
        self.decoder.start_utt()
        self.decoder.process_raw(buf.tobytes(), no_search=False, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        self.last_refusal = ""
        if hyp is None or not hyp.hypstr.strip():
            return ""
        text = hyp.hypstr.strip()
        loud_level = (max(levels) - 30.0) if levels else None
        unexplained = 0
        for word in self.decoder.seg():
            frames = word.end_frame - word.start_frame + 1
            if word.word.startswith(("<", "(", "[")):  # silence, null and filler entries
                if loud_level is not None:
                    unexplained += sum(
                        1 for lv in levels[max(0, word.start_frame):word.end_frame + 1]
                        if lv > loud_level
                    )
                continue
            phones = self.decoder.lookup_word(word.word)
            n_phones = len(phones.split()) if phones else 0
            if n_phones >= 3 and frames / n_phones < MIN_FRAMES_PER_PHONE:
                self.last_refusal = (f"{text!r}: {word.word!r} squeezed to "
                                     f"{frames / n_phones:.1f} frames per phone")
                return ""
        loud_total = sum(1 for lv in levels if lv > loud_level) if levels else 0
        if loud_total and unexplained / loud_total > MAX_UNEXPLAINED_SHARE:
            self.last_refusal = (f"{text!r}: {unexplained} of {loud_total} loud frames "
                                 "aligned to silence")
            return ""
        return text

    def phrases_in(self, hypothesis: str) -> list[str]:
        """Split a hypothesis back into the phrases of the grammar (greedy, longest first)."""
        words = hypothesis.split()
        found = []
        by_length = sorted(self.phrases, key=lambda p: -len(p.split()))
        i = 0
        while i < len(words):
            for p in by_length:
                pw = p.split()
                if words[i:i + len(pw)] == pw:
                    found.append(p)
                    i += len(pw)
                    break
            else:
                i += 1
        return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav", help="recording to listen to")
    ap.add_argument("--phrase", action="append", default=[], help="a candidate phrase (repeat)")
    ap.add_argument("--phrases-file", help="file with one candidate phrase per line")
    ap.add_argument("--pronounce", action="append", default=[], metavar="WORD=PHONES",
                    help='extra pronunciation, e.g. "voxflow=V AA K S F L OW"')
    ap.add_argument("--min-gap", type=float, default=0.35,
                    help="seconds of silence that separate two segments (default 0.35)")
    ap.add_argument("--segments", action="store_true",
                    help="print the segments with times and hypotheses instead of the list")
    args = ap.parse_args(argv)
    phrases = list(args.phrase)
    if args.phrases_file:
        with open(args.phrases_file, encoding="utf-8") as f:
            phrases += [line.strip() for line in f if line.strip()]
    if not phrases:
        ap.error("give candidate phrases with --phrase or --phrases-file")
    prons = {}
    for item in args.pronounce:
        word, _, phones = item.partition("=")
        prons[normalise(word)] = phones.strip()
    segs = hear_segments(args.wav, phrases, min_gap_s=args.min_gap, pronunciations=prons)
    if args.segments:
        print(json.dumps([asdict(s) for s in segs]))
    else:
        print(json.dumps([p for s in segs for p in s.phrases]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

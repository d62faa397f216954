//! In-band DTMF detection against real synthesized speech: `espeak-ng` speaks sentences and
//! digit strings in several voices and at several speeds; the detector must find no digit in
//! any of it (talk-off), and must find exactly the digits of DTMF tones mixed over it.
//!
//! `espeak-ng` must be installed (it is in CI): without it these tests fail, they do not skip.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::OnceLock;

use voxflow_media::dtmf_detect::InbandDtmfDetector;
use voxflow_media::{audio, g711, tone};

/// What is spoken: prompts, conversation, spoken digit strings, sustained vowels and humming.
const TEXTS: &[&str] = &[
    "Hello, thank you for calling. Please enter your account number followed by the pound key.",
    "one two three four five six seven eight nine zero, star, pound, hash",
    "My number is 555 0123, and my PIN is 4 8 1 5 1 6 2 3 4 2.",
    "Your call is important to us. Please stay on the line and an agent will be with you shortly.",
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore.",
    "Aaaaah. Eeeeee. Ooooooh. Mmmmmm. Hmmmm. Yes? No! Really? Wow.",
    "To speak to sales, press one. For support, press two. To repeat this menu, press nine.",
    "La la la la, do re mi fa so la ti do.",
];

/// Voices and speeds (`espeak-ng` arguments).
const VOICES: &[&[&str]] = &[
    &["-v", "en"],
    &["-v", "en", "-s", "120"],
    &["-v", "en", "-s", "200"],
    &["-v", "en+f3"],
    &["-v", "en-us", "-s", "150"],
    &["-v", "en+m3", "-s", "260"],
    &["-v", "en+f4", "-s", "120"],
];

/// `text` spoken by `espeak-ng` with `args`, as 8 kHz PCM.
fn speak(args: &[&str], text: &str) -> Vec<i16> {
    let output = Command::new("espeak-ng")
        .arg("--stdout")
        .args(args)
        .arg(text)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run espeak-ng ({e}): the in-band DTMF speech tests need it installed \
                 (e.g. `apt-get install espeak-ng`)"
            )
        });
    assert!(
        output.status.success(),
        "espeak-ng {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pcm = audio::decode_wav(&output.stdout).unwrap();
    assert!(pcm.len() > 8000, "espeak-ng {args:?} said almost nothing");
    pcm
}

/// Every (voice, text) pair spoken, with a label for failure messages; synthesized once for
/// all the tests of this file.
fn corpus() -> &'static [(String, Vec<i16>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<i16>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        VOICES
            .iter()
            .flat_map(|args| {
                TEXTS
                    .iter()
                    .map(move |text| (format!("{args:?} {text:?}"), speak(args, text)))
            })
            .collect()
    })
}

/// All digits the detector reports for `pcm` fed in 20 ms frames.
fn detect(pcm: &[i16]) -> String {
    let mut detector = InbandDtmfDetector::new();
    let mut digits = String::new();
    for frame in pcm.chunks(160) {
        digits.extend(detector.process(frame));
        while let Some(digit) = detector.poll_digit() {
            digits.push(digit);
        }
    }
    digits
}

fn ulaw_round_trip(pcm: &[i16]) -> Vec<i16> {
    pcm.iter()
        .map(|s| g711::ulaw_decode(g711::ulaw_encode(*s)))
        .collect()
}

fn scale(pcm: &[i16], gain: f64) -> Vec<i16> {
    pcm.iter()
        .map(|s| (f64::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Peak amplitude of a sine at `dbm0` (the G.711 digital milliwatt peaks at about 22 750).
fn amplitude(dbm0: f64) -> i16 {
    (22_750.0 * 10f64.powf(dbm0 / 20.0)).round() as i16
}

/// The RMS level of the active (non-silent) 20 ms frames of `pcm`, in dBm0.
fn active_level(pcm: &[i16]) -> f64 {
    let zero_dbm0 = 22_750.0f64.powi(2) / 2.0;
    let powers: Vec<f64> = pcm
        .chunks(160)
        .map(|f| f.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / f.len() as f64)
        .filter(|p| *p > zero_dbm0 * 1e-5) // above -50 dBm0
        .collect();
    let mean = powers.iter().sum::<f64>() / powers.len().max(1) as f64;
    10.0 * (mean / zero_dbm0).log10()
}

/// `pcm` scaled so that its active speech is at `dbm0`.
fn at_level(pcm: &[i16], dbm0: f64) -> Vec<i16> {
    scale(pcm, 10f64.powf((dbm0 - active_level(pcm)) / 20.0))
}

/// `speech` with `tone_ms` DTMF tones (each frequency at `dbm0`) added every 400 ms from 250 ms
/// on, cycling through the keypad from `first`; returns the mix and the digits mixed in.
fn with_tones(speech: &[i16], tone_ms: u32, dbm0: f64, first: usize) -> (Vec<i16>, String) {
    let keys: Vec<char> = "0123456789*#ABCD".chars().collect();
    let mut mixed = speech.to_vec();
    let mut digits = String::new();
    let mut at = 2000;
    let mut key = first;
    while at + tone_ms as usize * 8 + 800 <= mixed.len() {
        let digit = keys[key % keys.len()];
        let dtmf = tone::dtmf(digit, tone_ms, amplitude(dbm0)).unwrap();
        for (s, t) in mixed[at..].iter_mut().zip(&dtmf) {
            *s = s.saturating_add(*t);
        }
        digits.push(digit);
        at += 3200;
        key += 1;
    }
    mixed.extend(tone::silence(100));
    (mixed, digits)
}

#[test]
fn speech_gives_no_digits() {
    for (label, pcm) in corpus() {
        // As synthesized (active speech about -13 dBm0, hotter than a telephone line), 20 dB
        // quieter, and 6 dB louder with its peaks clipped.
        for gain in [1.0, 0.1, 2.0] {
            let digits = detect(&scale(pcm, gain));
            assert_eq!(digits, "", "{label} at gain {gain}");
        }
    }
}

#[test]
fn speech_through_ulaw_gives_no_digits() {
    for (label, pcm) in corpus() {
        for gain in [1.0, 0.3] {
            let digits = detect(&ulaw_round_trip(&scale(pcm, gain)));
            assert_eq!(digits, "", "{label} at gain {gain}");
        }
    }
}

#[test]
fn dtmf_over_speech_gives_exactly_its_digits() {
    let mut total = 0;
    for (i, (label, pcm)) in corpus().iter().enumerate() {
        // Speech at a telephone line's level, 100 ms key presses at -10 dBm0 per tone on top
        // of it, wherever they fall (in words or in pauses).
        let speech = at_level(pcm, -20.0);
        let (mixed, digits) = with_tones(&speech, 100, -10.0, i);
        assert!(digits.len() >= 3, "{label}");
        assert_eq!(detect(&mixed), digits, "{label}");
        assert_eq!(
            detect(&ulaw_round_trip(&mixed)),
            digits,
            "{label} through µ-law"
        );
        total += digits.len();
    }
    assert!(total > 700, "{total} digits");
}

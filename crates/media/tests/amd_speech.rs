//! Answering-machine detection against real synthesised speech: `espeak-ng` speaks short
//! personal greetings ("Hello?", "Hello, this is Anna.") and voicemail greetings of several
//! seconds in five voices (English US and GB, German, French, Spanish) at three speeds; the
//! detector must call the first HUMAN and the second MACHINE, also through µ-law, at a quiet
//! level, over line noise and with a beep after the greeting.
//!
//! `espeak-ng` must be installed (it is in CI): without it these tests fail, they do not skip.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::process::Command;
use std::sync::OnceLock;

use voxflow_media::amd::{AmdCause, AmdConfig, AmdDecision, AmdDetector, AmdResult};
use voxflow_media::{audio, g711, tone};

/// A language: its `espeak-ng` voices and what a person and a voicemail say in it.
struct Language {
    voices: &'static [&'static str],
    /// Short personal greetings, each followed by silence (the person waits).
    human: &'static [&'static str],
    /// A voicemail greeting of about six seconds.
    machine: &'static str,
}

const LANGUAGES: &[Language] = &[
    Language {
        voices: &["en-us", "en-gb", "en-us+f3"],
        human: &["Hello?", "Hello, this is Anna.", "Yes?", "Hi, it's Tom."],
        machine: "Hi, you've reached John Smith. I can't take your call right now. Please leave \
                  your name, your number and a short message after the tone, and I will call \
                  you back as soon as I can.",
    },
    Language {
        voices: &["de"],
        human: &["Hallo?", "Hallo, hier ist Anna."],
        machine: "Hallo, Sie sind verbunden mit der Mailbox von Johannes Schmidt. Ich bin im \
                  Moment leider nicht erreichbar. Bitte hinterlassen Sie eine Nachricht nach \
                  dem Signalton.",
    },
    Language {
        voices: &["fr-fr"],
        human: &["Allô ?", "Allô, c'est Anna."],
        machine: "Bonjour, vous êtes bien sur la messagerie de Jean Dupont. Je ne suis pas \
                  disponible pour le moment. Merci de laisser un message après le bip sonore.",
    },
    Language {
        voices: &["es"],
        human: &["¿Hola?", "Hola, soy Anna."],
        machine: "Hola, has llamado a Juan García. En este momento no puedo atenderte. Por \
                  favor, deja tu mensaje después de la señal y te devolveré la llamada.",
    },
];

/// Speaking rates, in words per minute (`espeak-ng -s`; 175 is its default).
const SPEEDS: &[u32] = &[130, 175, 220];

/// `text` spoken by `espeak-ng` in `voice` at `speed`, as 8 kHz PCM.
fn speak(voice: &str, speed: u32, text: &str) -> Vec<i16> {
    let output = Command::new("espeak-ng")
        .arg("--stdout")
        .args(["-v", voice, "-s", &speed.to_string()])
        .arg(text)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run espeak-ng ({e}): the AMD speech tests need it installed \
                 (e.g. `apt-get install espeak-ng`)"
            )
        });
    assert!(
        output.status.success(),
        "espeak-ng -v {voice} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pcm = audio::decode_wav(&output.stdout).unwrap();
    assert!(pcm.len() > 1600, "espeak-ng -v {voice} said almost nothing");
    pcm
}

/// One synthesised utterance.
struct Utterance {
    voice: &'static str,
    speed: u32,
    text: &'static str,
    pcm: Vec<i16>,
}

/// Every personal greeting and every voicemail greeting in every voice and speed, synthesised
/// once for all the tests of this file: `(humans, machines)`.
fn corpus() -> &'static (Vec<Utterance>, Vec<Utterance>) {
    static CORPUS: OnceLock<(Vec<Utterance>, Vec<Utterance>)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut humans = Vec::new();
        let mut machines = Vec::new();
        for language in LANGUAGES {
            for voice in language.voices {
                for speed in SPEEDS {
                    let utterance = |text| Utterance {
                        voice,
                        speed: *speed,
                        text,
                        pcm: speak(voice, *speed, text),
                    };
                    humans.extend(language.human.iter().map(|text| utterance(text)));
                    machines.push(utterance(language.machine));
                }
            }
        }
        (humans, machines)
    })
}

fn silence(ms: u32) -> Vec<i16> {
    tone::silence(ms)
}

/// White noise with RMS amplitude `rms` (deterministic), `len` samples.
fn noise(len: usize, rms: f64, seed: u32) -> Vec<i16> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let uniform = f64::from(state >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
            (uniform * rms * 3f64.sqrt()).round() as i16
        })
        .collect()
}

fn scale(pcm: &[i16], gain: f64) -> Vec<i16> {
    pcm.iter()
        .map(|s| (f64::from(*s) * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn ulaw_round_trip(pcm: &[i16]) -> Vec<i16> {
    pcm.iter()
        .map(|s| g711::ulaw_decode(g711::ulaw_encode(*s)))
        .collect()
}

/// `pcm` with `noise_rms` white noise added (0: none).
fn with_noise(pcm: &[i16], noise_rms: f64) -> Vec<i16> {
    if noise_rms == 0.0 {
        return pcm.to_vec();
    }
    pcm.iter()
        .zip(noise(pcm.len(), noise_rms, 5))
        .map(|(s, n)| s.saturating_add(n))
        .collect()
}

/// How the audio reaches the detector.
#[derive(Clone, Copy, Debug)]
struct Channel {
    name: &'static str,
    gain: f64,
    ulaw: bool,
    noise_rms: f64,
}

/// As synthesised (hot, about -13 dBm0 active speech), through µ-law 6 dB down, quiet (20 dB
/// down), and 6 dB down over white line noise through µ-law: RMS 100 (-50 dBFS, below the
/// detector's minimum speech level) and RMS 300 (-41 dBFS, above it: the adaptive noise floor
/// must learn it; about 20 dB below the speech).
const CHANNELS: &[Channel] = &[
    Channel {
        name: "clean",
        gain: 1.0,
        ulaw: false,
        noise_rms: 0.0,
    },
    Channel {
        name: "ulaw -6dB",
        gain: 0.5,
        ulaw: true,
        noise_rms: 0.0,
    },
    Channel {
        name: "quiet -20dB",
        gain: 0.1,
        ulaw: false,
        noise_rms: 0.0,
    },
    Channel {
        name: "noisy ulaw",
        gain: 0.5,
        ulaw: true,
        noise_rms: 100.0,
    },
    Channel {
        name: "noise -41dB",
        gain: 0.5,
        ulaw: true,
        noise_rms: 300.0,
    },
];

impl Channel {
    fn apply(self, pcm: &[i16]) -> Vec<i16> {
        let pcm = with_noise(&scale(pcm, self.gain), self.noise_rms);
        if self.ulaw {
            ulaw_round_trip(&pcm)
        } else {
            pcm
        }
    }
}

/// One detection case: audio and the time by which the decision must have been made.
struct Case {
    label: String,
    pcm: Vec<i16>,
    deadline_ms: u32,
}

/// The decision for `pcm` fed in 20 ms frames, with the words and speech counted by then.
fn detect(pcm: &[i16]) -> (Option<AmdDecision>, u32, u32) {
    let mut detector = AmdDetector::new(AmdConfig::default());
    let decision = pcm.chunks(160).find_map(|frame| detector.process(frame));
    (decision, detector.words(), detector.speech_ms())
}

/// Runs every case, prints a table of the decisions and fails listing the wrong ones: those
/// `expect` rejects and those decided after their deadline.
fn check(title: &str, cases: &[Case], expect: impl Fn(&AmdDecision) -> bool) {
    let mut table = format!(
        "\n{title}\n{:<56} {:>8} {:<22} {:>5} {:>5} {:>6}\n",
        "case", "result", "cause", "ms", "words", "speech"
    );
    let mut wrong = Vec::new();
    for case in cases {
        let (decision, words, speech_ms) = detect(&case.pcm);
        let (result, cause, ms) = decision.map_or(("-", "-", 0), |d| {
            (d.result.as_str(), d.cause.as_str(), d.after_ms)
        });
        writeln!(
            table,
            "{:<56} {result:>8} {cause:<22} {ms:>5} {words:>5} {speech_ms:>6}",
            case.label
        )
        .unwrap();
        let right = decision
            .as_ref()
            .is_some_and(|d| expect(d) && d.after_ms <= case.deadline_ms);
        if !right {
            wrong.push(format!(
                "{}: {decision:?} (deadline {} ms)",
                case.label, case.deadline_ms
            ));
        }
    }
    println!("{table}");
    assert!(
        wrong.is_empty(),
        "{title}: {} wrong of {}:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

fn label(utterance: &Utterance, channel: Channel, extra: &str) -> String {
    let text: String = utterance.text.chars().take(22).collect();
    format!(
        "{:<8} {:>3} {:<11} {text:<22} {extra}",
        utterance.voice, utterance.speed, channel.name
    )
}

fn ms(pcm: &[i16]) -> u32 {
    u32::try_from(pcm.len() / 8).unwrap()
}

#[test]
fn short_greeting_then_silence_is_human() {
    let mut cases = Vec::new();
    for utterance in &corpus().0 {
        for channel in CHANNELS {
            // The person picks up, says their greeting after a moment and waits; HUMAN must
            // come about 800 ms after the greeting ends.
            for pause_ms in [400, 1800] {
                let pcm = [silence(pause_ms), utterance.pcm.clone(), silence(2000)].concat();
                cases.push(Case {
                    label: label(utterance, *channel, &format!("+{pause_ms}")),
                    deadline_ms: pause_ms + ms(&utterance.pcm) + 900,
                    pcm: channel.apply(&pcm),
                });
            }
        }
    }
    check("person: greeting then 2 s of silence", &cases, |d| {
        d.result == AmdResult::Human && d.cause == AmdCause::SilenceAfterGreeting
    });
}

/// A voicemail greeting: words or length, well before the greeting ends.
fn is_machine_by_greeting(decision: &AmdDecision) -> bool {
    decision.result == AmdResult::Machine
        && matches!(decision.cause, AmdCause::MaxWords | AmdCause::LongGreeting)
}

#[test]
fn voicemail_greeting_is_machine() {
    let mut cases = Vec::new();
    for utterance in &corpus().1 {
        assert!(
            ms(&utterance.pcm) > 5000,
            "{}: {} ms",
            utterance.text,
            ms(&utterance.pcm)
        );
        for channel in CHANNELS {
            let pcm = [silence(300), utterance.pcm.clone(), silence(2000)].concat();
            cases.push(Case {
                label: label(utterance, *channel, ""),
                pcm: channel.apply(&pcm),
                deadline_ms: 3500,
            });
        }
    }
    check("voicemail greeting", &cases, is_machine_by_greeting);
}

#[test]
fn greeting_then_beep_is_machine_before_the_beep() {
    let mut cases = Vec::new();
    for utterance in corpus().1.iter().filter(|u| u.speed == 175) {
        let channel = CHANNELS[1];
        let greeting = [silence(300), utterance.pcm.clone(), silence(400)].concat();
        let beep_at_ms = ms(&greeting);
        let pcm = [
            greeting,
            tone::beep().to_vec(),
            tone::sine(1000.0, 500, 8000),
            silence(2000),
        ]
        .concat();
        cases.push(Case {
            label: label(utterance, channel, &format!("beep@{beep_at_ms}")),
            pcm: channel.apply(&pcm),
            deadline_ms: beep_at_ms,
        });
    }
    check("voicemail greeting, beep", &cases, is_machine_by_greeting);
}

#[test]
fn greeting_after_a_long_silence_is_machine_by_initial_silence() {
    let mut cases = Vec::new();
    for utterance in corpus().1.iter().filter(|u| u.speed == 175) {
        for channel in CHANNELS {
            let pcm = [silence(3000), utterance.pcm.clone()].concat();
            cases.push(Case {
                label: label(utterance, *channel, "+3000"),
                pcm: channel.apply(&pcm),
                deadline_ms: 2500,
            });
        }
    }
    check("voicemail after 3 s of silence", &cases, |d| {
        d.result == AmdResult::Machine && d.cause == AmdCause::InitialSilence && d.after_ms == 2500
    });
}

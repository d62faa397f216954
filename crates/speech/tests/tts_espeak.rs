//! The espeak-ng engine against the real program and against small stand-in programs.
//!
//! The real-synthesis tests need `espeak-ng` installed (`apt-get install -y espeak-ng`).
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use voxflow_speech::{Espeak, TtsEngine, TtsError, TtsRequest};

/// Held for writing while a stand-in program is written, for reading while any program runs:
/// a child forked while a script's write descriptor is open would make exec fail with
/// ETXTBSY.
static SPAWN: RwLock<()> = RwLock::new(());

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("voxflow-speech-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn script(dir: &Path, body: &str) -> PathBuf {
    let _guard = SPAWN.write().unwrap();
    let path = dir.join("fake-espeak");
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn say(engine: &Espeak, text: &str) -> Result<Arc<[i16]>, TtsError> {
    let _guard = SPAWN.read().unwrap();
    engine.synthesize(&request(text))
}

fn request(text: &str) -> TtsRequest {
    TtsRequest {
        text: text.into(),
        language: None,
        gender: None,
    }
}

/// A 16-bit mono 8 kHz WAV of `samples`.
fn wav(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

#[test]
fn real_synthesis_is_plausible_8k_speech() {
    let d = dir("real");
    let engine = Espeak::new(d.clone());
    assert_eq!(engine.name(), "espeak-ng");
    let pcm = say(&engine, "Hello, this is a test of the voice platform.")
        .expect("espeak-ng must be installed: apt-get install -y espeak-ng");
    let seconds = pcm.len() as f64 / 8000.0;
    assert!((0.5..=5.0).contains(&seconds), "{seconds} s");
    assert!(rms(&pcm) > 300.0, "rms {}", rms(&pcm));

    // Cached: a second engine on the same directory whose program cannot even start.
    let cached = Espeak::new(d.clone()).with_program("/nonexistent/espeak-ng".into());
    assert_eq!(
        say(&cached, "Hello, this is a test of the voice platform.").unwrap(),
        pcm
    );
    // Language and gender are part of the key.
    let other_voice = {
        let _guard = SPAWN.read().unwrap();
        cached.synthesize(&TtsRequest {
            gender: Some("female".into()),
            ..request("Hello, this is a test of the voice platform.")
        })
    };
    assert!(matches!(other_voice, Err(TtsError::ProgramNotFound { .. })));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn real_synthesis_with_language_gender_and_ssml() {
    let d = dir("ssml");
    let engine = Espeak::new(d.clone());
    let plain = say(&engine, "Hello world").unwrap();
    let ssml = say(
        &engine,
        "<speak>Hello <break time=\"1000ms\"/> world</speak>",
    )
    .unwrap();
    // The break adds about a second; reading the markup aloud would add several.
    let extra = (ssml.len() as f64 - plain.len() as f64) / 8000.0;
    assert!((0.6..=1.6).contains(&extra), "SSML added {extra} s");

    let german = {
        let _guard = SPAWN.read().unwrap();
        engine
            .synthesize(&TtsRequest {
                text: "Guten Tag".into(),
                language: Some("de-DE".into()),
                gender: Some("male".into()),
            })
            .unwrap()
    };
    assert!(german.len() > 2000 && rms(&german) > 300.0);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn text_goes_on_stdin_and_voice_in_arguments() {
    let d = dir("args");
    fs::write(d.join("out.wav"), wav(&[100, -100, 200])).unwrap();
    let program = script(
        &d,
        &format!(
            "printf '%s\\n' \"$@\" > {0}/args\ncat > {0}/stdin\necho run >> {0}/count\ncat {0}/out.wav",
            d.display()
        ),
    );
    let engine = Espeak::new(d.join("cache")).with_program(program);
    let req = TtsRequest {
        text: "-rf / --help".into(),
        language: Some("en-GB".into()),
        gender: Some("female".into()),
    };
    let pcm = {
        let _guard = SPAWN.read().unwrap();
        engine.synthesize(&req).unwrap()
    };
    assert_eq!(pcm[..], [100, -100, 200]);
    assert_eq!(
        fs::read_to_string(d.join("args")).unwrap(),
        "-v\nen-gb+f3\n--stdout\n"
    );
    assert_eq!(fs::read_to_string(d.join("stdin")).unwrap(), "-rf / --help");

    // The second identical request is a cache hit: the program does not run again.
    let again = {
        let _guard = SPAWN.read().unwrap();
        engine.synthesize(&req).unwrap()
    };
    assert_eq!(again, pcm);
    assert_eq!(fs::read_to_string(d.join("count")).unwrap(), "run\n");

    // SSML adds -m.
    say(&engine, "<speak>hi</speak>").unwrap();
    assert_eq!(
        fs::read_to_string(d.join("args")).unwrap(),
        "-v\nen-us\n--stdout\n-m\n"
    );
    assert_eq!(fs::read_to_string(d.join("count")).unwrap(), "run\nrun\n");

    // The cache holds raw s16le files named by a SHA-256.
    let names: Vec<String> = fs::read_dir(d.join("cache/tts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names
            .iter()
            .all(|n| n.len() == 64 + 4 && n.ends_with(".s16"))
    );
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn missing_program_is_a_typed_error() {
    let d = dir("missing");
    let engine = Espeak::new(d.clone()).with_program("/nonexistent/espeak-ng".into());
    match say(&engine, "hello") {
        Err(TtsError::ProgramNotFound { program }) => {
            assert_eq!(program, Path::new("/nonexistent/espeak-ng"));
        }
        other => panic!("{other:?}"),
    }
    // Empty text needs no program at all.
    assert_eq!(say(&engine, "  ").unwrap().len(), 0);
    let long = "a".repeat(20_001);
    assert!(matches!(
        say(&engine, &long),
        Err(TtsError::TextTooLong { len: 20_001, .. })
    ));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn failing_program_reports_status_and_stderr() {
    let d = dir("fails");
    let program = script(
        &d,
        "cat > /dev/null\necho 'Error: voice does not exist.' >&2\nexit 3",
    );
    let engine = Espeak::new(d.join("cache")).with_program(program);
    match say(&engine, "hello") {
        Err(TtsError::Failed { status, stderr }) => {
            assert!(status.contains('3'), "{status}");
            assert_eq!(stderr, "Error: voice does not exist.");
        }
        other => panic!("{other:?}"),
    }
    assert!(!d.join("cache/tts").exists(), "failures are not cached");
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn garbage_output_is_bad_audio() {
    let d = dir("garbage");
    let program = script(&d, "cat > /dev/null\necho 'this is not a wav file'");
    let engine = Espeak::new(d.join("cache")).with_program(program);
    assert!(matches!(say(&engine, "hello"), Err(TtsError::BadAudio(_))));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn hanging_program_is_killed_at_the_timeout() {
    let d = dir("hangs");
    let program = script(&d, "exec sleep 30");
    let engine = Espeak::new(d.join("cache"))
        .with_program(program)
        .with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    assert!(matches!(
        say(&engine, "hello"),
        Err(TtsError::Timeout(t)) if t == Duration::from_millis(300)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = fs::remove_dir_all(&d);
}

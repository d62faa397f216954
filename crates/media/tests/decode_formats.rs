//! Decoding real WAV, MP3 and OGG/Vorbis files (see `fixtures/README.md`) to 8 kHz mono, and
//! refusing what is not audio.
#![allow(clippy::unwrap_used)]

use voxflow_media::audio::{AudioError, decode};

const WAV_16K_STEREO: &[u8] = include_bytes!("fixtures/tone_16k_stereo.wav");
const WAV_8K_ULAW: &[u8] = include_bytes!("fixtures/tone_8k_ulaw.wav");
const OGG_22K: &[u8] = include_bytes!("fixtures/tone_22k.ogg");
const MP3_44K: &[u8] = include_bytes!("fixtures/tone_44k.mp3");

const FIXTURES: [(&str, &[u8], &str); 4] = [
    ("tone_16k_stereo.wav", WAV_16K_STEREO, "wav"),
    ("tone_8k_ulaw.wav", WAV_8K_ULAW, "audio/wav"),
    ("tone_22k.ogg", OGG_22K, "ogg"),
    ("tone_44k.mp3", MP3_44K, "audio/mpeg"),
];

/// Power of `freq` in `samples` (8 kHz), by the Goertzel recurrence.
fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The strongest frequency of `samples` on a 5 Hz grid from 100 Hz to 3.9 kHz.
fn dominant(samples: &[i16]) -> f64 {
    (20..=780)
        .map(|i| f64::from(i) * 5.0)
        .map(|f| (f, goertzel(samples, f)))
        .fold(
            (0.0, f64::MIN),
            |best, x| if x.1 > best.1 { x } else { best },
        )
        .0
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// One second of 440 Hz then 1000 Hz at half scale, 8 kHz.
fn assert_is_the_test_signal(name: &str, pcm: &[i16]) {
    let seconds = pcm.len() as f64 / 8000.0;
    assert!((seconds - 1.0).abs() <= 0.02, "{name}: {seconds} s");
    let first = &pcm[800..3200];
    let second = &pcm[4800..7200];
    let (f1, f2) = (dominant(first), dominant(second));
    assert!((f1 - 440.0).abs() <= 5.0, "{name}: first half at {f1} Hz");
    assert!((f2 - 1000.0).abs() <= 5.0, "{name}: second half at {f2} Hz");
    // Half scale: a sine's RMS is 0.707 of its peak (16384). The mix-down must not cancel.
    for (half, level) in [("first", rms(first)), ("second", rms(second))] {
        assert!(
            (9_500.0..=13_500.0).contains(&level),
            "{name}: {half} half RMS {level}"
        );
    }
}

#[test]
fn decode_each_format_to_8k_mono() {
    for (name, bytes, hint) in FIXTURES {
        let pcm = decode(bytes, Some(hint)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_is_the_test_signal(name, &pcm);
        // The format comes from the bytes: no hint, or a wrong one, decodes the same.
        assert_eq!(decode(bytes, None).unwrap(), pcm, "{name}");
        assert_eq!(decode(bytes, Some("flac")).unwrap(), pcm, "{name}");
    }
}

#[test]
fn decode_mp3_behind_an_id3v2_tag() {
    // An ID3v2.3 tag whose frame body looks like MPEG frame syncs (as cover art often does):
    // the tag must be skipped as a tag, not mistaken for audio.
    let mut body = b"TXXX".to_vec();
    let payload: Vec<u8> = [0u8]
        .into_iter()
        .chain([0xFF, 0xFB, 0x90, 0x64].repeat(64))
        .collect();
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&payload);
    let size = body.len() as u32;
    let syncsafe = [
        (size >> 21) as u8 & 0x7F,
        (size >> 14) as u8 & 0x7F,
        (size >> 7) as u8 & 0x7F,
        size as u8 & 0x7F,
    ];
    let mut tagged = b"ID3\x03\x00\x00".to_vec();
    tagged.extend_from_slice(&syncsafe);
    tagged.extend_from_slice(&body);
    tagged.extend_from_slice(MP3_44K);
    let pcm = decode(&tagged, Some("mp3")).unwrap();
    assert_is_the_test_signal("tagged mp3", &pcm);
}

#[test]
fn decode_empty_and_garbage_are_errors() {
    assert_eq!(decode(b"", None), Err(AudioError::Empty));
    assert_eq!(decode(b"", Some("mp3")), Err(AudioError::Empty));
    for text in [
        &b"<html><body>404 Not Found</body></html>"[..],
        b"{\"error\":\"no such prompt\"}",
        &[0u8; 4096],
    ] {
        assert!(
            matches!(decode(text, Some("mp3")), Err(AudioError::UnknownFormat(_))),
            "{:?}",
            decode(text, Some("mp3"))
        );
    }
    // Pseudo-random bytes: an error (or, should they happen to sync as MPEG frames, a short
    // noise), never a panic and never more audio than bytes could hold.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for len in [1, 2, 3, 16, 100, 1000, 20_000] {
        let noise: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if let Ok(pcm) = decode(&noise, None) {
            assert!(
                pcm.len() <= 8000 * 2,
                "{len} random bytes gave {} samples",
                pcm.len()
            );
        }
    }
}

#[test]
fn decode_headers_cut_short_are_errors() {
    for (name, bytes, hint) in FIXTURES {
        for cut in [1, 4, 12, 20] {
            assert!(
                decode(&bytes[..cut], Some(hint)).is_err(),
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn decode_truncated_files_play_what_is_there() {
    for (name, bytes, hint) in FIXTURES {
        let half = decode(&bytes[..bytes.len() / 2], Some(hint));
        if name.ends_with(".ogg") {
            // The OGG reader looks for the stream's last page: a cut file is malformed.
            assert!(matches!(half, Err(AudioError::Malformed(_))), "{half:?}");
        } else {
            let half = half.unwrap_or_else(|e| panic!("{name}: {e}"));
            let seconds = half.len() as f64 / 8000.0;
            assert!(
                (0.3..0.7).contains(&seconds),
                "{name}: half a file gave {seconds} s"
            );
            assert!((dominant(&half[800..2400]) - 440.0).abs() <= 5.0, "{name}");
        }
        // Cuts all along the file: no panic, never longer than the whole.
        for cut in (0..bytes.len()).step_by(bytes.len() / 32) {
            if let Ok(pcm) = decode(&bytes[..cut], Some(hint)) {
                assert!(pcm.len() <= 8160, "{name} cut at {cut}: {}", pcm.len());
            }
        }
    }
}

#[test]
fn decode_corrupted_bytes_never_panic() {
    for (name, bytes, hint) in FIXTURES {
        for (i, at) in (0..bytes.len()).step_by(bytes.len() / 48).enumerate() {
            let mut bad = bytes.to_vec();
            bad[at] ^= [0xFF, 0x80, 0x01, 0x55][i % 4];
            if let Ok(pcm) = decode(&bad, Some(hint)) {
                assert!(
                    pcm.len() <= 8000 * 3,
                    "{name} flipped at {at}: {}",
                    pcm.len()
                );
            }
        }
    }
}

//! Audio files into 8 kHz mono PCM: WAV decoding, channel mix-down and resampling.
//!
//! These run once per prompt (not per packet) and allocate freely; call them off the media
//! path (the runtime uses a blocking task).

use std::borrow::Cow;
use std::io::Cursor;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Why audio could not be decoded or resampled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// The bytes are not a WAV file this decoder understands.
    #[error("invalid or unsupported WAV: {0}")]
    Wav(String),
    /// A sample rate of 0 or above 768 kHz.
    #[error("unsupported sample rate {0} Hz")]
    InvalidSampleRate(u32),
    /// The decoded audio would be longer than [`MAX_SECONDS`].
    #[error("audio longer than {MAX_SECONDS} s")]
    TooLong,
    /// The resampler failed.
    #[error("resampling failed: {0}")]
    Resample(String),
}

/// The longest audio accepted, in seconds (bounds memory on hostile headers).
pub const MAX_SECONDS: u64 = 3600;

/// Decodes a WAV file (integer PCM of 8, 16, 24 or 32 bits, or 32-bit float; any sample rate; any
/// number of channels, mixed down by averaging) to 8 kHz mono PCM.
///
/// A data chunk whose declared length runs past the end of the bytes (as written by programs
/// that stream a WAV to a pipe, e.g. `espeak-ng --stdout`) is read up to the end of the bytes.
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    let bytes = clamp_data_chunk(bytes);
    let mut reader = hound::WavReader::new(Cursor::new(bytes.as_ref()))
        .map_err(|e| AudioError::Wav(e.to_string()))?;
    let spec = reader.spec();
    let rate = spec.sample_rate;
    if rate == 0 || rate > MAX_RATE {
        return Err(AudioError::InvalidSampleRate(rate));
    }
    let channels = usize::from(spec.channels.max(1));
    let frames = reader.len() as usize / channels;
    if frames as u64 > MAX_SECONDS * u64::from(rate) {
        return Err(AudioError::TooLong);
    }

    let mut mono = Vec::with_capacity(frames);
    let mut mix = |samples: &mut dyn Iterator<Item = Result<f32, hound::Error>>| {
        let mut sum = 0.0f32;
        let mut n = 0;
        for sample in samples {
            sum += sample.map_err(|e| AudioError::Wav(e.to_string()))?;
            n += 1;
            if n == channels {
                mono.push(sum / channels as f32);
                sum = 0.0;
                n = 0;
            }
        }
        Ok::<(), AudioError>(())
    };
    match spec.sample_format {
        hound::SampleFormat::Float => mix(&mut reader.samples::<f32>())?,
        hound::SampleFormat::Int => {
            let bits = u32::from(spec.bits_per_sample);
            if !(1..=32).contains(&bits) {
                return Err(AudioError::Wav(format!("{bits}-bit samples")));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            mix(&mut reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)))?;
        }
    }

    let mono = resample_f32(&mono, rate)?;
    Ok(mono.iter().map(|s| to_i16(*s)).collect())
}

/// Resamples mono PCM at `rate` Hz to 8 kHz with a band-limited (FFT) resampler; the output has
/// `len * 8000 / rate` samples (rounded up) and no added delay.
pub fn resample_to_8k(samples: &[i16], rate: u32) -> Result<Vec<i16>, AudioError> {
    if rate == 0 || rate > MAX_RATE {
        return Err(AudioError::InvalidSampleRate(rate));
    }
    if rate == TARGET_RATE {
        return Ok(samples.to_vec());
    }
    let input: Vec<f32> = samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    let output = resample_f32(&input, rate)?;
    Ok(output.iter().map(|s| to_i16(*s)).collect())
}

const TARGET_RATE: u32 = 8000;
const MAX_RATE: u32 = 768_000;

fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

fn resample_f32(samples: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == TARGET_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        TARGET_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| AudioError::Resample(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    Ok(output.take_data())
}

/// Returns `bytes` with the `data` chunk's length clamped to the bytes actually present (and
/// to whole sample frames), borrowing when nothing needs fixing.
fn clamp_data_chunk(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Cow::Borrowed(bytes);
    }
    let mut offset = 12usize;
    let mut block_align = 1u32;
    while let Some(header) = bytes.get(offset..offset + 8) {
        let (id, len) = header.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        let body = offset + 8;
        if id == b"fmt " {
            if let Some(&[lo, hi]) = bytes.get(body + 12..body + 14) {
                block_align = u32::from(u16::from_le_bytes([lo, hi])).max(1);
            }
        } else if id == b"data" {
            let available = (bytes.len() - body) as u64;
            if u64::from(len) <= available {
                return Cow::Borrowed(bytes);
            }
            let whole = available - available % u64::from(block_align);
            let mut fixed = bytes.get(..body + whole as usize).unwrap_or(bytes).to_vec();
            if let Some(field) = fixed.get_mut(offset + 4..offset + 8) {
                field.copy_from_slice(&(whole as u32).to_le_bytes());
            }
            return Cow::Owned(fixed);
        }
        // Chunks are padded to an even length.
        let Some(next) = body
            .checked_add(len as usize)
            .and_then(|n| n.checked_add(len as usize % 2))
        else {
            break;
        };
        offset = next;
    }
    Cow::Borrowed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::sine;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        write(&mut writer);
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn spec(channels: u16, sample_rate: u32, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    /// Zero crossings per second of the middle of a signal (edges trimmed).
    fn crossing_rate(s: &[i16], rate: f64) -> f64 {
        let trim = s.len() / 10;
        let mid = &s[trim..s.len() - trim];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / (mid.len() as f64 / rate)
    }

    #[test]
    fn resampling_keeps_frequency_and_length() {
        // A 1 kHz sine at 22.05 kHz, one second.
        let step = std::f64::consts::TAU * 1000.0 / 22050.0;
        let input: Vec<i16> = (0..22050)
            .map(|i| (10000.0 * (step * f64::from(i)).sin()) as i16)
            .collect();
        let out = resample_to_8k(&input, 22050).unwrap();
        assert_eq!(out.len(), 8000);
        let rate = crossing_rate(&out, 8000.0);
        assert!((rate - 2000.0).abs() < 5.0, "{rate}");
        let peak = out[800..7200]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((9500..=10500).contains(&peak), "{peak}");
    }

    #[test]
    fn resampling_removes_content_above_4k() {
        // 6 kHz at 48 kHz cannot be represented at 8 kHz: it must be filtered, not aliased.
        let step = std::f64::consts::TAU * 6000.0 / 48000.0;
        let input: Vec<i16> = (0..48000)
            .map(|i| (10000.0 * (step * f64::from(i)).sin()) as i16)
            .collect();
        let out = resample_to_8k(&input, 48000).unwrap();
        let peak = out[800..7200]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(peak < 100, "{peak}");
    }

    #[test]
    fn resample_edge_cases() {
        assert_eq!(resample_to_8k(&[1, 2, 3], 8000).unwrap(), [1, 2, 3]);
        assert_eq!(resample_to_8k(&[], 16000).unwrap(), Vec::<i16>::new());
        assert_eq!(
            resample_to_8k(&[1], 0),
            Err(AudioError::InvalidSampleRate(0))
        );
        assert_eq!(resample_to_8k(&[5; 3], 16000).unwrap().len(), 2);
    }

    #[test]
    fn decodes_16_bit_8k_mono_exactly() {
        let tone = sine(400.0, 100, 12000);
        let bytes = wav(spec(1, 8000, 16, false), |w| {
            for s in &tone {
                w.write_sample(*s).unwrap();
            }
        });
        assert_eq!(decode_wav(&bytes).unwrap(), tone);
    }

    #[test]
    fn decodes_and_mixes_every_sample_format() {
        let tone = sine(500.0, 200, 16000);
        for (bits, float) in [
            (8, false),
            (16, false),
            (24, false),
            (32, false),
            (32, true),
        ] {
            for rate in [8000, 16000, 44100] {
                let frames: Vec<f64> = (0..(rate as usize / 5))
                    .map(|i| {
                        (std::f64::consts::TAU * 500.0 * i as f64 / f64::from(rate)).sin() * 0.5
                    })
                    .collect();
                let bytes = wav(spec(2, rate, bits, float), |w| {
                    for x in &frames {
                        // Left carries the tone, right is silent: the mix halves it.
                        if float {
                            w.write_sample(*x as f32).unwrap();
                            w.write_sample(0.0f32).unwrap();
                        } else {
                            let full = f64::from(1u32 << (bits - 1)) - 1.0;
                            w.write_sample((x * full) as i32).unwrap();
                            w.write_sample(0i32).unwrap();
                        }
                    }
                });
                let out = decode_wav(&bytes).unwrap();
                assert_eq!(out.len(), 1600, "{bits} {float} {rate}");
                let peak = out[160..1440]
                    .iter()
                    .map(|s| s.unsigned_abs())
                    .max()
                    .unwrap();
                let expected = 8192.0; // 0.5 * 0.5 * 32768
                let tolerance = if bits == 8 { 400.0 } else { 200.0 };
                assert!(
                    (f64::from(peak) - expected).abs() < tolerance,
                    "{bits} {float} {rate}: {peak}"
                );
                let rate_out = crossing_rate(&out, 8000.0);
                assert!(
                    (rate_out - 1000.0).abs() < 15.0,
                    "{bits} {rate}: {rate_out}"
                );
                let _ = &tone;
            }
        }
    }

    #[test]
    fn streaming_wav_with_placeholder_length() {
        let tone = sine(400.0, 50, 12000);
        let mut bytes = wav(spec(1, 8000, 16, false), |w| {
            for s in &tone {
                w.write_sample(*s).unwrap();
            }
        });
        // What espeak-ng --stdout writes: lengths it could not seek back to fix.
        bytes[4..8].copy_from_slice(&0x7FFF_F024u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0x7FFF_F000u32.to_le_bytes());
        bytes.push(0x42); // an odd trailing byte, half a sample
        assert_eq!(decode_wav(&bytes).unwrap(), tone);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode_wav(b""), Err(AudioError::Wav(_))));
        assert!(matches!(
            decode_wav(b"RIFF\0\0\0\0WAVE"),
            Err(AudioError::Wav(_))
        ));
        assert!(matches!(decode_wav(&[0xFF; 100]), Err(AudioError::Wav(_))));
        let good = wav(spec(1, 8000, 16, false), |w| {
            for s in 0..100i16 {
                w.write_sample(s).unwrap();
            }
        });
        for cut in 0..good.len() {
            let _ = decode_wav(&good[..cut]);
        }
        for i in 0..44 {
            for b in [0u8, 0xFF, 0x7F, 1] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode_wav(&bad);
            }
        }
    }
}

//! Audio files into 8 kHz mono PCM: WAV, MP3 and OGG/Vorbis decoding (with symphonia), channel
//! mix-down and resampling.
//!
//! These run once per prompt (not per packet) and allocate; call them off the media path (the
//! runtime uses a blocking task). They are pure functions over bytes: the runtime fetches and
//! caches, this module only decodes. Work is bounded: audio longer than [`MAX_SECONDS`] is
//! refused as soon as that is known, and the source-rate signal is resampled as it is decoded,
//! so memory stays proportional to the 8 kHz output.

use std::borrow::Cow;
use std::io::Cursor;
use std::panic::AssertUnwindSafe;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Why audio could not be decoded or resampled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// No bytes at all.
    #[error("empty audio file")]
    Empty,
    /// The bytes are in no container format we read (WAV, MP3, OGG).
    #[error("not a WAV, MP3 or OGG file: {0}")]
    UnknownFormat(String),
    /// The container holds no audio track in a codec we decode (PCM, µ-law, A-law, MP3, Vorbis).
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    /// The container was recognised but its contents are corrupt (no packet decodes).
    #[error("malformed audio: {0}")]
    Malformed(String),
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

/// The longest audio accepted, in seconds (30 minutes; bounds memory and CPU on hostile input).
pub const MAX_SECONDS: u64 = 30 * 60;

/// Decodes a WAV, MP3 or OGG/Vorbis file to 8 kHz mono PCM.
///
/// The format is found from the bytes themselves; `hint` (a file extension such as `"mp3"` or
/// `".ogg"`, or a MIME type such as `"audio/mpeg"`) is only a first guess and may be wrong.
/// WAV may hold integer PCM of 8, 16, 24 or 32 bits, 32/64-bit float, µ-law or A-law; any sample
/// rate up to 768 kHz; any number of channels (mixed down by averaging). MP3 and Vorbis encoder
/// delay and padding are trimmed.
///
/// A WAV or MP3 file cut short (a truncated download, a WAV streamed to a pipe with a placeholder
/// length, as `espeak-ng --stdout` writes) decodes up to where it ends; an OGG file cut short is
/// [`AudioError::Malformed`] (its reader needs the last page). Bytes that are not audio, a
/// container with nothing decodable in it, or audio longer than [`MAX_SECONDS`] are errors;
/// no input makes this panic.
pub fn decode(bytes: &[u8], hint: Option<&str>) -> Result<Vec<i16>, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    let bytes = clamp_data_chunk(bytes);
    // The demuxers and codecs are third-party code fed hostile bytes: a bug in them must cost
    // this one prompt, not the process (nor a runtime worker thread).
    std::panic::catch_unwind(AssertUnwindSafe(|| decode_any(&bytes, hint))).unwrap_or_else(|_| {
        Err(AudioError::Malformed(
            "the decoder failed on this input".into(),
        ))
    })
}

/// Decodes a WAV file to 8 kHz mono PCM: [`decode`] with a WAV hint (any format it reads is
/// accepted).
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, AudioError> {
    decode(bytes, Some("wav"))
}

/// Resamples mono PCM at `rate` Hz to 8 kHz with a band-limited (FFT) resampler; the output has
/// `len * 8000 / rate` samples (rounded up) and no added delay.
pub fn resample_to_8k(samples: &[i16], rate: u32) -> Result<Vec<i16>, AudioError> {
    if rate == TARGET_RATE {
        return Ok(samples.to_vec());
    }
    let mut to_8k = Downsampler::new(rate)?;
    let input: Vec<f32> = samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    to_8k.push(&input)?;
    Ok(to_8k.finish()?.iter().map(|s| to_i16(*s)).collect())
}

const TARGET_RATE: u32 = 8000;
const MAX_RATE: u32 = 768_000;
/// Input frames per resampler chunk.
const CHUNK: usize = 1024;
/// Packets that fail to decode before a stream is given up as corrupt.
const MAX_BAD_PACKETS: u32 = 64;

fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Probe, demux, decode, mix down and resample.
fn decode_any(bytes: &[u8], hint: Option<&str>) -> Result<Vec<i16>, AudioError> {
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &probe_hint(hint),
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            // The bytes were recognised but end (or break) inside the container's headers.
            SymphoniaError::IoError(_) | SymphoniaError::DecodeError(_) => {
                AudioError::Malformed(e.to_string())
            }
            _ => AudioError::UnknownFormat(e.to_string()),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported("no audio track".into()))?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err(AudioError::Unsupported("no audio track".into()));
    };
    let track_id = track.id;
    if let (Some(rate), Some(frames)) = (params.sample_rate, track.num_frames) {
        check_rate(rate)?;
        if frames > MAX_SECONDS * u64::from(rate) {
            return Err(AudioError::TooLong);
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(e.to_string()))?;

    let mut to_8k: Option<Downsampler> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    let mut bad_packets = 0u32;
    let mut last_error = String::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A stream cut short (or corrupt past some point) plays up to where it breaks; one
            // that breaks before any audio is reported below.
            Err(e) => {
                last_error = e.to_string();
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    return Err(AudioError::Malformed(e.to_owned()));
                }
                last_error = format!("malformed stream: {e}");
                continue;
            }
            Err(SymphoniaError::IoError(e)) => {
                last_error = e.to_string();
                break;
            }
            Err(e) => return Err(AudioError::Unsupported(e.to_string())),
        };
        if buffer.frames() == 0 {
            continue;
        }
        let rate = buffer.spec().rate();
        let channels = buffer.spec().channels().count().max(1);
        let sink = match &mut to_8k {
            Some(sink) if sink.rate == rate => sink,
            Some(_) => {
                return Err(AudioError::Unsupported(
                    "sample rate changes within the stream".into(),
                ));
            }
            None => to_8k.insert(Downsampler::new(rate)?),
        };
        buffer.copy_to_vec_interleaved::<f32>(&mut interleaved);
        mono.clear();
        mono.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        sink.push(&mono)?;
    }
    match to_8k {
        Some(sink) => Ok(sink.finish()?.iter().map(|s| to_i16(*s)).collect()),
        // A well-formed file with no samples in it is silence, not an error.
        None if last_error.is_empty() && bad_packets == 0 => Ok(Vec::new()),
        None => Err(AudioError::Malformed(if last_error.is_empty() {
            "no audio could be decoded".into()
        } else {
            last_error
        })),
    }
}

/// A symphonia hint from a file extension or a MIME type (parameters dropped).
fn probe_hint(hint: Option<&str>) -> Hint {
    let mut probe_hint = Hint::new();
    if let Some(hint) = hint.map(str::trim).filter(|h| !h.is_empty()) {
        if hint.contains('/') {
            let mime = hint.split(';').next().unwrap_or(hint).trim();
            probe_hint.mime_type(&mime.to_ascii_lowercase());
        } else {
            probe_hint.with_extension(&hint.trim_start_matches('.').to_ascii_lowercase());
        }
    }
    probe_hint
}

fn check_rate(rate: u32) -> Result<(), AudioError> {
    if rate == 0 || rate > MAX_RATE {
        return Err(AudioError::InvalidSampleRate(rate));
    }
    Ok(())
}

/// Mono f32 at some rate in, 8 kHz out, chunk by chunk as it is decoded (so a long file never
/// sits in memory at its source rate). Equivalent to resampling the whole clip at once: the
/// resampler's delay is trimmed and the output has `ceil(len * 8000 / rate)` samples.
struct Downsampler {
    rate: u32,
    /// `None` when the input is already at 8 kHz.
    resampler: Option<Fft<f32>>,
    /// Input not yet resampled (less than a chunk after each push).
    pending: Vec<f32>,
    /// One chunk of resampler output.
    scratch: Vec<f32>,
    out: Vec<f32>,
    /// Leading output frames still to drop (the resampler's delay).
    to_trim: usize,
    /// Input frames pushed so far.
    frames_in: u64,
}

impl Downsampler {
    fn new(rate: u32) -> Result<Downsampler, AudioError> {
        check_rate(rate)?;
        let resampler = if rate == TARGET_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    rate as usize,
                    TARGET_RATE as usize,
                    CHUNK,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| AudioError::Resample(e.to_string()))?,
            )
        };
        let (scratch, to_trim) = resampler
            .as_ref()
            .map_or((0, 0), |r| (r.output_frames_max(), r.output_delay()));
        Ok(Downsampler {
            rate,
            resampler,
            pending: Vec::new(),
            scratch: vec![0.0; scratch],
            out: Vec::new(),
            to_trim,
            frames_in: 0,
        })
    }

    /// Add input; refuses to go past [`MAX_SECONDS`].
    fn push(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        self.frames_in += samples.len() as u64;
        if self.frames_in > MAX_SECONDS * u64::from(self.rate) {
            return Err(AudioError::TooLong);
        }
        let Some(resampler) = &mut self.resampler else {
            self.out.extend_from_slice(samples);
            return Ok(());
        };
        self.pending.extend_from_slice(samples);
        let mut used = 0;
        loop {
            let need = resampler.input_frames_next();
            let Some(chunk) = self.pending.get(used..used + need) else {
                break;
            };
            let (consumed, produced) = run_chunk(resampler, chunk, need, None, &mut self.scratch)?;
            used += consumed.max(1);
            emit(&self.scratch, produced, &mut self.to_trim, &mut self.out);
        }
        self.pending.drain(..used.min(self.pending.len()));
        Ok(())
    }

    /// Flush the last partial chunk and the resampler's delay; the 8 kHz signal.
    fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        let expected = usize::try_from(
            (self.frames_in * u64::from(TARGET_RATE)).div_ceil(u64::from(self.rate)),
        )
        .map_err(|_| AudioError::TooLong)?;
        let Some(resampler) = &mut self.resampler else {
            return Ok(self.out);
        };
        if self.frames_in == 0 {
            return Ok(Vec::new());
        }
        let need = resampler.input_frames_next();
        let mut last = std::mem::take(&mut self.pending);
        let partial = last.len();
        last.resize(need.max(partial), 0.0);
        let mut indexing = Indexing {
            partial_len: Some(partial),
            ..Indexing::default()
        };
        // Each round yields at least one output frame (the resampler never produces nothing
        // for a whole chunk), so this ends; the bound is a guard against a resampler bug.
        for _ in 0..=expected + self.to_trim + 1 {
            if self.out.len() >= expected {
                break;
            }
            let (_, produced) =
                run_chunk(resampler, &last, need, Some(&indexing), &mut self.scratch)?;
            emit(&self.scratch, produced, &mut self.to_trim, &mut self.out);
            indexing.partial_len = Some(0);
        }
        self.out.truncate(expected);
        Ok(self.out)
    }
}

/// Resample one chunk of `frames` input frames (fewer when `indexing` says so) into `scratch`.
fn run_chunk(
    resampler: &mut Fft<f32>,
    input: &[f32],
    frames: usize,
    indexing: Option<&Indexing>,
    scratch: &mut [f32],
) -> Result<(usize, usize), AudioError> {
    let input =
        InterleavedSlice::new(input, 1, frames).map_err(|e| AudioError::Resample(e.to_string()))?;
    let out_frames = scratch.len();
    let mut output = InterleavedSlice::new_mut(scratch, 1, out_frames)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    resampler
        .process_into_buffer(&input, &mut output, indexing)
        .map_err(|e| AudioError::Resample(e.to_string()))
}

/// Append `produced` frames of `scratch` to `out`, dropping the first `to_trim` overall.
fn emit(scratch: &[f32], produced: usize, to_trim: &mut usize, out: &mut Vec<f32>) {
    let produced = scratch.get(..produced).unwrap_or(scratch);
    let skip = (*to_trim).min(produced.len());
    *to_trim -= skip;
    out.extend_from_slice(produced.get(skip..).unwrap_or_default());
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
        assert_eq!(decode_wav(b""), Err(AudioError::Empty));
        assert!(decode_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(decode(&[0xFF; 100], None).is_err());
        assert!(matches!(
            decode(b"hello, this is not audio at all", Some("mp3")),
            Err(AudioError::UnknownFormat(_))
        ));
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

    #[test]
    fn sample_rate_is_bounded() {
        let mut bytes = wav(spec(1, 8000, 16, false), |w| {
            for _ in 0..16 {
                w.write_sample(0i16).unwrap();
            }
        });
        // 768 kHz (byte rate to match) is the highest rate taken...
        bytes[24..28].copy_from_slice(&768_000u32.to_le_bytes());
        bytes[28..32].copy_from_slice(&1_536_000u32.to_le_bytes());
        assert_eq!(decode_wav(&bytes).unwrap().len(), 1);
        // ...and a rate above the cap is refused.
        bytes[24..28].copy_from_slice(&800_000u32.to_le_bytes());
        assert_eq!(
            decode_wav(&bytes),
            Err(AudioError::InvalidSampleRate(800_000))
        );
    }

    #[test]
    fn too_long_audio_is_refused() {
        // 30 minutes and a bit at 8 kHz: a streamed push trips the bound.
        let mut sink = Downsampler::new(8000).unwrap();
        let second = vec![0.0f32; 8000];
        for _ in 0..MAX_SECONDS {
            sink.push(&second).unwrap();
        }
        assert_eq!(sink.push(&[0.0]), Err(AudioError::TooLong));
    }

    #[test]
    fn chunked_resampling_matches_one_shot() {
        // Pushing in odd-sized pieces gives the same samples as one push.
        let step = std::f64::consts::TAU * 700.0 / 44100.0;
        let input: Vec<f32> = (0..10_000)
            .map(|i| (0.4 * (step * f64::from(i)).sin()) as f32)
            .collect();
        let mut whole = Downsampler::new(44100).unwrap();
        whole.push(&input).unwrap();
        let whole = whole.finish().unwrap();
        let mut pieces = Downsampler::new(44100).unwrap();
        for piece in input.chunks(333) {
            pieces.push(piece).unwrap();
        }
        assert_eq!(pieces.finish().unwrap(), whole);
        assert_eq!(whole.len(), (10_000usize * 8000).div_ceil(44100));
    }

    #[test]
    fn hints_are_extensions_or_mime_types() {
        // A wrong hint does not stop the probe.
        let bytes = wav(spec(1, 8000, 16, false), |w| {
            for s in 0..80i16 {
                w.write_sample(s * 100).unwrap();
            }
        });
        for hint in [
            None,
            Some("wav"),
            Some(".WAV"),
            Some("audio/wav; codecs=1"),
            Some("mp3"),
            Some(""),
        ] {
            assert_eq!(decode(&bytes, hint).unwrap().len(), 80, "{hint:?}");
        }
    }

    #[test]
    fn empty_wav_is_silence() {
        let bytes = wav(spec(1, 8000, 16, false), |_| {});
        assert_eq!(decode_wav(&bytes), Ok(Vec::new()));
    }
}

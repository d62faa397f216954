//! Call recording: a WAV writer fed by the media worker with each tick's received and sent
//! 20 ms frames, and the limits that end a recording on their own (maximum duration, a run of
//! silence from the caller).
//!
//! The call task creates the [`Recorder`] (opening the file off the media thread), hands it to
//! the worker, and gets it back in an [`crate::media_engine::EngineEvent::RecordingDone`] when
//! it stops — by the flow, a limit, a write error or the end of the call — to finalise the file
//! and the record, again off the media thread.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Samples per second of everything we record.
const SAMPLE_RATE: u32 = 8000;
/// A received frame whose mean absolute amplitude is below this counts as silence (about
/// -50 dBFS: line noise, comfort noise, a muted phone).
const SILENCE_MEAN_ABS: u32 = 100;

/// How a recording is laid out and when it ends by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordingSpec {
    /// Where the WAV goes.
    pub(crate) path: PathBuf,
    /// 1: what was received and sent, mixed; 2: received on the left, sent on the right.
    pub(crate) channels: u16,
    /// End after this long, if set.
    pub(crate) max_duration: Option<Duration>,
    /// End after this much uninterrupted silence from the peer, if set.
    pub(crate) end_of_silence: Option<Duration>,
}

/// Why a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordingEnd {
    /// `recording_stop`, or a new recording replaced it.
    Stopped,
    /// The caller pressed the recording's `end_of_key`.
    Key,
    /// The maximum duration was reached.
    Duration,
    /// The peer was silent for `end_of_silence`.
    Silence,
    /// The call's media went away (hangup).
    Hangup,
    /// Writing failed (disk full, ...).
    Error(String),
}

impl RecordingEnd {
    /// The record's `end_reason`.
    pub(crate) fn as_reason(&self) -> String {
        match self {
            RecordingEnd::Stopped => "stop".to_owned(),
            RecordingEnd::Key => "key".to_owned(),
            RecordingEnd::Duration => "duration".to_owned(),
            RecordingEnd::Silence => "silence".to_owned(),
            RecordingEnd::Hangup => "hangup".to_owned(),
            RecordingEnd::Error(e) => format!("error: {e}"),
        }
    }
}

/// An open recording.
pub(crate) struct Recorder {
    /// The call's id for this recording (echoed back with it).
    pub(crate) id: uuid::Uuid,
    writer: hound::WavWriter<BufWriter<File>>,
    channels: u16,
    /// Frames (per channel) written.
    samples: u64,
    max_samples: Option<u64>,
    silence_limit: Option<u64>,
    silent_samples: u64,
    failed: Option<String>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("id", &self.id)
            .field("channels", &self.channels)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates the file (and its directory). Blocking: call it off the media thread.
    pub(crate) fn create(id: uuid::Uuid, spec: &RecordingSpec) -> std::io::Result<Recorder> {
        if let Some(dir) = spec.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let channels = spec.channels.clamp(1, 2);
        let wav_spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&spec.path, wav_spec).map_err(to_io)?;
        let samples_of = |d: Duration| d.as_millis() as u64 * u64::from(SAMPLE_RATE) / 1000;
        Ok(Recorder {
            id,
            writer,
            channels,
            samples: 0,
            max_samples: spec.max_duration.map(samples_of),
            silence_limit: spec.end_of_silence.map(samples_of),
            silent_samples: 0,
            failed: None,
        })
    }

    /// Appends one tick: `received` from the peer and `sent` to it (equal lengths expected; the
    /// shorter is padded with silence). Returns why the recording must end now, if it must.
    pub(crate) fn write(&mut self, received: &[i16], sent: &[i16]) -> Option<RecordingEnd> {
        if let Some(e) = &self.failed {
            return Some(RecordingEnd::Error(e.clone()));
        }
        let n = received.len().max(sent.len());
        let mut sum_abs: u32 = 0;
        for i in 0..n {
            let r = received.get(i).copied().unwrap_or(0);
            let s = sent.get(i).copied().unwrap_or(0);
            sum_abs = sum_abs.saturating_add(u32::from(r.unsigned_abs()));
            let result = if self.channels == 2 {
                self.writer
                    .write_sample(r)
                    .and_then(|()| self.writer.write_sample(s))
            } else {
                self.writer.write_sample(r.saturating_add(s))
            };
            if let Err(e) = result {
                let e = e.to_string();
                self.failed = Some(e.clone());
                return Some(RecordingEnd::Error(e));
            }
        }
        let n = n as u64;
        self.samples += n;
        if n > 0 && u64::from(sum_abs) / n < u64::from(SILENCE_MEAN_ABS) {
            self.silent_samples += n;
        } else {
            self.silent_samples = 0;
        }
        if self.max_samples.is_some_and(|max| self.samples >= max) {
            return Some(RecordingEnd::Duration);
        }
        if self
            .silence_limit
            .is_some_and(|max| self.silent_samples >= max)
        {
            return Some(RecordingEnd::Silence);
        }
        None
    }

    /// Length so far.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_millis(self.samples * 1000 / u64::from(SAMPLE_RATE))
    }

    /// Writes the header and closes the file; returns the recorded length. Blocking.
    pub(crate) fn finish(self) -> std::io::Result<Duration> {
        let duration = self.duration();
        self.writer.finalize().map_err(to_io)?;
        Ok(duration)
    }
}

/// Where recording `id` lives under the data directory (as WAV while it runs).
pub(crate) fn path_for(data_dir: &Path, id: uuid::Uuid) -> PathBuf {
    data_dir.join("recordings").join(format!("{id}.wav"))
}

/// How long an encoder may take over one recording before it is killed.
const ENCODE_TIMEOUT: Duration = Duration::from_secs(120);

/// A compressed format a finished WAV recording is turned into, by a program run as a
/// subprocess (no MP3 or Vorbis encoder crate was kept; see docs/recordings.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `lame`: MP3 (MPEG-2.5 layer III at 8 kHz), VBR quality 4.
    Mp3,
    /// `oggenc` (vorbis-tools): OGG/Vorbis, quality 4.
    Ogg,
}

impl Encoding {
    /// The encoding a recording's `format` needs after the WAV is written; `None` for `wav`.
    pub(crate) fn for_format(format: &str) -> Option<Encoding> {
        match format {
            "mp3" => Some(Encoding::Mp3),
            "ogg" => Some(Encoding::Ogg),
            _ => None,
        }
    }

    /// The program that encodes it.
    pub(crate) fn program(self) -> &'static str {
        match self {
            Encoding::Mp3 => "lame",
            Encoding::Ogg => "oggenc",
        }
    }

    /// The format's name, file extension and the recording record's `format`.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Encoding::Mp3 => "mp3",
            Encoding::Ogg => "ogg",
        }
    }
}

/// Encodes the finished WAV at `wav` next to it (same name, the format's extension); returns the
/// new path. The WAV stays: the caller removes it once the record points at the new file, so a
/// record never names a file that is gone. On any failure no encoded file is left and the
/// error says why (program missing, exit status and its message, timeout).
pub(crate) async fn encode(wav: &Path, encoding: Encoding) -> Result<PathBuf, String> {
    let out = wav.with_extension(encoding.extension());
    let mut command = tokio::process::Command::new(encoding.program());
    match encoding {
        Encoding::Mp3 => command.args(["--quiet", "-V", "4"]).arg(wav).arg(&out),
        Encoding::Ogg => command
            .args(["--quiet", "-q", "4", "-o"])
            .arg(&out)
            .arg(wav),
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{} is not installed (needed for {} recordings)",
            encoding.program(),
            encoding.extension()
        ),
        _ => format!("cannot run {}: {e}", encoding.program()),
    })?;
    let result = tokio::time::timeout(ENCODE_TIMEOUT, child.wait_with_output()).await;
    let failure = match result {
        Ok(Ok(output)) if output.status.success() => None,
        Ok(Ok(output)) => {
            let message = String::from_utf8_lossy(&output.stderr);
            let message = message.trim();
            Some(format!(
                "{} failed ({}){}{}",
                encoding.program(),
                output.status,
                if message.is_empty() { "" } else { ": " },
                message.chars().take(300).collect::<String>()
            ))
        }
        Ok(Err(e)) => Some(format!("{} failed: {e}", encoding.program())),
        Err(_) => Some(format!(
            "{} took longer than {} s",
            encoding.program(),
            ENCODE_TIMEOUT.as_secs()
        )),
    };
    if let Some(failure) = failure {
        let _ = tokio::fs::remove_file(&out).await;
        return Err(failure);
    }
    Ok(out)
}

fn to_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, channels: u16) -> RecordingSpec {
        RecordingSpec {
            path: dir.join("sub").join("r.wav"),
            channels,
            max_duration: None,
            end_of_silence: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "voxflow-rec-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn two_channels_keep_each_side() {
        let dir = temp_dir("stereo");
        let spec = spec(&dir, 2);
        let mut rec = Recorder::create(uuid::Uuid::new_v4(), &spec).unwrap();
        let rx = [1000i16; 160];
        let tx = [-2000i16; 160];
        for _ in 0..50 {
            assert_eq!(rec.write(&rx, &tx), None);
        }
        assert_eq!(rec.finish().unwrap(), Duration::from_secs(1));
        let mut reader = hound::WavReader::open(&spec.path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 8000);
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 8000 * 2);
        assert!(samples.chunks(2).all(|c| c == [1000, -2000]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mono_mixes_both_directions_with_saturation() {
        let dir = temp_dir("mono");
        let spec = spec(&dir, 1);
        let mut rec = Recorder::create(uuid::Uuid::new_v4(), &spec).unwrap();
        assert_eq!(rec.write(&[30000; 160], &[10000; 160]), None);
        assert_eq!(rec.write(&[100; 160], &[-50; 160]), None);
        rec.finish().unwrap();
        let samples: Vec<i16> = hound::WavReader::open(&spec.path)
            .unwrap()
            .samples::<i16>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(samples.len(), 320);
        assert!(samples[..160].iter().all(|s| *s == i16::MAX));
        assert!(samples[160..].iter().all(|s| *s == 50));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn limits_end_the_recording() {
        let dir = temp_dir("limits");
        let mut s = spec(&dir, 1);
        s.max_duration = Some(Duration::from_millis(100));
        let mut rec = Recorder::create(uuid::Uuid::new_v4(), &s).unwrap();
        let loud = [3000i16; 160];
        let results: Vec<_> = (0..5).map(|_| rec.write(&loud, &[0; 160])).collect();
        assert_eq!(results[..4], [None, None, None, None]);
        assert_eq!(results[4], Some(RecordingEnd::Duration));
        rec.finish().unwrap();

        s.max_duration = None;
        s.end_of_silence = Some(Duration::from_millis(60));
        let mut rec = Recorder::create(uuid::Uuid::new_v4(), &s).unwrap();
        assert_eq!(rec.write(&[0; 160], &[]), None);
        assert_eq!(rec.write(&[0; 160], &[]), None);
        // Speech resets the run of silence.
        assert_eq!(rec.write(&loud, &[]), None);
        assert_eq!(rec.write(&[0; 160], &[]), None);
        assert_eq!(rec.write(&[20; 160], &[]), None);
        // Our own prompt is not the peer speaking.
        assert_eq!(
            rec.write(&[0; 160], &[5000; 160]),
            Some(RecordingEnd::Silence)
        );
        assert_eq!(rec.finish().unwrap(), Duration::from_millis(120));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Power of `freq` Hz in 8 kHz `samples` (Goertzel), for telling tones apart.
    fn power_at(samples: &[i16], freq: f64) -> f64 {
        let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / 8000.0).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    }

    /// Whether `program` can run here; in CI (the test command installs it) it must.
    fn have(program: &str) -> bool {
        let found = std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok();
        assert!(
            found || std::env::var_os("CI").is_none(),
            "{program} is missing; scripts/install-test-deps installs it"
        );
        if !found {
            eprintln!("skipped: {program} is not installed");
        }
        found
    }

    /// A mono recording of a 2 s, 440 Hz tone, encoded by the real program and decoded again by
    /// our own decoder (symphonia): the tone and its length survive.
    async fn encodes_and_decodes_back(encoding: Encoding) {
        if !have(encoding.program()) {
            return;
        }
        let dir = temp_dir(encoding.extension());
        let spec = spec(&dir, 1);
        let mut rec = Recorder::create(uuid::Uuid::new_v4(), &spec).unwrap();
        let tone: Vec<i16> = (0..16_000)
            .map(|n| {
                let t = f64::from(n) / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        for frame in tone.chunks(160) {
            assert_eq!(rec.write(frame, &[0; 160]), None);
        }
        rec.finish().unwrap();
        let out = encode(&spec.path, encoding).await.unwrap();
        assert_eq!(out, spec.path.with_extension(encoding.extension()));
        assert!(
            spec.path.exists(),
            "the WAV stays until the record points elsewhere"
        );
        let bytes = std::fs::read(&out).unwrap();
        let pcm = media::audio::decode(&bytes, Some(encoding.extension())).unwrap();
        let secs = pcm.len() as f64 / 8000.0;
        assert!((1.9..2.3).contains(&secs), "{secs} s decoded");
        let middle = &pcm[2000..14_000];
        assert!(
            power_at(middle, 440.0) > 100.0 * power_at(middle, 1000.0),
            "the 440 Hz tone survives encoding"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn mp3_recordings_are_encoded_by_lame() {
        encodes_and_decodes_back(Encoding::Mp3).await;
    }

    #[tokio::test]
    async fn ogg_recordings_are_encoded_by_oggenc() {
        encodes_and_decodes_back(Encoding::Ogg).await;
    }

    #[tokio::test]
    async fn a_failed_encoding_keeps_the_wav() {
        let dir = temp_dir("broken");
        // oggenc refuses a file that is not audio; lame reads anything as raw PCM, so it is
        // given a file that is not there.
        let broken = dir.join("broken.wav");
        std::fs::write(&broken, b"not a wav file").unwrap();
        for (encoding, wav) in [
            (Encoding::Ogg, broken.clone()),
            (Encoding::Mp3, dir.join("missing.wav")),
        ] {
            if !have(encoding.program()) {
                continue;
            }
            let error = encode(&wav, encoding).await.unwrap_err();
            assert!(error.contains(encoding.program()), "{error}");
            assert!(!wav.with_extension(encoding.extension()).exists());
        }
        assert!(broken.exists(), "the WAV is kept");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

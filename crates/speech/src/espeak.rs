//! The espeak-ng engine: a child process per synthesis, its WAV resampled to 8 kHz, cached.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cache::{CacheKey, TtsCache};
use crate::{TtsEngine, TtsError, TtsRequest};

/// Text to speech with the `espeak-ng` program (run as a separate process, never linked).
///
/// Runs `espeak-ng -v <voice> --stdout` (plus `-m` for SSML) with the text on stdin, so that a
/// text starting with `-` is never taken for an option. The voice comes from the request's
/// BCP-47 language (`en-US` → `en-us`, `de-DE` → `de`, ...; `en-us` by default) and gender
/// (`female` → variant `+f3`, `male` → `+m3`).
#[derive(Debug, Clone)]
pub struct Espeak {
    program: PathBuf,
    timeout: Duration,
    cache: TtsCache,
}

impl Espeak {
    /// An engine running `espeak-ng` from `PATH`, caching under `<cache_dir>/tts/`, with a
    /// 20 s timeout.
    #[must_use]
    pub fn new(cache_dir: PathBuf) -> Self {
        Espeak {
            program: PathBuf::from("espeak-ng"),
            timeout: DEFAULT_TIMEOUT,
            cache: TtsCache::new(&cache_dir),
        }
    }

    /// Runs `program` instead of `espeak-ng` from `PATH`.
    #[must_use]
    pub fn with_program(mut self, program: PathBuf) -> Self {
        self.program = program;
        self
    }

    /// Kills the program and fails with [`TtsError::Timeout`] after `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl TtsEngine for Espeak {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    fn synthesize(&self, req: &TtsRequest) -> Result<Arc<[i16]>, TtsError> {
        if req.text.len() > MAX_TEXT_BYTES {
            return Err(TtsError::TextTooLong {
                len: req.text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        if req.text.trim().is_empty() {
            // espeak-ng prints nothing at all (not even a WAV header) for empty input.
            return Ok(Arc::from(Vec::new()));
        }
        let voice = voice(req.language.as_deref(), req.gender.as_deref());
        let key = CacheKey {
            engine: self.name(),
            voice: &voice,
            language: req.language.as_deref(),
            gender: req.gender.as_deref(),
            text: &req.text,
        };
        if let Some(pcm) = self.cache.get(&key) {
            tracing::debug!(voice, samples = pcm.len(), "tts cache hit");
            return Ok(pcm);
        }

        let started = Instant::now();
        let wav = self.run(&voice, &req.text)?;
        let pcm: Arc<[i16]> = media::audio::decode_wav(&wav)?.into();
        tracing::debug!(
            voice,
            samples = pcm.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tts synthesized"
        );
        if let Err(error) = self.cache.put(&key, &pcm) {
            tracing::warn!(%error, "could not write the tts cache");
        }
        Ok(pcm)
    }
}

impl Espeak {
    /// Runs the program on `text` and returns what it printed on stdout.
    fn run(&self, voice: &str, text: &str) -> Result<Vec<u8>, TtsError> {
        let io_error = |source| TtsError::Io {
            program: self.program.clone(),
            source,
        };
        let mut command = Command::new(&self.program);
        command.args(["-v", voice, "--stdout"]);
        if is_ssml(text) {
            command.arg("-m");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => TtsError::ProgramNotFound {
                    program: self.program.clone(),
                },
                _ => io_error(e),
            })?;
        let deadline = Instant::now() + self.timeout;

        // Feed stdin and drain stdout/stderr on their own threads so that no pipe fills up and
        // blocks the child; this thread only waits, with the deadline.
        if let Some(mut stdin) = child.stdin.take() {
            let text = text.to_owned();
            thread::spawn(move || {
                // A child that exits without reading its input gives EPIPE: its exit status
                // tells the story.
                let _ = stdin.write_all(text.as_bytes());
            });
        }
        let stderr = child.stderr.take().map(|pipe| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(read_capped(pipe, MAX_STDERR_BYTES));
            });
            rx
        });
        let (stdout_tx, stdout_rx) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            thread::spawn(move || {
                let _ = stdout_tx.send(read_capped(pipe, MAX_OUTPUT_BYTES));
            });
        }

        // stdout closes when the program exits (normally): wait for that first, then for the
        // exit status, both within the deadline.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let output = match stdout_rx.recv_timeout(remaining) {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                kill(&mut child);
                return Err(io_error(e));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill(&mut child);
                return Err(TtsError::Timeout(self.timeout));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Vec::new(),
        };
        let status = wait_until(&mut child, deadline)
            .map_err(io_error)?
            .ok_or(TtsError::Timeout(self.timeout))?;

        if !status.success() {
            let stderr = stderr
                .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(TtsError::Failed {
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(output)
    }
}

/// The espeak-ng voice for a BCP-47 language and a gender: `en-us`, `de+f3`, ...
pub(crate) fn voice(language: Option<&str>, gender: Option<&str>) -> String {
    let mut voice = language
        .map(|l| l.trim().to_ascii_lowercase().replace('_', "-"))
        .and_then(|tag| espeak_language(&tag))
        .unwrap_or(DEFAULT_VOICE)
        .to_owned();
    match gender.map(|g| g.trim().to_ascii_lowercase()).as_deref() {
        Some("female") => voice.push_str("+f3"),
        Some("male") => voice.push_str("+m3"),
        _ => {}
    }
    voice
}

/// Whether `text` is SSML (espeak-ng's `-m`).
fn is_ssml(text: &str) -> bool {
    text.trim_start().starts_with("<speak")
}

/// Maps a lower-case BCP-47 tag to an installed espeak-ng voice: the tag itself if it is a
/// voice, a regional alias, else the tag without its last subtag, and so on.
fn espeak_language(tag: &str) -> Option<&'static str> {
    let mut candidate = tag;
    loop {
        if let Some((_, voice)) = ALIASES.iter().find(|(alias, _)| *alias == candidate) {
            return Some(voice);
        }
        if let Some(voice) = VOICES.iter().find(|v| **v == candidate) {
            return Some(voice);
        }
        candidate = candidate.rsplit_once('-')?.0;
    }
}

/// Languages of the espeak-ng 1.51 voice list (`espeak-ng --voices`) that a BCP-47 tag can name
/// directly.
const VOICES: &[&str] = &[
    "af",
    "am",
    "an",
    "ar",
    "as",
    "az",
    "ba",
    "be",
    "bg",
    "bn",
    "bs",
    "ca",
    "cmn",
    "cs",
    "cv",
    "cy",
    "da",
    "de",
    "el",
    "en-029",
    "en-gb",
    "en-gb-scotland",
    "en-us",
    "eo",
    "es",
    "es-419",
    "et",
    "eu",
    "fa",
    "fi",
    "fr-be",
    "fr-ch",
    "fr-fr",
    "ga",
    "gd",
    "gn",
    "gu",
    "he",
    "hi",
    "hr",
    "ht",
    "hu",
    "hy",
    "ia",
    "id",
    "is",
    "it",
    "ja",
    "ka",
    "kk",
    "kl",
    "kn",
    "ko",
    "kok",
    "ku",
    "ky",
    "la",
    "lb",
    "lt",
    "lv",
    "mi",
    "mk",
    "ml",
    "mr",
    "ms",
    "mt",
    "my",
    "nb",
    "ne",
    "nl",
    "om",
    "or",
    "pa",
    "pl",
    "pt",
    "pt-br",
    "qu",
    "ro",
    "ru",
    "sd",
    "si",
    "sk",
    "sl",
    "sq",
    "sr",
    "sv",
    "sw",
    "ta",
    "te",
    "th",
    "tk",
    "tn",
    "tr",
    "tt",
    "ug",
    "uk",
    "ur",
    "uz",
    "vi",
    "yue",
];

/// BCP-47 tags whose nearest espeak-ng voice is not found by dropping subtags.
const ALIASES: &[(&str, &str)] = &[
    ("en", "en-us"),
    ("en-au", "en-gb"),
    ("en-nz", "en-gb"),
    ("en-ie", "en-gb"),
    ("en-za", "en-gb"),
    ("en-in", "en-gb"),
    ("en-scotland", "en-gb-scotland"),
    ("fr", "fr-fr"),
    ("fr-ca", "fr-fr"),
    ("es-mx", "es-419"),
    ("es-ar", "es-419"),
    ("es-co", "es-419"),
    ("es-cl", "es-419"),
    ("es-us", "es-419"),
    ("pt-pt", "pt"),
    ("zh", "cmn"),
    ("zh-cn", "cmn"),
    ("zh-hans", "cmn"),
    ("zh-tw", "cmn"),
    ("zh-hk", "yue"),
    ("no", "nb"),
    ("nn", "nb"),
    ("fil", "id"),
];

const DEFAULT_VOICE: &str = "en-us";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// About ten pages of text; a prompt is a sentence or two.
const MAX_TEXT_BYTES: usize = 20_000;
/// A WAV of more than ten minutes at 22.05 kHz is not a prompt.
const MAX_OUTPUT_BYTES: u64 = 32 << 20;
const MAX_STDERR_BYTES: u64 = 4096;

/// Reads a pipe to its end, keeping at most `max` bytes (the rest is drained and dropped, so the
/// writer never blocks).
fn read_capped(mut pipe: impl Read, max: u64) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    pipe.by_ref().take(max).read_to_end(&mut kept)?;
    io::copy(&mut pipe, &mut io::sink())?;
    Ok(kept)
}

/// Waits for the child to exit until `deadline`; kills it and returns `None` past it.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            kill(child);
            return Ok(None);
        }
        // Only reached when a program closed its stdout before exiting: rare and short.
        thread::sleep(Duration::from_millis(5));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_from_bcp47() {
        let cases = [
            (None, None, "en-us"),
            (Some("en-US"), None, "en-us"),
            (Some("en-GB"), Some("female"), "en-gb+f3"),
            (Some("en"), Some("MALE"), "en-us+m3"),
            (Some("en-AU"), None, "en-gb"),
            (Some("de-DE"), None, "de"),
            (Some("de_AT"), None, "de"),
            (Some("fr-FR"), None, "fr-fr"),
            (Some("fr-CA"), None, "fr-fr"),
            (Some("fr"), None, "fr-fr"),
            (Some("es-ES"), Some("other"), "es"),
            (Some("es-MX"), None, "es-419"),
            (Some("pt-BR"), None, "pt-br"),
            (Some("pt-PT"), None, "pt"),
            (Some("it-IT"), None, "it"),
            (Some("nl-NL"), None, "nl"),
            (Some("ja-JP"), None, "ja"),
            (Some("zh-CN"), None, "cmn"),
            (Some("zh-Hans-CN"), None, "cmn"),
            (Some("xx-YY"), None, "en-us"),
            (Some(""), None, "en-us"),
            (Some("--v --stdout"), None, "en-us"),
        ];
        for (language, gender, expected) in cases {
            assert_eq!(voice(language, gender), expected, "{language:?} {gender:?}");
        }
    }

    #[test]
    fn ssml_detection() {
        assert!(is_ssml("<speak>hi</speak>"));
        assert!(is_ssml("  \n<speak version=\"1.0\">hi</speak>"));
        assert!(!is_ssml("speak <speak>"));
        assert!(!is_ssml("-v hello"));
    }
}

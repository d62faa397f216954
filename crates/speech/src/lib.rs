//! voxflow speech: text-to-speech engines behind one trait, with an on-disk audio cache.
//!
//! # What this crate owns
//!
//! - [`TtsEngine`]: text in, 8 kHz mono PCM out (ready for `media::MediaSession::play`).
//! - [`Espeak`]: the default local engine. It runs the `espeak-ng` program as a separate
//!   process (GPL: never linked), with the text on stdin, a timeout, and typed errors; maps
//!   BCP-47 languages and a gender to an espeak-ng voice; resamples its 22.05 kHz WAV to 8 kHz;
//!   and caches the result on disk under `<cache_dir>/tts/`, so that a repeated prompt costs
//!   one file read.
//!
//! It does not own playback, prompt fetching over HTTP or speech recognition (later, behind a
//! trait of its own).
//!
//! # How to drive it
//!
//! Calls are blocking std code (a child process and file IO): the async runtime calls
//! [`TtsEngine::synthesize`] from a blocking task.
//!
//! ```no_run
//! # use voxflow_speech as speech;
//! use speech::{Espeak, TtsEngine, TtsRequest};
//! let engine = Espeak::new("/var/lib/voxflow/cache".into());
//! let pcm = engine.synthesize(&TtsRequest {
//!     text: "Press one for sales.".into(),
//!     language: Some("en-GB".into()),
//!     gender: Some("female".into()),
//! })?;
//! // session.play(id, pcm);
//! # Ok::<(), speech::TtsError>(())
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod cache;
mod espeak;

pub use espeak::Espeak;

/// What to say, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TtsRequest {
    /// The text, or SSML when it starts with `<speak`.
    pub text: String,
    /// BCP-47 language tag (`en-US`, `de-DE`, ...); the engine's default when `None`.
    pub language: Option<String>,
    /// `female` or `male`; the engine's default voice otherwise.
    pub gender: Option<String>,
}

/// A text-to-speech engine. Implementations are blocking and thread-safe.
pub trait TtsEngine: Send + Sync {
    /// A stable name, part of the cache key (e.g. `espeak-ng`).
    fn name(&self) -> &'static str;

    /// Synthesises `req` to 8 kHz mono PCM.
    fn synthesize(&self, req: &TtsRequest) -> Result<Arc<[i16]>, TtsError>;
}

/// Why synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The engine's program is not installed (or not at the configured path).
    #[error("TTS program {program:?} not found")]
    ProgramNotFound {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// The program could not be run or talked to.
    #[error("running TTS program {program:?}: {source}")]
    Io {
        /// The program that was run.
        program: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("TTS program exited with {status}: {stderr}")]
    Failed {
        /// Its exit status, as text (`exit status: 1`, `signal: 9`).
        status: String,
        /// The start of what it wrote on stderr.
        stderr: String,
    },
    /// The program ran longer than the engine's timeout and was killed.
    #[error("TTS program timed out after {0:?}")]
    Timeout(Duration),
    /// The program's output is not audio we can decode.
    #[error("TTS program produced unusable audio: {0}")]
    BadAudio(#[from] media::audio::AudioError),
    /// The text is longer than the engine accepts.
    #[error("text of {len} bytes is longer than {max}")]
    TextTooLong {
        /// Length of the text in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

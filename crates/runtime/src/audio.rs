//! Turning what a flow asks to play into 8 kHz PCM: speech from the TTS engine (cached on disk
//! by the engine), WAV files from local paths or http(s) URLs, and tones.

use std::sync::Arc;
use std::time::Duration;

use crate::Shared;

/// Largest audio file we download or read.
const MAX_AUDIO_BYTES: u64 = 50 * 1024 * 1024;
/// Bound on one download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// What to prepare.
#[derive(Debug)]
pub(crate) enum Source {
    /// Text to speech.
    Speech(speech::TtsRequest),
    /// WAV files, played one after the other.
    Urls(Vec<String>),
    /// The beep tone.
    Beep,
}

/// Prepare audio; errors are sentences for logs and the flow's `MediaFailed`.
pub(crate) async fn load(shared: &Shared, source: Source) -> Result<Arc<[i16]>, String> {
    match source {
        Source::Beep => Ok(media::tone::beep()),
        Source::Speech(request) => {
            let tts = shared.tts.clone();
            tokio::task::spawn_blocking(move || tts.synthesize(&request))
                .await
                .map_err(|e| format!("speech task failed: {e}"))?
                .map_err(|e| format!("text to speech failed: {e}"))
        }
        Source::Urls(urls) => {
            let mut all: Vec<i16> = Vec::new();
            for url in urls {
                let bytes = fetch(shared, &url).await?;
                let pcm = tokio::task::spawn_blocking(move || media::audio::decode_wav(&bytes))
                    .await
                    .map_err(|e| format!("decode task failed: {e}"))?
                    .map_err(|e| format!("{url}: {e}"))?;
                all.extend_from_slice(&pcm);
            }
            Ok(all.into())
        }
    }
}

async fn fetch(shared: &Shared, url: &str) -> Result<Vec<u8>, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let response = shared
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_AUDIO_BYTES)
        {
            return Err(format!("{url}: larger than {MAX_AUDIO_BYTES} bytes"));
        }
        let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if body.len() as u64 > MAX_AUDIO_BYTES {
            return Err(format!("{url}: larger than {MAX_AUDIO_BYTES} bytes"));
        }
        return Ok(body.to_vec());
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if !path.starts_with('/') {
        return Err(format!(
            "{url}: not an http(s) URL, file:// URL or absolute path"
        ));
    }
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if meta.len() > MAX_AUDIO_BYTES {
        return Err(format!("{url}: larger than {MAX_AUDIO_BYTES} bytes"));
    }
    tokio::fs::read(path)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

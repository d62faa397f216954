//! Turning what a flow asks to play into 8 kHz PCM: speech from the TTS engine (cached on disk
//! by the engine), WAV/MP3/OGG files from local paths or http(s) URLs (through the
//! [`AudioCache`](crate::audio_cache::AudioCache): downloads on disk, decoded audio in memory),
//! and tones.

use std::sync::Arc;

use crate::Shared;

/// What to prepare.
#[derive(Debug)]
pub(crate) enum Source {
    /// Text to speech.
    Speech(speech::TtsRequest),
    /// Audio files (WAV, MP3, OGG/Vorbis) by URL or absolute path, played one after the other.
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
            let mut parts = Vec::with_capacity(urls.len());
            for url in &urls {
                let pcm = shared
                    .audio_cache
                    .load(&shared.http, url)
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                parts.push(pcm);
            }
            Ok(concat(parts))
        }
    }
}

/// One prompt after the other; a single prompt is shared as it is (no copy).
fn concat(mut parts: Vec<Arc<[i16]>>) -> Arc<[i16]> {
    if parts.len() == 1
        && let Some(only) = parts.pop()
    {
        return only;
    }
    let mut all = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in &parts {
        all.extend_from_slice(part);
    }
    all.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prompt_is_shared_and_several_are_played_in_order() {
        let a: Arc<[i16]> = vec![1, 2].into();
        let b: Arc<[i16]> = vec![3].into();
        assert!(Arc::ptr_eq(&concat(vec![a.clone()]), &a));
        assert_eq!(*concat(vec![a.clone(), b, a]), [1, 2, 3, 1, 2]);
        assert!(concat(Vec::new()).is_empty());
    }
}

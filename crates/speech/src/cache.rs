//! The on-disk TTS cache: one raw s16le 8 kHz mono file per (engine, voice, language, gender,
//! text), named by the SHA-256 of that tuple, written atomically (temp file then rename).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// What identifies one synthesised prompt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheKey<'a> {
    pub(crate) engine: &'a str,
    pub(crate) voice: &'a str,
    pub(crate) language: Option<&'a str>,
    pub(crate) gender: Option<&'a str>,
    pub(crate) text: &'a str,
}

/// A directory of cached prompts.
#[derive(Debug, Clone)]
pub(crate) struct TtsCache {
    dir: PathBuf,
}

impl TtsCache {
    /// The cache under `<cache_dir>/tts/` (created on first write).
    pub(crate) fn new(cache_dir: &Path) -> Self {
        TtsCache {
            dir: cache_dir.join("tts"),
        }
    }

    /// The cached audio for `key`, if present and intact.
    pub(crate) fn get(&self, key: &CacheKey<'_>) -> Option<Arc<[i16]>> {
        let bytes = fs::read(self.path(key)).ok()?;
        if bytes.len() % 2 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        )
    }

    /// Stores `pcm` for `key`: written to a unique temp file, then renamed into place, so that
    /// readers never see a partial file and concurrent writers do not collide.
    pub(crate) fn put(&self, key: &CacheKey<'_>, pcm: &[i16]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path(key);
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_extension(format!("{}-{unique}.tmp", std::process::id()));
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let written = fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn path(&self, key: &CacheKey<'_>) -> PathBuf {
        self.dir.join(format!("{}.s16", key.digest()))
    }
}

impl CacheKey<'_> {
    /// Hex SHA-256 of the length-prefixed fields (so that no two tuples share an encoding).
    pub(crate) fn digest(&self) -> String {
        let mut hash = Sha256::new();
        let mut field = |value: Option<&str>| match value {
            None => hash.update([0u8]),
            Some(v) => {
                hash.update([1u8]);
                hash.update((v.len() as u64).to_le_bytes());
                hash.update(v.as_bytes());
            }
        };
        field(Some(self.engine));
        field(Some(self.voice));
        field(self.language);
        field(self.gender);
        field(Some(self.text));
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> CacheKey<'_> {
        CacheKey {
            engine: "e",
            voice: "v",
            language: Some("en-US"),
            gender: None,
            text,
        }
    }

    #[test]
    fn digest_separates_fields() {
        let a = key("hello").digest();
        assert_eq!(a.len(), 64);
        assert_eq!(a, key("hello").digest());
        assert_ne!(a, key("hello ").digest());
        let shifted = CacheKey {
            voice: "vh",
            text: "ello",
            ..key("")
        };
        assert_ne!(a, shifted.digest());
        let no_language = CacheKey {
            language: None,
            ..key("hello")
        };
        assert_ne!(a, no_language.digest());
    }

    #[test]
    fn put_then_get_round_trips_and_ignores_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("voxflow-cache-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cache = TtsCache::new(&dir);
        assert_eq!(cache.get(&key("x")), None);
        cache.put(&key("x"), &[1, -2, i16::MAX, i16::MIN]).unwrap();
        assert_eq!(
            cache.get(&key("x")).unwrap()[..],
            [1, -2, i16::MAX, i16::MIN]
        );
        // Only the final file remains.
        let files: Vec<_> = fs::read_dir(dir.join("tts")).unwrap().collect();
        assert_eq!(files.len(), 1);
        fs::write(cache.path(&key("odd")), [1, 2, 3]).unwrap();
        assert_eq!(cache.get(&key("odd")), None);
        let _ = fs::remove_dir_all(&dir);
    }
}

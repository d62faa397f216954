//! Prompt audio for `play`: http(s) downloads kept on disk, decoded 8 kHz PCM kept in memory.
//!
//! - **Disk**: each URL is downloaded once into `<data_dir>/cache/audio/<hash>.<ext>` (`hash`:
//!   the first 128 bits of the URL's SHA-256, hex; `ext`: from the URL's path or the response's
//!   Content-Type, the decoder's hint). A download is written to a `.part` file and renamed when
//!   complete, so the directory only ever holds whole files; HTTP errors, oversize bodies and
//!   timeouts leave nothing behind. Files are bounded one by one ([`Limits::max_file_bytes`])
//!   and in total ([`Limits::max_total_bytes`], least recently used evicted first). Files found
//!   at start are reused (oldest modification first in line for eviction); `.part` leftovers of a
//!   crash are deleted.
//! - **Memory**: the decoded PCM of hot prompts, by URL (or by path, modification time and
//!   length for local files), bounded in samples, least recently used evicted first. A
//!   thousand calls playing one URL share one `Arc<[i16]>`.
//! - **In flight**: concurrent loads of one source share a single download and decode; a failure
//!   is returned to every waiter of that attempt and not remembered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::url_guard::{self, HttpClient};

/// Bounds of the cache and of each fetch.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest audio file downloaded or read.
    pub(crate) max_file_bytes: u64,
    /// Total size of the files kept on disk.
    pub(crate) max_total_bytes: u64,
    /// Total decoded samples kept in memory.
    pub(crate) max_pcm_samples: u64,
    /// Bound on one download, from the request to the last byte of the body.
    pub(crate) fetch_timeout: Duration,
    /// Directories local files (absolute paths, `file://`) must be in; `None`: anywhere (tests).
    pub(crate) local_roots: Option<Vec<PathBuf>>,
}

impl Default for Limits {
    /// 50 MiB per file, 512 MiB on disk, 64 MiB of PCM in memory (about 70 minutes of 8 kHz
    /// audio), 15 s per download.
    fn default() -> Limits {
        Limits {
            max_file_bytes: 50 * 1024 * 1024,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_pcm_samples: 32 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(15),
            local_roots: None,
        }
    }
}

/// Default total size of the on-disk cache (512 MiB).
pub(crate) const DEFAULT_MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// Why a prompt could not be loaded; every variant is a sentence for logs and `MediaFailed`.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoadError {
    /// Neither http(s), file:// nor an absolute path.
    #[error("not an http(s) URL, file:// URL or absolute path")]
    BadSource,
    /// The server answered with a non-2xx status.
    #[error("HTTP {0}")]
    Status(u16),
    /// Over [`Limits::max_file_bytes`].
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// The download did not complete within [`Limits::fetch_timeout`].
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The request failed (connection, TLS, protocol).
    #[error("{0}")]
    Http(String),
    /// The outbound URL guard refused the URL, its address or a redirect.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// The bytes are not audio we decode.
    #[error(transparent)]
    Decode(#[from] media::audio::AudioError),
    /// The decoding task died.
    #[error("decode task failed: {0}")]
    Task(String),
}

/// The cache; shared by every call (all methods take `&self`).
pub(crate) struct AudioCache {
    dir: PathBuf,
    limits: Limits,
    /// Files on disk by URL hash; weight = bytes.
    disk: Mutex<Lru<String>>,
    /// Decoded audio by source key; weight = samples.
    pcm: Mutex<Lru<Arc<[i16]>>>,
    inflight: Mutex<HashMap<String, Arc<Loading>>>,
}

type Loading = OnceCell<Result<Arc<[i16]>, LoadError>>;

impl AudioCache {
    /// A cache in `dir` (created if missing), taking over the files already there.
    pub(crate) async fn open(dir: PathBuf, limits: Limits) -> AudioCache {
        let cache = AudioCache {
            disk: Mutex::new(Lru::new(limits.max_total_bytes)),
            pcm: Mutex::new(Lru::new(limits.max_pcm_samples)),
            inflight: Mutex::default(),
            dir,
            limits,
        };
        if let Err(e) = tokio::fs::create_dir_all(&cache.dir).await {
            tracing::warn!(dir = %cache.dir.display(), error = %e, "cannot create the audio cache directory");
            return cache;
        }
        let found = match scan(&cache.dir).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(dir = %cache.dir.display(), error = %e, "cannot read the audio cache directory");
                Vec::new()
            }
        };
        let count = found.len();
        let mut evicted = Vec::new();
        {
            let mut disk = lock(&cache.disk);
            for file in found {
                evicted.extend(disk.insert(file.hash, file.name, file.size));
            }
        }
        cache.delete(evicted, None).await;
        tracing::debug!(
            files = count,
            bytes = lock(&cache.disk).total,
            "audio cache opened"
        );
        cache
    }

    /// The 8 kHz mono PCM of an http(s) URL, a `file://` URL or an absolute path; downloads go
    /// through `http` (the runtime's client). A URL its policy refuses is refused even when
    /// cached (a download made while private targets were allowed).
    pub(crate) async fn load(
        &self,
        http: &HttpClient,
        source: &str,
    ) -> Result<Arc<[i16]>, LoadError> {
        let origin = Origin::parse(source, &self.limits).await?;
        if let Origin::Url { url, .. } = &origin {
            http.policy()
                .check(url)
                .map_err(|e| LoadError::Refused(e.to_string()))?;
        }
        let key = origin.key();
        if let Some(pcm) = self.cached_pcm(&origin, &key) {
            return Ok(pcm);
        }
        let cell = lock(&self.inflight).entry(key.clone()).or_default().clone();
        let _forget = Inflight {
            map: &self.inflight,
            key: &key,
            cell: &cell,
        };
        cell.get_or_init(|| self.load_uncached(http, &origin, &key))
            .await
            .clone()
    }

    /// Bytes of the on-disk cache, as accounted.
    #[cfg(test)]
    fn disk_bytes(&self) -> u64 {
        lock(&self.disk).total
    }

    /// How many loads of `source` (a URL) are waiting on one attempt.
    #[cfg(test)]
    fn waiting(&self, url: &str) -> usize {
        lock(&self.inflight)
            .get(&format!("url:{url}"))
            .map_or(0, |cell| Arc::strong_count(cell) - 1)
    }

    fn cached_pcm(&self, origin: &Origin, key: &str) -> Option<Arc<[i16]>> {
        let pcm = lock(&self.pcm).get(key).cloned()?;
        if let Origin::Url { hash, .. } = origin {
            // A hot prompt's file is recently used too.
            lock(&self.disk).get(hash);
        }
        Some(pcm)
    }

    async fn load_uncached(
        &self,
        http: &HttpClient,
        origin: &Origin,
        key: &str,
    ) -> Result<Arc<[i16]>, LoadError> {
        // A load that finished just before this one joined may have filled the cache.
        if let Some(pcm) = self.cached_pcm(origin, key) {
            return Ok(pcm);
        }
        let (bytes, hint) = match origin {
            Origin::Url { url, hash } => self.fetch(http, url, hash).await?,
            Origin::File { path, .. } => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| LoadError::Io(e.to_string()))?;
                if bytes.len() as u64 > self.limits.max_file_bytes {
                    return Err(LoadError::TooLarge(self.limits.max_file_bytes));
                }
                (bytes, extension(path).map(str::to_owned))
            }
        };
        let decoded =
            tokio::task::spawn_blocking(move || media::audio::decode(&bytes, hint.as_deref()))
                .await
                .map_err(|e| LoadError::Task(e.to_string()))?;
        let pcm: Arc<[i16]> = match decoded {
            Ok(pcm) => pcm.into(),
            Err(e) => {
                // What does not decode is not kept: the next play downloads it again.
                if let Origin::Url { hash, .. } = origin {
                    let gone = lock(&self.disk).remove(hash);
                    self.delete(gone.map(|name| (hash.clone(), name)), None)
                        .await;
                }
                return Err(e.into());
            }
        };
        // Too long for the memory cache: returned, not kept.
        lock(&self.pcm).insert(key.to_owned(), pcm.clone(), pcm.len() as u64);
        Ok(pcm)
    }

    /// The bytes of a URL and the decoder's hint (the file's extension): from disk when cached,
    /// else downloaded into the cache.
    async fn fetch(
        &self,
        http: &HttpClient,
        url: &str,
        hash: &str,
    ) -> Result<(Vec<u8>, Option<String>), LoadError> {
        let cached = lock(&self.disk).get(hash).cloned();
        if let Some(name) = cached {
            match tokio::fs::read(self.dir.join(&name)).await {
                Ok(bytes) => return Ok((bytes, extension(Path::new(&name)).map(str::to_owned))),
                // Deleted behind our back (or evicted just now): fetch it again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    lock(&self.disk).remove(hash);
                }
                Err(e) => return Err(LoadError::Io(e.to_string())),
            }
        }
        let timeout = self.limits.fetch_timeout;
        let (bytes, name) = tokio::time::timeout(timeout, self.download(http, url, hash))
            .await
            .map_err(|_| LoadError::Timeout(timeout))??;
        let evicted = lock(&self.disk).insert(hash.to_owned(), name.clone(), bytes.len() as u64);
        self.delete(evicted, Some(&name)).await;
        tracing::debug!(file = %name, bytes = bytes.len(), "audio downloaded");
        let hint = extension(Path::new(&name)).map(str::to_owned);
        Ok((bytes, hint))
    }

    /// Download into a `.part` file, then rename it into place; the body and the file's name.
    async fn download(
        &self,
        http: &HttpClient,
        url: &str,
        hash: &str,
    ) -> Result<(Vec<u8>, String), LoadError> {
        let max = self.limits.max_file_bytes;
        let mut response = http
            .request(reqwest::Method::GET, url)
            .map_err(|e| LoadError::Refused(e.to_string()))?
            .send()
            .await
            .map_err(request_error)?;
        if !response.status().is_success() {
            return Err(LoadError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|n| n > max) {
            return Err(LoadError::TooLarge(max));
        }
        let ext = url_extension(url)
            .or_else(|| content_type_extension(response.headers()))
            .unwrap_or("bin");
        let name = format!("{hash}.{ext}");
        let io = |e: std::io::Error| LoadError::Io(e.to_string());
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        let mut part = PartFile::create(
            self.dir
                .join(format!("{hash}.{}.part", uuid::Uuid::new_v4().simple())),
        )
        .await
        .map_err(io)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(LoadError::TooLarge(max));
            }
            part.file.write_all(&chunk).await.map_err(io)?;
            body.extend_from_slice(&chunk);
        }
        part.file.flush().await.map_err(io)?;
        part.file.sync_all().await.map_err(io)?;
        part.persist(&self.dir.join(&name)).await.map_err(io)?;
        Ok((body, name))
    }

    /// Remove evicted files (but never `keep`, the file just written under the same name).
    async fn delete(
        &self,
        evicted: impl IntoIterator<Item = (String, String)>,
        keep: Option<&str>,
    ) {
        for (_, name) in evicted {
            if Some(name.as_str()) == keep {
                continue;
            }
            if let Err(e) = tokio::fs::remove_file(self.dir.join(&name)).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %name, error = %e, "cannot delete an evicted audio file");
            }
        }
    }
}

/// Where a prompt comes from.
enum Origin {
    Url {
        url: String,
        hash: String,
    },
    /// A local file; the key includes its modification time and length, so an edited file is
    /// decoded again.
    File {
        path: PathBuf,
        stamp: String,
    },
}

impl Origin {
    async fn parse(source: &str, limits: &Limits) -> Result<Origin, LoadError> {
        let max_bytes = limits.max_file_bytes;
        if source.starts_with("http://") || source.starts_with("https://") {
            return Ok(Origin::Url {
                url: source.to_owned(),
                hash: url_hash(source),
            });
        }
        let path = source.strip_prefix("file://").unwrap_or(source);
        if !path.starts_with('/') {
            return Err(LoadError::BadSource);
        }
        if let Some(roots) = &limits.local_roots {
            // Symlinks and `..` resolved first, so the file really is under a media directory.
            let inside = match tokio::fs::canonicalize(path).await {
                Ok(real) => roots.iter().any(|root| real.starts_with(root)),
                Err(_) => false,
            };
            if !inside {
                return Err(LoadError::Refused(format!(
                    "refused: {path} is not in a media directory ({}); add one with --media-dir",
                    roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| LoadError::Io(e.to_string()))?;
        if meta.len() > max_bytes {
            return Err(LoadError::TooLarge(max_bytes));
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(Origin::File {
            path: PathBuf::from(path),
            stamp: format!("{}:{}", modified.as_nanos(), meta.len()),
        })
    }

    fn key(&self) -> String {
        match self {
            Origin::Url { url, .. } => format!("url:{url}"),
            Origin::File { path, stamp } => format!("file:{stamp}:{}", path.display()),
        }
    }
}

/// Forgets an in-flight attempt when its last waiter is done with it (finished or cancelled),
/// so that a failure is not remembered and the next load tries again.
struct Inflight<'a> {
    map: &'a Mutex<HashMap<String, Arc<Loading>>>,
    key: &'a str,
    cell: &'a Arc<Loading>,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        // Clones are made under this lock: a count of 2 (the map's and ours) means no one else
        // waits. Once the attempt is done, newcomers find the PCM cache instead.
        let ours = map
            .get(self.key)
            .is_some_and(|cell| Arc::ptr_eq(cell, self.cell));
        if ours && (self.cell.initialized() || Arc::strong_count(self.cell) <= 2) {
            map.remove(self.key);
        }
    }
}

/// A download in progress; deleted unless persisted.
struct PartFile {
    path: Option<PathBuf>,
    file: tokio::fs::File,
}

impl PartFile {
    async fn create(path: PathBuf) -> std::io::Result<PartFile> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(PartFile {
            path: Some(path),
            file,
        })
    }

    async fn persist(mut self, to: &Path) -> std::io::Result<()> {
        if let Some(from) = &self.path {
            tokio::fs::rename(from, to).await?;
        }
        self.path = None;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Small and local; the task that failed or was cancelled is the one paying.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Least-recently-used map bounded by a total weight.
struct Lru<V> {
    entries: HashMap<String, Slot<V>>,
    total: u64,
    max: u64,
    clock: u64,
}

struct Slot<V> {
    value: V,
    weight: u64,
    used: u64,
}

impl<V> Lru<V> {
    fn new(max: u64) -> Lru<V> {
        Lru {
            entries: HashMap::new(),
            total: 0,
            max,
            clock: 0,
        }
    }

    /// The value, now the most recently used.
    fn get(&mut self, key: &str) -> Option<&V> {
        self.clock += 1;
        let slot = self.entries.get_mut(key)?;
        slot.used = self.clock;
        Some(&slot.value)
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.total -= slot.weight;
        Some(slot.value)
    }

    /// Insert as the most recently used, evicting the least recently used until the total
    /// fits; returns what left (a replaced value, the evicted ones, or the new one itself when
    /// it alone is heavier than the bound).
    fn insert(&mut self, key: String, value: V, weight: u64) -> Vec<(String, V)> {
        let mut gone = Vec::new();
        if let Some(old) = self.remove(&key) {
            gone.push((key.clone(), old));
        }
        if weight > self.max {
            gone.push((key, value));
            return gone;
        }
        while self.total + weight > self.max {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, slot)| slot.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(value) = self.remove(&oldest) {
                gone.push((oldest, value));
            }
        }
        self.clock += 1;
        self.total += weight;
        self.entries.insert(
            key,
            Slot {
                value,
                weight,
                used: self.clock,
            },
        );
        gone
    }
}

/// A request error: the URL guard's refusal (a name or a redirect), or what reqwest says.
fn request_error(e: reqwest::Error) -> LoadError {
    match url_guard::refusal(&e) {
        Some(refused) => LoadError::Refused(refused),
        None => LoadError::Http(e.without_url().to_string()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache file stem of a URL: 128 bits of its SHA-256, hex.
fn url_hash(url: &str) -> String {
    Sha256::digest(url.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A short alphanumeric extension, lowercased, or None.
fn clean_extension(ext: &str) -> Option<&'static str> {
    Some(match ext.to_ascii_lowercase().as_str() {
        "wav" | "wave" => "wav",
        "mp3" => "mp3",
        "ogg" | "oga" => "ogg",
        _ => return None,
    })
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// The audio extension of a URL's path (`/prompts/hello.MP3?x=1` → `mp3`).
fn url_extension(url: &str) -> Option<&'static str> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let last = parsed.path_segments()?.next_back()?;
    clean_extension(last.rsplit_once('.')?.1)
}

/// The extension for a Content-Type (`audio/mpeg` → `mp3`).
fn content_type_extension(headers: &reqwest::header::HeaderMap) -> Option<&'static str> {
    let value = headers.get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(match mime.as_str() {
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg-3" => "mp3",
        "audio/ogg" | "application/ogg" | "audio/vorbis" => "ogg",
        "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => "wav",
        _ => return None,
    })
}

/// A file of the cache found on disk.
struct Found {
    hash: String,
    name: String,
    size: u64,
    modified: SystemTime,
}

/// The cache files in `dir`, oldest first; `.part` leftovers are deleted, other files ignored.
async fn scan(dir: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if name.ends_with(".part") {
            let _ = tokio::fs::remove_file(entry.path()).await;
            continue;
        }
        let Some((hash, ext)) = name.split_once('.') else {
            continue;
        };
        let ours = hash.len() == 32
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && (ext == "bin" || clean_extension(ext) == Some(ext));
        if !ours {
            continue;
        }
        found.push(Found {
            hash: hash.to_owned(),
            name: name.clone(),
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    found.sort_by_key(|f| f.modified);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    const MP3: &[u8] = include_bytes!("../../media/tests/fixtures/tone_44k.mp3");

    /// A local HTTP server counting requests; `/wav/{ms}` is a WAV of that many ms of silence,
    /// `/gated` waits for the test to open the gate, `/stall` and `/stall-body` never finish.
    struct Server {
        base: String,
        requests: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Notify>,
        arrived: tokio::sync::watch::Receiver<usize>,
    }

    #[derive(Clone)]
    struct AppState {
        requests: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Notify>,
        arrived: Arc<tokio::sync::watch::Sender<usize>>,
    }

    fn wav(ms: usize) -> Vec<u8> {
        let samples = ms * 8;
        let mut bytes = b"RIFF".to_vec();
        bytes.extend_from_slice(&(36 + 2 * samples as u32).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
        bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
        bytes.extend_from_slice(&8000u32.to_le_bytes());
        bytes.extend_from_slice(&16000u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&(2 * samples as u32).to_le_bytes());
        bytes.resize(44 + 2 * samples, 0);
        bytes
    }

    async fn serve() -> Server {
        let requests = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (arrived_tx, arrived) = tokio::sync::watch::channel(0);
        let state = AppState {
            requests: requests.clone(),
            gate: gate.clone(),
            arrived: Arc::new(arrived_tx),
        };
        let app = Router::new()
            .route("/wav/{ms}", get(wav_handler))
            .route("/prompt", get(mp3_handler))
            .route("/gated", get(gated_handler))
            .route("/missing.wav", get(missing_handler))
            .route("/page.mp3", get(page_handler))
            .route("/big", get(big_handler))
            .route("/big-chunked", get(big_chunked_handler))
            .route("/stall", get(stall_handler))
            .route("/stall-body", get(stall_body_handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            requests,
            gate,
            arrived,
        }
    }

    fn count(state: &AppState) {
        state.requests.fetch_add(1, Ordering::SeqCst);
        state.arrived.send_modify(|n| *n += 1);
    }

    async fn wav_handler(State(state): State<AppState>, UrlPath(ms): UrlPath<usize>) -> Response {
        count(&state);
        ([(header::CONTENT_TYPE, "audio/wav")], wav(ms)).into_response()
    }

    async fn mp3_handler(State(state): State<AppState>) -> Response {
        count(&state);
        ([(header::CONTENT_TYPE, "audio/mpeg")], MP3).into_response()
    }

    async fn gated_handler(State(state): State<AppState>) -> Response {
        count(&state);
        state.gate.notified().await;
        wav(100).into_response()
    }

    async fn missing_handler(State(state): State<AppState>) -> Response {
        count(&state);
        (StatusCode::NOT_FOUND, "no such prompt").into_response()
    }

    async fn page_handler(State(state): State<AppState>) -> Response {
        count(&state);
        ([(header::CONTENT_TYPE, "text/html")], "<html>moved</html>").into_response()
    }

    async fn big_handler(State(state): State<AppState>) -> Response {
        count(&state);
        wav(1000).into_response()
    }

    async fn big_chunked_handler(State(state): State<AppState>) -> Response {
        count(&state);
        // No Content-Length: only counting the body finds it too big.
        let chunks = wav(1000)
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>();
        Body::from_stream(futures_util::stream::iter(chunks)).into_response()
    }

    async fn stall_handler(State(state): State<AppState>) -> Response {
        count(&state);
        std::future::pending::<()>().await;
        StatusCode::OK.into_response()
    }

    async fn stall_body_handler(State(state): State<AppState>) -> Response {
        count(&state);
        use futures_util::StreamExt;
        let head = futures_util::stream::iter([Ok::<_, std::io::Error>(wav(10))]);
        Body::from_stream(head.chain(futures_util::stream::pending())).into_response()
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("voxflow-audio-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// One client for every test (as the runtime has one), allowed to reach the loopback
    /// test server.
    fn client() -> &'static HttpClient {
        static CLIENT: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
        CLIENT.get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            HttpClient::build(
                url_guard::UrlPolicy {
                    allow_private: true,
                },
                reqwest::Client::builder(),
            )
            .unwrap()
        })
    }

    /// A client with the default policy: private targets refused.
    fn guarded_client() -> HttpClient {
        HttpClient::build(url_guard::UrlPolicy::default(), reqwest::Client::builder()).unwrap()
    }

    #[tokio::test]
    async fn a_guarded_client_refuses_loopback_urls_even_when_cached() {
        let server = serve().await;
        let dir = temp_dir();
        let url = format!("{}/wav/100", server.base);
        let audio = cache(&dir, Limits::default()).await;
        let guarded = guarded_client();
        let err = audio.load(&guarded, &url).await.unwrap_err();
        assert!(matches!(err, LoadError::Refused(_)), "{err}");
        assert!(
            err.to_string().starts_with(
                "refused: 127.0.0.1 is a loopback address; start voxflow with --allow-private-urls"
            ),
            "{err}"
        );
        let by_name = url.replace("127.0.0.1", "localhost");
        assert!(matches!(
            audio.load(&guarded, &by_name).await,
            Err(LoadError::Refused(_))
        ));
        assert_eq!(requests(&server), 0, "no request was made");
        // Downloaded while allowed: still refused to a guarded client.
        audio.load(client(), &url).await.unwrap();
        assert!(matches!(
            audio.load(&guarded, &url).await,
            Err(LoadError::Refused(_))
        ));
        assert_eq!(requests(&server), 1);
        // Local files are not URLs: the guard does not apply.
        let file = dir.join("local.wav");
        std::fs::write(&file, wav(20)).unwrap();
        assert_eq!(
            audio
                .load(&guarded, &file.display().to_string())
                .await
                .unwrap()
                .len(),
            160
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn cache(dir: &Path, limits: Limits) -> AudioCache {
        AudioCache::open(dir.join("cache").join("audio"), limits).await
    }

    /// The cache files on disk (not `.part`), sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("cache").join("audio"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn requests(server: &Server) -> usize {
        server.requests.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn second_fetch_makes_no_request_even_after_a_restart() {
        let server = serve().await;
        let dir = temp_dir();
        let url = format!("{}/wav/250", server.base);
        let first = cache(&dir, Limits::default()).await;
        let pcm = first.load(client(), &url).await.unwrap();
        assert_eq!(pcm.len(), 2000);
        let again = first.load(client(), &url).await.unwrap();
        assert!(Arc::ptr_eq(&pcm, &again), "decoded once, shared");
        assert_eq!(requests(&server), 1);
        assert_eq!(files(&dir), [format!("{}.wav", url_hash(&url))]);
        assert_eq!(first.disk_bytes(), wav(250).len() as u64);

        // A new process finds the file, accounts for it and needs no request.
        let second = cache(&dir, Limits::default()).await;
        assert_eq!(second.disk_bytes(), wav(250).len() as u64);
        assert_eq!(*second.load(client(), &url).await.unwrap(), *pcm);
        assert_eq!(requests(&server), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn concurrent_fetches_make_one_request() {
        let server = serve().await;
        let dir = temp_dir();
        let cache = Arc::new(cache(&dir, Limits::default()).await);
        let url = format!("{}/gated", server.base);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (cache, url) = (cache.clone(), url.clone());
            tasks.spawn(async move { cache.load(client(), &url).await });
        }
        // Hold the one response until all twenty loads wait on it.
        let mut arrived = server.arrived.clone();
        arrived.wait_for(|n| *n >= 1).await.unwrap();
        while cache.waiting(&url) < 20 {
            tokio::task::yield_now().await;
        }
        server.gate.notify_one();
        let results: Vec<Arc<[i16]>> = tasks
            .join_all()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(results.iter().all(|pcm| Arc::ptr_eq(pcm, &results[0])));
        assert_eq!(results[0].len(), 800);
        assert_eq!(requests(&server), 1);
        assert_eq!(cache.waiting(&url), 0, "the in-flight entry is forgotten");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn eviction_keeps_the_cache_under_its_cap_and_drops_the_least_recently_used() {
        let server = serve().await;
        let dir = temp_dir();
        let size = wav(100).len() as u64;
        // Room for three files; no memory cache, so every load goes to the disk cache.
        let limits = Limits {
            max_total_bytes: 3 * size + size / 2,
            max_pcm_samples: 0,
            ..Limits::default()
        };
        let cache = cache(&dir, limits.clone()).await;
        // Four distinct URLs of equal size (the query makes them distinct).
        let urls: Vec<String> = (0..4)
            .map(|n| format!("{}/wav/100?n={n}", server.base))
            .collect();
        for u in &urls[..3] {
            cache.load(client(), u).await.unwrap();
        }
        assert_eq!(requests(&server), 3);
        cache.load(client(), &urls[0]).await.unwrap(); // a hit: 0 is now more recent than 1
        assert_eq!(requests(&server), 3);
        cache.load(client(), &urls[3]).await.unwrap();
        assert_eq!(requests(&server), 4);
        assert!(cache.disk_bytes() <= limits.max_total_bytes);
        let mut expected: Vec<String> = [0, 2, 3]
            .iter()
            .map(|&n| format!("{}.wav", url_hash(&urls[n])))
            .collect();
        expected.sort();
        assert_eq!(files(&dir), expected, "URL 1 was the least recently used");
        cache.load(client(), &urls[0]).await.unwrap();
        assert_eq!(requests(&server), 4);
        cache.load(client(), &urls[1]).await.unwrap();
        assert_eq!(requests(&server), 5, "the evicted one is downloaded again");
        assert_eq!(files(&dir).len(), 3);

        // Opening with a smaller cap evicts at start, oldest files first.
        drop(cache);
        let smaller = Limits {
            max_total_bytes: size,
            ..limits
        };
        let reopened = AudioCache::open(dir.join("cache").join("audio"), smaller).await;
        assert_eq!(reopened.disk_bytes(), size);
        assert_eq!(files(&dir).len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn http_errors_are_errors_and_not_cached() {
        let server = serve().await;
        let dir = temp_dir();
        let cache = cache(&dir, Limits::default()).await;
        let url = format!("{}/missing.wav", server.base);
        for attempt in 1..=2 {
            let err = cache.load(client(), &url).await.unwrap_err();
            assert!(matches!(err, LoadError::Status(404)), "{err}");
            assert_eq!(requests(&server), attempt, "every attempt asks again");
        }
        assert!(files(&dir).is_empty());
        assert_eq!(cache.disk_bytes(), 0);
        // A 200 that is not audio: a decode error, and the file is not kept either.
        let page = format!("{}/page.mp3", server.base);
        for attempt in 3..=4 {
            let err = cache.load(client(), &page).await.unwrap_err();
            assert!(matches!(err, LoadError::Decode(_)), "{err}");
            assert_eq!(requests(&server), attempt);
        }
        assert!(files(&dir).is_empty());
        assert_eq!(cache.disk_bytes(), 0);
        // Nothing listening: a connection error, nothing kept.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = cache
            .load(client(), &format!("http://{closed}/x.wav"))
            .await
            .unwrap_err();
        assert!(matches!(err, LoadError::Http(_)), "{err}");
        assert!(files(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn oversize_bodies_are_refused() {
        let server = serve().await;
        let dir = temp_dir();
        let limits = Limits {
            max_file_bytes: 4000,
            ..Limits::default()
        };
        let cache = cache(&dir, limits).await;
        for path in ["big", "big-chunked"] {
            let err = cache
                .load(client(), &format!("{}/{path}", server.base))
                .await
                .unwrap_err();
            assert!(matches!(err, LoadError::TooLarge(4000)), "{path}: {err}");
        }
        assert!(files(&dir).is_empty(), "no file and no .part left");
        // Local files have the same bound.
        let local = dir.join("big.wav");
        std::fs::write(&local, wav(1000)).unwrap();
        let err = cache
            .load(client(), local.to_str().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, LoadError::TooLarge(4000)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_stalling_server_hits_the_timeout() {
        let server = serve().await;
        let dir = temp_dir();
        let limits = Limits {
            fetch_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let cache = cache(&dir, limits).await;
        for path in ["stall", "stall-body"] {
            let started = tokio::time::Instant::now();
            let err = cache
                .load(client(), &format!("{}/{path}", server.base))
                .await
                .unwrap_err();
            assert!(matches!(err, LoadError::Timeout(_)), "{path}: {err}");
            assert!(started.elapsed() < Duration::from_secs(5), "{path}");
        }
        assert!(files(&dir).is_empty(), "no file and no .part left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_mp3_over_http_decodes_end_to_end() {
        let server = serve().await;
        let dir = temp_dir();
        let cache = cache(&dir, Limits::default()).await;
        // No extension in the URL: the Content-Type names the file.
        let url = format!("{}/prompt?id=7", server.base);
        let pcm = cache.load(client(), &url).await.unwrap();
        let seconds = pcm.len() as f64 / 8000.0;
        assert!((seconds - 1.0).abs() <= 0.02, "{seconds}");
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 10_000, "{peak}");
        assert_eq!(files(&dir), [format!("{}.mp3", url_hash(&url))]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn local_files_outside_the_media_directories_are_refused() {
        let dir = temp_dir();
        let media = dir.join("media");
        std::fs::create_dir_all(&media).unwrap();
        let limits = Limits {
            local_roots: Some(vec![std::fs::canonicalize(&media).unwrap()]),
            ..Limits::default()
        };
        let cache = cache(&dir, limits).await;
        let inside = media.join("ok.wav");
        std::fs::write(&inside, wav(100)).unwrap();
        let outside = dir.join("secret.wav");
        std::fs::write(&outside, wav(100)).unwrap();
        assert!(cache.load(client(), inside.to_str().unwrap()).await.is_ok());
        // Outside, through `..`, through a symlink, or not there at all: refused alike.
        let dotdot = format!("{}/../secret.wav", media.display());
        let link = media.join("link.wav");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        for source in [
            outside.display().to_string(),
            format!("file://{}", outside.display()),
            dotdot,
            link.display().to_string(),
            "/etc/passwd".to_owned(),
            "/nonexistent/x.wav".to_owned(),
        ] {
            let err = cache.load(client(), &source).await.unwrap_err();
            assert!(matches!(err, LoadError::Refused(_)), "{source}: {err}");
            assert!(err.to_string().contains("--media-dir"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn local_files_are_decoded_once_until_they_change() {
        let dir = temp_dir();
        let cache = cache(&dir, Limits::default()).await;
        let path = dir.join("prompt.wav");
        std::fs::write(&path, wav(100)).unwrap();
        let plain = path.to_str().unwrap().to_owned();
        let a = cache.load(client(), &plain).await.unwrap();
        let b = cache
            .load(client(), &format!("file://{plain}"))
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "one decode for the path and its file:// URL"
        );
        assert_eq!(a.len(), 800);
        std::fs::write(&path, wav(200)).unwrap();
        assert_eq!(cache.load(client(), &plain).await.unwrap().len(), 1600);
        assert!(matches!(
            cache.load(client(), "relative/path.wav").await,
            Err(LoadError::BadSource)
        ));
        assert!(matches!(
            cache
                .load(client(), dir.join("absent.wav").to_str().unwrap())
                .await,
            Err(LoadError::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn leftover_part_files_are_deleted_at_start() {
        let dir = temp_dir();
        let audio = dir.join("cache").join("audio");
        std::fs::create_dir_all(&audio).unwrap();
        let hash = url_hash("http://127.0.0.1/x.wav");
        std::fs::write(audio.join(format!("{hash}.0123.part")), b"half").unwrap();
        std::fs::write(audio.join(format!("{hash}.wav")), wav(10)).unwrap();
        std::fs::write(audio.join("notes.txt"), b"not ours").unwrap();
        let cache = cache(&dir, Limits::default()).await;
        assert_eq!(cache.disk_bytes(), wav(10).len() as u64);
        assert_eq!(files(&dir), [format!("{hash}.wav"), "notes.txt".to_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lru_evicts_least_recently_used_and_refuses_giants() {
        let mut lru: Lru<u8> = Lru::new(10);
        assert!(lru.insert("a".into(), 1, 4).is_empty());
        assert!(lru.insert("b".into(), 2, 4).is_empty());
        lru.get("a");
        assert_eq!(lru.insert("c".into(), 3, 4), [("b".to_owned(), 2)]);
        assert_eq!(lru.total, 8);
        assert_eq!(lru.insert("d".into(), 4, 11), [("d".to_owned(), 4)]);
        assert_eq!(lru.insert("a".into(), 5, 2), [("a".to_owned(), 1)]);
        assert_eq!(lru.total, 6);
    }

    #[test]
    fn extensions_come_from_the_url_or_the_content_type() {
        assert_eq!(url_extension("http://h/p/hello.MP3?x=1.wav"), Some("mp3"));
        assert_eq!(url_extension("https://h/a.b/prompt"), None);
        assert_eq!(url_extension("https://h/x.exe"), None);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            "Audio/Ogg; codecs=vorbis".parse().unwrap(),
        );
        assert_eq!(content_type_extension(&headers), Some("ogg"));
        assert_eq!(url_hash("http://h/a.wav").len(), 32);
        assert_ne!(url_hash("http://h/a.wav"), url_hash("http://h/b.wav"));
    }
}

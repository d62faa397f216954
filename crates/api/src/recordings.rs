//! `/v1.0/recordings`: call recordings, their WAV files, and their removal.
//!
//! The runtime writes each recording to a file on this node and keeps its record up to date; this
//! module only reads the record, streams the file (whole or one byte range) and deletes both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, PageQuery, path_id};
use crate::{ApiError, AppState};
use runtime::views::RecordingView;

/// `?call_id=` of a list request.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListFilter {
    call_id: Option<String>,
}

/// `GET /v1.0/recordings[?call_id=]`: newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
    Query(filter): Query<ListFilter>,
) -> Result<Json<List<RecordingView>>, ApiError> {
    let page = query.page()?;
    let recordings = match filter.call_id.as_deref() {
        None | Some("") => state.store.list_recordings(account.id, &page).await?,
        Some(call) => {
            let call =
                Uuid::parse_str(call).map_err(|_| ApiError::field("call_id", "must be a UUID"))?;
            // A call has a handful of recordings: page them here, in the same order and with the
            // same cursor as the unfiltered list.
            let mut all = state.store.recordings_of_call(account.id, call).await?;
            all.reverse();
            all.into_iter()
                .filter(|r| match &page.after {
                    Some((tm, id)) => (r.tm_start.as_str(), r.id.to_string().as_str()) < (tm, id),
                    None => true,
                })
                .take(page.size as usize)
                .collect()
        }
    };
    let views = recordings.into_iter().map(RecordingView::from).collect();
    Ok(Json(List::new(views, &page, |r: &RecordingView| {
        (r.tm_start.clone(), r.id)
    })))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<RecordingView>, ApiError> {
    let recording = state
        .store
        .recording(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(recording.into()))
}

/// `GET /v1.0/recordings/{id}/file`: the WAV, streamed; one `Range: bytes=` range is honoured.
/// 409 while the recording is still being written, 404 when its file is gone.
pub(crate) async fn file(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let recording = state
        .store
        .recording(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    if recording.is_recording() {
        return Err(still_recording());
    }
    let mut file = match tokio::fs::File::open(&recording.path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "the recording exists but its file is missing on this node",
            ));
        }
        Err(e) => return Err(file_error(&recording, "opening", &e)),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| file_error(&recording, "reading the size of", &e))?
        .len();
    let range = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(ByteRange::Whole, |v| ByteRange::parse(v, len));
    let (status, start, end) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        ByteRange::Unsatisfiable => {
            let mut response = error_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                &format!("the file is {len} bytes long"),
            );
            response
                .headers_mut()
                .insert(CONTENT_RANGE, header_value(format!("bytes */{len}")));
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start))
            .await
            .map_err(|e| file_error(&recording, "seeking in", &e))?;
    }
    let mut response = Body::new(FileBody::new(file, end - start)).into_response();
    *response.status_mut() = status;
    let out = response.headers_mut();
    let (content_type, extension) = match recording.format.as_str() {
        "mp3" => ("audio/mpeg", "mp3"),
        "ogg" => ("audio/ogg", "ogg"),
        _ => ("audio/wav", "wav"),
    };
    out.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
    out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        CONTENT_DISPOSITION,
        header_value(format!(
            "attachment; filename=\"{}.{extension}\"",
            recording.id
        )),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        out.insert(
            CONTENT_RANGE,
            header_value(format!("bytes {start}-{}/{len}", end - 1)),
        );
    }
    Ok(response)
}

/// `DELETE /v1.0/recordings/{id}`: the file, then the record. 409 while recording.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let recording = state
        .store
        .recording(account.id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if recording.is_recording() {
        return Err(still_recording());
    }
    // File first: if it cannot be removed the record stays, and the request can be retried.
    match tokio::fs::remove_file(&recording.path).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(&recording, "removing", &e)),
    }
    if state.store.delete_recording(account.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

fn still_recording() -> ApiError {
    ApiError::Conflict("the recording is still in progress; stop it or wait for it to end".into())
}

fn file_error(recording: &store::RecordingRecord, doing: &str, err: &io::Error) -> ApiError {
    ApiError::Internal(format!(
        "{doing} recording file {} of {}: {err}",
        recording.path, recording.id
    ))
}

/// An error response in the shape of [`ApiError`]'s, for the statuses it has no variant for.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// A header value built from our own ASCII text.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What a `Range` header asks of a file of known length (RFC 9110 §14).
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// No usable single range: send everything with 200. Unknown units, several ranges and
    /// malformed values all land here, as the RFC allows.
    Whole,
    /// Bytes `start..end` (end exclusive), non-empty and within the file.
    Part { start: u64, end: u64 },
    /// A well-formed range that misses the file entirely: 416.
    Unsatisfiable,
}

impl ByteRange {
    fn parse(header: &str, len: u64) -> ByteRange {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return ByteRange::Whole;
        };
        if spec.contains(',') {
            return ByteRange::Whole;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return ByteRange::Whole;
        };
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        match (first.trim(), last.trim()) {
            ("", "") => ByteRange::Whole,
            // `-N`: the last N bytes.
            ("", suffix) => match number(suffix) {
                None => ByteRange::Whole,
                Some(0) => ByteRange::Unsatisfiable,
                Some(_) if len == 0 => ByteRange::Unsatisfiable,
                Some(n) => ByteRange::Part {
                    start: len.saturating_sub(n),
                    end: len,
                },
            },
            // `A-` and `A-B` (B inclusive, clipped to the file).
            (first, last) => {
                let Some(start) = number(first) else {
                    return ByteRange::Whole;
                };
                let end = if last.is_empty() {
                    len
                } else {
                    match number(last) {
                        Some(last) if last >= start => last.saturating_add(1).min(len),
                        _ => return ByteRange::Whole,
                    }
                };
                if start >= len {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part { start, end }
                }
            }
        }
    }
}

/// Bytes read per body frame.
const CHUNK: usize = 64 * 1024;

/// The next `remaining` bytes of an open file as a response body, read a chunk at a time as the
/// client takes them: a 100 MB recording never sits in memory.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    fn new(file: tokio::fs::File, remaining: u64) -> Self {
        let chunk = usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK));
        FileBody {
            file,
            remaining,
            buf: vec![0; chunk],
        }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want =
            usize::try_from(this.remaining).map_or(this.buf.len(), |r| r.min(this.buf.len()));
        let mut buf = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the recording file got shorter while it was being sent",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let data = Bytes::copy_from_slice(buf.filled());
                this.remaining -= data.len() as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, Part, Unsatisfiable, Whole};

    #[test]
    fn recordings_range_header_is_read_like_rfc_9110() {
        let len = 1000;
        for (header, want) in [
            ("bytes=0-99", Part { start: 0, end: 100 }),
            (
                "bytes=900-",
                Part {
                    start: 900,
                    end: 1000,
                },
            ),
            (
                "bytes=900-5000",
                Part {
                    start: 900,
                    end: 1000,
                },
            ),
            (
                "bytes=-100",
                Part {
                    start: 900,
                    end: 1000,
                },
            ),
            (
                "bytes=-5000",
                Part {
                    start: 0,
                    end: 1000,
                },
            ),
            (
                "bytes=999-999",
                Part {
                    start: 999,
                    end: 1000,
                },
            ),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=5-4", Whole),
            ("bytes=0-1,5-6", Whole),
            ("items=0-1", Whole),
            ("bytes=a-b", Whole),
            ("bytes=-", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=99999999999999999999999-", Whole),
        ] {
            assert_eq!(ByteRange::parse(header, len), want, "{header}");
        }
        assert_eq!(ByteRange::parse("bytes=-10", 0), Unsatisfiable);
        assert_eq!(ByteRange::parse("bytes=0-", 0), Unsatisfiable);
    }
}

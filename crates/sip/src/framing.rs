//! Cutting a byte stream (TCP) into messages by Content-Length (RFC 3261 §18.3), skipping the
//! CRLF keep-alives of RFC 5626 §3.5.1.

use crate::headers::same_name;
use crate::message::{MAX_MESSAGE_SIZE, head_lines, parse_content_length, split_head_from};

/// Why a stream cannot be framed. The stream is unusable afterwards: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message on a stream must carry Content-Length.
    #[error("missing Content-Length")]
    MissingContentLength,
    /// Content-Length is not a number, or several disagree.
    #[error("malformed Content-Length")]
    InvalidContentLength,
    /// The message (or an unterminated header section) exceeds [`crate::MAX_MESSAGE_SIZE`].
    #[error("message too large")]
    TooLarge,
}

/// Accumulates stream bytes and hands out whole messages (to give to
/// [`crate::Message::parse`]).
///
/// After an error it stays failed: every later call returns `None` and pushed bytes are
/// dropped; the shell should close the connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    failed: bool,
    keepalives: u64,
    /// Bytes of `buf` already searched for the end of the header section.
    searched: usize,
    /// Length of the message at the front of `buf`, once its header section is complete.
    total: Option<usize>,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete message, `None` if more bytes are needed (or the framer failed), or
    /// the error that makes the stream unusable (returned once).
    #[must_use]
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        if self.failed {
            return None;
        }
        match self.frame() {
            Ok(Some(len)) => {
                self.searched = 0;
                self.total = None;
                Some(Ok(self.buf.drain(..len).collect()))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                Some(Err(e))
            }
        }
    }

    /// Whether the framer hit an error.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// How many CRLF keep-alives (a blank line between messages) were skipped. A shell may
    /// answer each `CRLFCRLF` ping with a CRLF pong.
    pub fn keepalives(&self) -> u64 {
        self.keepalives
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops leading line breaks, then returns the length of the first message if complete.
    /// Each byte is searched once, however the stream is chunked.
    fn frame(&mut self) -> Result<Option<usize>, FrameError> {
        if let Some(total) = self.total {
            return Ok((self.buf.len() >= total).then_some(total));
        }
        if self.searched == 0 {
            let skip = self
                .buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(self.buf.len());
            if skip > 0 {
                let skipped = self.buf.drain(..skip);
                let pings = skipped.filter(|&b| b == b'\n').count() / 2;
                self.keepalives += pings as u64;
            }
        }
        let from = self.searched.saturating_sub(3);
        let Some((head, body_offset)) = split_head_from(&self.buf, from) else {
            self.searched = self.buf.len();
            return if self.buf.len() > MAX_MESSAGE_SIZE {
                Err(FrameError::TooLarge)
            } else {
                Ok(None)
            };
        };
        let head = String::from_utf8_lossy(head);
        // Content-Length values, unfolded (a value may continue on the next line)
        let mut values: Vec<String> = Vec::new();
        let mut in_length = false;
        for line in head_lines(&head).skip(1) {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = values.last_mut().filter(|_| in_length) {
                    value.push_str(line);
                }
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            in_length = same_name(name.trim_end_matches([' ', '\t']), "Content-Length");
            if in_length {
                values.push(value.to_owned());
            }
        }
        let mut length = None;
        for value in values {
            let n = parse_content_length(value.trim_matches([' ', '\t']))
                .ok_or(FrameError::InvalidContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(FrameError::InvalidContentLength);
            }
            length = Some(n);
        }
        let total = body_offset + length.ok_or(FrameError::MissingContentLength)?;
        if total > MAX_MESSAGE_SIZE {
            return Err(FrameError::TooLarge);
        }
        self.total = Some(total);
        Ok((self.buf.len() >= total).then_some(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn splits_messages_and_skips_keepalives() {
        let mut f = StreamFramer::new();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(OPTIONS);
        f.push(&stream);
        assert_eq!(f.next_message(), Some(Ok(OPTIONS.to_vec())));
        assert_eq!(f.next_message(), Some(Ok(OPTIONS.to_vec())));
        assert_eq!(f.next_message(), None);
        assert_eq!(f.keepalives(), 2);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn waits_for_bytes_one_at_a_time() {
        let mut f = StreamFramer::new();
        for (i, b) in OPTIONS.iter().enumerate() {
            assert_eq!(f.next_message(), None, "at {i}");
            f.push(&[*b]);
        }
        let frame = f.next_message().unwrap().unwrap();
        assert!(matches!(Message::parse(&frame), Ok(Message::Request(r)) if r.body == b"hello"));
    }

    #[test]
    fn folded_content_length() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n  2\r\n\r\nhiMORE");
        assert!(f.next_message().unwrap().unwrap().ends_with(b"\r\n\r\nhi"));
        assert_eq!(f.buffered(), 4);
    }

    #[test]
    fn errors_poison_the_stream() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\n\r\n");
        assert_eq!(
            f.next_message(),
            Some(Err(FrameError::MissingContentLength))
        );
        assert!(f.is_failed());
        f.push(OPTIONS);
        assert_eq!(f.next_message(), None);

        for (stream, err) in [
            (
                &b"X sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n"[..],
                FrameError::InvalidContentLength,
            ),
            (
                b"X sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
                FrameError::InvalidContentLength,
            ),
            (
                b"X sip:a SIP/2.0\r\nContent-Length: 65536\r\n\r\n",
                FrameError::TooLarge,
            ),
        ] {
            let mut f = StreamFramer::new();
            f.push(stream);
            assert_eq!(f.next_message(), Some(Err(err)));
        }

        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(f.next_message(), Some(Err(FrameError::TooLarge)));
    }
}

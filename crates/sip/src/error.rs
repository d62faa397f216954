//! Why a message or a header could not be parsed or validated.

/// Why a SIP message, or one of its headers, was rejected.
///
/// Messages never quote the peer's bytes, so they are safe to log and to send back in a
/// reason phrase (see [`crate::bad_request_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The message is larger than [`crate::MAX_MESSAGE_SIZE`].
    #[error("message too large")]
    TooLarge,
    /// Nothing but line breaks.
    #[error("empty message")]
    Empty,
    /// The header section does not end with an empty line.
    #[error("incomplete header section")]
    Truncated,
    /// The start line and headers are not UTF-8.
    #[error("header section is not UTF-8")]
    InvalidUtf8,
    /// The Request-Line or Status-Line is malformed.
    #[error("malformed start line")]
    InvalidStartLine,
    /// The SIP-Version is not `SIP/2.0`.
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    /// The status code is not three digits in 100..=699.
    #[error("invalid status code")]
    InvalidStatusCode,
    /// The method is not a token.
    #[error("invalid method")]
    InvalidMethod,
    /// A URI is malformed.
    #[error("malformed URI")]
    InvalidUri,
    /// A name-addr or addr-spec (From, To, Contact, Route ...) is malformed.
    #[error("malformed name-addr")]
    InvalidNameAddr,
    /// A Via value is malformed.
    #[error("malformed Via")]
    InvalidVia,
    /// A CSeq value is malformed or out of range.
    #[error("malformed CSeq")]
    InvalidCSeq,
    /// A header line has no colon, a bad name, a control character or a misplaced continuation.
    #[error("malformed header line")]
    HeaderSyntax,
    /// More than [`crate::MAX_HEADERS`] header fields.
    #[error("too many headers")]
    TooManyHeaders,
    /// A header field longer than [`crate::MAX_HEADER_LINE`] bytes.
    #[error("header too long")]
    HeaderTooLong,
    /// Content-Length is not a non-negative integer.
    #[error("malformed Content-Length")]
    InvalidContentLength,
    /// Several Content-Length headers that disagree.
    #[error("conflicting Content-Length")]
    ConflictingContentLength,
    /// Content-Length is larger than the body received.
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// A mandatory header is absent.
    #[error("missing {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears several times.
    #[error("duplicate {0}")]
    DuplicateHeader(&'static str),
    /// A header's value is malformed.
    #[error("malformed {0}")]
    InvalidHeader(&'static str),
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
}

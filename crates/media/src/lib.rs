//! voxflow media: the sans-IO RTP media engine of a call.
//!
//! # What this crate owns
//!
//! - [`MediaSession`]: one call's RTP stream. Symmetric RTP (the peer's address is latched from
//!   what arrives), G.711 framing of queued prompts with silence in between so RTP never
//!   stops, sequence/timestamp continuity, and RFC 4733 telephone-event reception reported as
//!   one [`MediaEvent::Dtmf`] per key press.
//! - [`g711`] (µ-law/A-law), [`rtp`] (packet parse/write), [`tone`] (beep, sines) and
//!   [`audio`] (WAV/MP3/OGG decoding and resampling to 8 kHz, run off the media path).
//!
//! It does no IO, reads no clock and spawns nothing: no sockets, no timers, no tokio. It does
//! not own the RTP socket, the pacing clock, SDP negotiation (see the `sdp` crate, whose
//! [`Codec`] it re-exports) or fetching/synthesising prompts.
//!
//! # How to drive it
//!
//! The shell owns the socket and one media worker that ticks every session once per ptime on
//! absolute deadlines (no per-call timer):
//!
//! ```
//! # use voxflow_media as media;
//! use media::{Codec, MediaEvent, MediaSession, SessionConfig};
//! let mut session = MediaSession::new(SessionConfig {
//!     codec: Codec::Pcmu, payload_type: 0, dtmf_payload_type: Some(101),
//!     ssrc: 0x1234_5678, initial_seq: 1000, initial_timestamp: 160_000,
//!     remote: Some("198.51.100.7:4000".parse().unwrap()), ptime_ms: 20,
//!     rtp_timeout_ms: 60_000,
//! });
//! session.play(1, media::tone::beep());
//! let mut packet = Vec::with_capacity(172); // reused for every tick
//! // every datagram from the call's RTP socket: session.handle_rtp(from, &datagram);
//! // every 20 ms:
//! if let Some(to) = session.poll_packet(&mut packet) {
//!     assert_eq!(packet.len(), 12 + 160);
//!     let _ = to; // socket.send_to(&packet, to)
//! }
//! while let Some(event) = session.poll_event() {
//!     match event {
//!         MediaEvent::Dtmf { digit, .. } => { let _ = digit; }
//!         MediaEvent::PlaybackFinished { id } | MediaEvent::PlaybackStopped { id } => { let _ = id; }
//!         _ => {}
//!     }
//! }
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod amd;
pub mod audio;
pub mod dtmf_detect;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod rtcp;
pub mod rtp;
mod session;
mod telephone_event;
pub mod tone;

pub use sdp::Codec;
pub use session::{DtmfSource, FRAME_SAMPLES, MediaEvent, MediaSession, MediaStats, SessionConfig};
pub use telephone_event::{DtmfPacket, DtmfSender, InvalidDigit};

//! voxflow's SIP core (RFC 3261), sans-IO.
//!
//! # What this crate owns
//!
//! - The message model: [`Message`], [`Request`], [`Response`], a lossless ordered [`Headers`]
//!   list, and typed values parsed on access ([`Uri`], [`NameAddr`], [`Via`], [`CSeq`],
//!   [`Method`]).
//! - The parser [`Message::parse`] (never panics, bounded: [`MAX_MESSAGE_SIZE`],
//!   [`MAX_HEADERS`], [`MAX_HEADER_LINE`]) and the printer (`to_bytes`).
//! - [`validate_request`] and [`bad_request_response`]: what to do with a request that is
//!   syntactically or semantically broken.
//! - [`StreamFramer`]: Content-Length framing of a TCP stream.
//! - [`transaction`]: the four transaction machines of RFC 3261 §17 (with the RFC 6026 fix),
//!   matching, retransmissions and timers, behind one [`TransactionLayer`].
//! - [`dialog`]: UAS and UAC dialogs ([`Dialog`]): in-dialog request construction (ACK and
//!   PRACK included), route sets, target refresh and CSeq checks.
//! - Reliable provisional responses (RFC 3262): [`RAck`], [`supports_100rel`]; the UAS side
//!   is [`TransactionLayer::respond_reliably`].
//! - [`auth`]: HTTP Digest (RFC 7616/8760) challenges and credentials, the client answer and a
//!   stateless server nonce issuer.
//! - [`registrar`]: REGISTER processing (RFC 3261 §10.3) over bindings the caller stores.
//! - [`session_timer`]: `Session-Expires`/`Min-SE` and the UAS negotiation of RFC 4028.
//!
//! # What it does not do
//!
//! No sockets, no tasks, no clock reads, no global randomness, no DNS. Time comes in as
//! [`std::time::Instant`] arguments (wall-clock seconds, `now_unix`, for nonces and
//! registrations), randomness from [`transaction::Config::seed`] or as arguments (a digest
//! `cnonce`, the nonce secret). No user or location store: [`auth`] and [`registrar`] take
//! secrets and bindings from the caller. SDP is the `sdp` crate's.
//!
//! # How to drive it
//!
//! The shell (the runtime) owns the sockets and one [`TransactionLayer`]:
//!
//! ```no_run
//! # use std::time::Instant;
//! # use voxflow_sip::{Message, TransactionLayer, Config, Peer, Event, bad_request_response};
//! # fn recv() -> (Vec<u8>, Peer) { unimplemented!() }
//! # fn send(_: Peer, _: &[u8]) {}
//! let mut layer = TransactionLayer::new(Config::default());
//! loop {
//!     let (bytes, peer) = recv(); // a datagram, or a frame from a StreamFramer
//!     let now = Instant::now();
//!     match Message::parse(&bytes) {
//!         Ok(msg) => layer.handle_message(now, peer, msg),
//!         Err(err) => {
//!             if let Some(resp) = bad_request_response(&bytes, &err) {
//!                 layer.send_stateless(peer, resp.into());
//!             }
//!         }
//!     }
//!     // ... or, when layer.poll_timeout() is reached: layer.handle_timeout(Instant::now());
//!     while let Some(t) = layer.poll_transmit() {
//!         send(t.peer, &t.data);
//!     }
//!     while let Some(event) = layer.poll_event() {
//!         match event {
//!             Event::Request { tx, request, .. } => { /* hand to the call owner; it calls layer.respond(now, tx, ..) */ }
//!             _ => {}
//!         }
//!     }
//! }
//! ```
//!
//! The layer answers what the RFC gives to transactions: `100 Trying` to a new INVITE,
//! retransmissions, `481` to an unmatched CANCEL, `200` to a matched one, `400` to requests
//! that fail [`validate_request`], `503` when [`transaction::Config::max_transactions`] is
//! reached, `400`/`481` to PRACKs that acknowledge no reliable provisional response of ours.
//! Everything else is for the transaction user (the runtime's call owners).
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
mod cseq;
pub mod dialog;
mod error;
mod framing;
mod grammar;
mod headers;
mod message;
mod method;
mod name_addr;
mod params;
pub mod registrar;
mod reliable;
pub mod session_timer;
mod status;
pub mod transaction;
mod uri;
mod validation;
mod via;

pub use cseq::CSeq;
pub use dialog::{Dialog, DialogError, DialogId, DialogState, uac_dialog_id, uas_dialog_id};
pub use error::ParseError;
pub use framing::{FrameError, StreamFramer};
pub use headers::Headers;
pub use message::{MAX_HEADER_LINE, MAX_HEADERS, MAX_MESSAGE_SIZE, Message, Request, Response};
pub use method::Method;
pub use name_addr::NameAddr;
pub use params::Params;
pub use reliable::{OPTION_TAG_100REL, RAck, requires_100rel, supports_100rel};
pub use status::reason_phrase;
pub use transaction::{
    ClientTxId, Config, Event, Peer, ReliableError, ServerTxId, TransactionLayer, Transmit,
    Transport,
};
pub use uri::{Scheme, Uri};
pub use validation::{bad_request_response, validate_request};
pub use via::{BRANCH_MAGIC_COOKIE, Via};

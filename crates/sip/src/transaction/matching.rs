//! Which transaction a message belongs to: requests to server transactions (RFC 3261 §17.2.3),
//! responses to client transactions (§17.1.3), and ACKs for 2xx to the INVITE they confirm.

use crate::{BRANCH_MAGIC_COOKIE, Method, Request, Response};

/// The identity of a server transaction, derived from the request that created it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ServerKey {
    /// §17.2.3: the branch (with the magic cookie), the sent-by, and the method (an ACK counts
    /// as the INVITE it acknowledges).
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers (no magic cookie): Call-ID, CSeq number, From tag, the top Via and the
    /// method.
    Legacy {
        call_id: String,
        cseq: u32,
        from_tag: String,
        via: String,
        method: Method,
    },
}

impl ServerKey {
    /// The key of `req`; `None` if it has no usable top Via or CSeq.
    pub(super) fn for_request(req: &Request) -> Option<ServerKey> {
        let via = req.top_via()?;
        let method = match &req.method {
            Method::Ack => Method::Invite,
            other => other.clone(),
        };
        match via.branch() {
            Some(branch) if branch.starts_with(BRANCH_MAGIC_COOKIE) => {
                let (host, port) = via.sent_by();
                Some(ServerKey::Branch {
                    branch: branch.to_owned(),
                    sent_by: format!("{}:{}", host.to_ascii_lowercase(), port.unwrap_or(0)),
                    method,
                })
            }
            _ => {
                let mut legacy_via = via.clone();
                legacy_via.params_mut().remove("received");
                legacy_via.params_mut().remove("rport");
                Some(ServerKey::Legacy {
                    call_id: req.call_id()?.to_owned(),
                    cseq: req.cseq()?.seq,
                    from_tag: req
                        .from()
                        .and_then(|f| f.tag().map(str::to_owned))
                        .unwrap_or_default(),
                    via: legacy_via.to_string(),
                    method,
                })
            }
        }
    }

    /// The same key for another method (the INVITE a CANCEL targets).
    pub(super) fn with_method(&self, method: Method) -> ServerKey {
        let mut key = self.clone();
        match &mut key {
            ServerKey::Branch { method: m, .. } | ServerKey::Legacy { method: m, .. } => {
                *m = method;
            }
        }
        key
    }
}

/// The identity of a client transaction: the branch we generated and the method (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    pub(super) branch: String,
    pub(super) method: Method,
}

impl ClientKey {
    /// The key a response matches; `None` if it has no branch or CSeq.
    pub(super) fn for_response(resp: &Response) -> Option<ClientKey> {
        let via = resp.top_via()?;
        Some(ClientKey {
            branch: via.branch()?.to_owned(),
            method: resp.cseq()?.method,
        })
    }
}

/// How an ACK for a 2xx (which has its own branch) finds its INVITE server transaction:
/// Call-ID, CSeq number and the To tag of the 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct AckKey {
    call_id: String,
    cseq: u32,
    to_tag: String,
}

impl AckKey {
    /// From the 2xx we send, or from the ACK we receive.
    pub(super) fn for_message(
        call_id: Option<&str>,
        cseq: Option<u32>,
        to_tag: Option<&str>,
    ) -> Option<AckKey> {
        Some(AckKey {
            call_id: call_id?.to_owned(),
            cseq: cseq?,
            to_tag: to_tag?.to_owned(),
        })
    }
}

/// How a PRACK (RFC 3262 §3) finds the INVITE server transaction whose reliable provisional
/// response it acknowledges: the Call-ID, the peer's tag (From tag of both) and the INVITE's
/// CSeq number from the RAck. The early dialog's To tag and the RSeq are checked after.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PrackKey {
    call_id: String,
    remote_tag: String,
    cseq: u32,
}

impl PrackKey {
    /// From a reliable provisional response we send, or from a PRACK we receive (with the
    /// CSeq number of its RAck).
    pub(super) fn new(
        call_id: Option<&str>,
        from_tag: Option<&str>,
        cseq: u32,
    ) -> Option<PrackKey> {
        Some(PrackKey {
            call_id: call_id?.to_owned(),
            remote_tag: from_tag.unwrap_or("").to_owned(),
            cseq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn request(text: &str) -> Request {
        match Message::parse(text.replace('\n', "\r\n").as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:b@example.com SIP/2.0
Via: SIP/2.0/UDP Host.Example.com:5060;branch=z9hG4bKabc
From: <sip:a@example.com>;tag=f1
To: <sip:b@example.com>
Call-ID: c1
CSeq: 7 INVITE
l: 0

";

    #[test]
    fn ack_and_cancel_match_the_invite() {
        let invite = ServerKey::for_request(&request(INVITE)).unwrap();
        let ack = request(
            &INVITE
                .replace("INVITE sip", "ACK sip")
                .replace("7 INVITE", "7 ACK"),
        );
        assert_eq!(ServerKey::for_request(&ack), Some(invite.clone()));
        let cancel = request(
            &INVITE
                .replace("INVITE sip", "CANCEL sip")
                .replace("7 INVITE", "7 CANCEL"),
        );
        let cancel = ServerKey::for_request(&cancel).unwrap();
        assert_ne!(cancel, invite);
        assert_eq!(cancel.with_method(Method::Invite), invite);
        // the host compares case-insensitively, the branch does not
        let lower = request(&INVITE.replace("Host.Example.com", "host.example.com"));
        assert_eq!(ServerKey::for_request(&lower), Some(invite.clone()));
        let other = request(&INVITE.replace("z9hG4bKabc", "z9hG4bKABC"));
        assert_ne!(ServerKey::for_request(&other), Some(invite));
    }

    #[test]
    fn legacy_branches_use_dialog_fields() {
        let legacy = request(&INVITE.replace("branch=z9hG4bKabc", "branch=1"));
        let key = ServerKey::for_request(&legacy).unwrap();
        assert!(matches!(key, ServerKey::Legacy { cseq: 7, .. }));
        let no_branch = request(&INVITE.replace(";branch=z9hG4bKabc", ""));
        assert!(matches!(
            ServerKey::for_request(&no_branch),
            Some(ServerKey::Legacy { .. })
        ));
    }
}

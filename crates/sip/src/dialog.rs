//! Dialogs (RFC 3261 §12): the state a call keeps to send and check in-dialog requests, on
//! either side.
//!
//! - UAS: a [`Dialog`] is made from the INVITE we accept ([`Dialog::uas`]).
//! - UAC: from our INVITE and a response to it with a To tag ([`Dialog::uac`]): a 1xx makes an
//!   early dialog, which the 2xx confirms ([`Dialog::handle_response`]); every 2xx with
//!   another To tag (a fork) makes a dialog of its own. The ACK of each 2xx comes from
//!   [`Dialog::create_ack`] and goes out with [`crate::TransactionLayer::send_ack`]; a reliable
//!   1xx is acknowledged with [`Dialog::create_prack`].
//!
//! Incoming in-dialog requests are found by [`uas_dialog_id`] and checked with
//! [`Dialog::handle_remote_request`]; responses to our requests are found by
//! [`uac_dialog_id`] and applied with [`Dialog::handle_response`] (target refresh). Our own
//! requests (BYE, re-INVITE, INFO ...) are built by [`Dialog::create_request`] and sent with
//! [`crate::TransactionLayer::send_request`], which adds the Via, to the host and port of
//! [`Dialog::next_hop`].

use crate::reliable::{OPTION_TAG_100REL, has_option_tag, rseq};
use crate::{CSeq, Method, NameAddr, RAck, Request, Response, Uri};

/// The identity of a dialog, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag (the To tag of requests we receive, the From tag of requests we send).
    pub local_tag: String,
    /// The peer's tag (the From tag of requests we receive, the To tag of responses we
    /// receive; empty for RFC 2543 peers).
    pub remote_tag: String,
}

/// Where a dialog stands (RFC 3261 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// Made by a provisional response; the final response has not come yet.
    Early,
    /// Made or confirmed by a 2xx (UAS dialogs start here).
    Confirmed,
}

/// Why a dialog could not be made or a request or response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// A header needed by the dialog is missing or malformed.
    #[error("missing or malformed {0}")]
    InvalidRequest(&'static str),
    /// The request's CSeq is not above the last one received (§12.2.2): answer 500.
    #[error("CSeq {got} is not above the last remote CSeq {last}")]
    CSeqOutOfOrder {
        /// The CSeq number received.
        got: u32,
        /// The last remote CSeq number.
        last: u32,
    },
    /// The request (or response) belongs to another dialog: answer 481.
    #[error("request does not belong to this dialog")]
    NotInDialog,
    /// The response cannot make a dialog: its status is not 101..=299, it has no To tag (a
    /// 1xx), or a header it needs is missing, malformed or does not match the request.
    #[error("response cannot make a dialog: missing, malformed or mismatched {0}")]
    InvalidResponse(&'static str),
}

impl DialogError {
    /// The status code to answer the request with (a response is never answered; its errors
    /// say 400 for lack of anything better).
    pub fn status(&self) -> u16 {
        match self {
            DialogError::InvalidRequest(_) | DialogError::InvalidResponse(_) => 400,
            DialogError::CSeqOutOfOrder { .. } => 500,
            DialogError::NotInDialog => 481,
        }
    }
}

/// One dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    /// Our address with our tag (the From of our requests).
    local: NameAddr,
    /// The peer's address with its tag (the To of our requests).
    remote: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    local_contact: Uri,
    /// The CSeq number of the last request we sent (0 = none yet).
    local_seq: u32,
    /// The CSeq number of the last INVITE we sent, for its ACK.
    last_invite_seq: Option<u32>,
    remote_seq: Option<u32>,
    /// The CSeq number of our INVITE and the RSeq of the last reliable provisional response
    /// to it that we PRACKed (RFC 3262 §4).
    last_rseq: Option<(u32, u32)>,
}

impl Dialog {
    /// UAS side, from the INVITE we accept and the To tag we put in our responses.
    /// `local_contact` is our Contact URI. The route set is the INVITE's Record-Route, in
    /// order; the remote target its Contact. The dialog is [`DialogState::Confirmed`].
    pub fn uas(
        invite: &Request,
        local_tag: &str,
        local_contact: &Uri,
    ) -> Result<Dialog, DialogError> {
        let call_id = invite
            .call_id()
            .ok_or(DialogError::InvalidRequest("Call-ID"))?;
        let remote = invite.from().ok_or(DialogError::InvalidRequest("From"))?;
        let mut local = invite.to().ok_or(DialogError::InvalidRequest("To"))?;
        let cseq = invite.cseq().ok_or(DialogError::InvalidRequest("CSeq"))?;
        let contact = invite
            .contact()
            .ok_or(DialogError::InvalidRequest("Contact"))?;
        let route_set = route_set(invite.headers.values("Record-Route"))
            .ok_or(DialogError::InvalidRequest("Record-Route"))?;
        local.set_tag(local_tag);
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote.tag().unwrap_or("").to_owned(),
            },
            state: DialogState::Confirmed,
            local,
            remote,
            remote_target: contact.uri().clone(),
            route_set,
            local_contact: local_contact.clone(),
            local_seq: 0,
            last_invite_seq: None,
            remote_seq: Some(cseq.seq),
            last_rseq: None,
        })
    }

    /// UAC side (§12.1.2), from our INVITE (as built, Via or not) and a response to it: a
    /// 101..=199 with a To tag makes an [`DialogState::Early`] dialog, a 2xx a confirmed one
    /// (a 2xx without To tag, from an RFC 2543 peer, gives an empty remote tag). The route
    /// set is the response's Record-Route in reverse order, the remote target its Contact
    /// (the INVITE's Request-URI if it has none), our Contact the INVITE's.
    pub fn uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let status = response.status;
        if !(101..300).contains(&status) {
            return Err(DialogError::InvalidResponse("status"));
        }
        let call_id = invite
            .call_id()
            .ok_or(DialogError::InvalidRequest("Call-ID"))?;
        let local = invite.from().ok_or(DialogError::InvalidRequest("From"))?;
        let local_tag = local.tag().ok_or(DialogError::InvalidRequest("From tag"))?;
        let cseq = invite.cseq().ok_or(DialogError::InvalidRequest("CSeq"))?;
        let local_contact = invite
            .contact()
            .ok_or(DialogError::InvalidRequest("Contact"))?;
        if response.call_id() != Some(call_id) {
            return Err(DialogError::InvalidResponse("Call-ID"));
        }
        if response.from().as_ref().and_then(|f| f.tag()) != Some(local_tag) {
            return Err(DialogError::InvalidResponse("From tag"));
        }
        if response.cseq() != Some(cseq.clone()) {
            return Err(DialogError::InvalidResponse("CSeq"));
        }
        let remote = response.to().ok_or(DialogError::InvalidResponse("To"))?;
        let remote_tag = match remote.tag() {
            Some(tag) => tag.to_owned(),
            None if status >= 200 => String::new(),
            None => return Err(DialogError::InvalidResponse("To tag")),
        };
        let mut route_set = route_set(response.headers.values("Record-Route"))
            .ok_or(DialogError::InvalidResponse("Record-Route"))?;
        route_set.reverse();
        let remote_target = response
            .contact()
            .map_or_else(|| invite.uri.clone(), |c| c.uri().clone());
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            state: if status >= 200 {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_contact: local_contact.uri().clone(),
            local,
            remote,
            remote_target,
            route_set,
            local_seq: cseq.seq,
            last_invite_seq: (cseq.method == Method::Invite).then_some(cseq.seq),
            remote_seq: None,
            last_rseq: None,
        })
    }

    /// The dialog id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Early or confirmed.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// Where in-dialog requests go (the peer's latest Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The route set, first hop first (a UAS keeps the Record-Route order, a UAC reverses it).
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// The URI whose host and port our in-dialog requests are sent to (RFC 3261 §8.1.2): the
    /// first route (in the Route header when it is a loose router, in the Request-URI when it
    /// is a strict one), or the remote target when the route set is empty. Resolving it to a
    /// [`crate::Peer`] (RFC 3263) is the shell's.
    pub fn next_hop(&self) -> &Uri {
        self.route_set
            .first()
            .map_or(&self.remote_target, NameAddr::uri)
    }

    /// Our address with our tag (the From of our requests).
    pub fn local_uri(&self) -> &NameAddr {
        &self.local
    }

    /// The peer's address with its tag (the To of our requests).
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote
    }

    /// The CSeq number of the last request we sent (0 if none).
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// The CSeq number of the last request the peer sent in this dialog.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Builds an in-dialog request (§12.2.1.1): Request-URI and Route from the remote target and
    /// route set (loose routing, or strict routing if the first route lacks `lr`), From/To with
    /// tags, Call-ID, the next local CSeq (an ACK reuses the last INVITE's, a CANCEL the last
    /// one), Max-Forwards: 70 and Contact. No Via: the transaction layer adds it.
    pub fn create_request(&mut self, method: Method) -> Request {
        let seq = match method {
            Method::Ack => self.last_invite_seq.unwrap_or(self.local_seq),
            Method::Cancel => self.local_seq,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1).max(1);
                if method == Method::Invite {
                    self.last_invite_seq = Some(self.local_seq);
                }
                self.local_seq
            }
        };
        self.build_request(method, seq)
    }

    /// The ACK for a 2xx to our INVITE with CSeq number `invite_cseq` (§13.2.2.4): built like
    /// any in-dialog request (Request-URI, Route, From, To, Call-ID, Max-Forwards, Contact)
    /// with CSeq `invite_cseq ACK`. No Via: send it with
    /// [`crate::TransactionLayer::send_ack`]. Add the SDP answer if the INVITE had no offer.
    pub fn create_ack(&self, invite_cseq: u32) -> Request {
        self.build_request(Method::Ack, invite_cseq)
    }

    /// The PRACK for a reliable provisional response (RFC 3262 §4): a 101..=199 of this
    /// dialog with `Require: 100rel` and a valid `RSeq`. `None` (send nothing) for any other
    /// response, and for a retransmission or an out-of-order one (its RSeq not one above the
    /// last PRACKed for the same INVITE). The PRACK has the next local CSeq and
    /// `RAck: <RSeq> <CSeq number> <CSeq method>`; send it with
    /// [`crate::TransactionLayer::send_request`]. Apply the response with
    /// [`Dialog::handle_response`] too.
    pub fn create_prack(&mut self, response: &Response) -> Option<Request> {
        if !(101..200).contains(&response.status)
            || !has_option_tag(&response.headers, "Require", OPTION_TAG_100REL)
            || uac_dialog_id(response).as_ref() != Some(&self.id)
        {
            return None;
        }
        let rseq = rseq(&response.headers)?;
        let cseq = response.cseq()?;
        if let Some((invite, last)) = self.last_rseq
            && invite == cseq.seq
            && Some(rseq) != last.checked_add(1)
        {
            return None;
        }
        self.last_rseq = Some((cseq.seq, rseq));
        let mut prack = self.create_request(Method::Prack);
        let rack = RAck {
            rseq,
            cseq: cseq.seq,
            method: cseq.method,
        };
        prack.headers.push("RAck", rack.to_string());
        Some(prack)
    }

    /// Applies a response to one of our requests in this dialog (§12.2.1.2, §13.2.2.4):
    /// - a 2xx to our INVITE confirms an early dialog and recomputes its route set;
    /// - a 2xx to a target refresh request (INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER), or a
    ///   1xx to the INVITE of an early dialog, replaces the remote target with its Contact.
    ///
    /// Other responses change nothing (a 481 or 408 to an in-dialog request means the dialog
    /// is over: that is the TU's call). A response with another To tag belongs to another
    /// dialog ([`DialogError::NotInDialog`]): a forked 2xx makes its own with [`Dialog::uac`].
    pub fn handle_response(&mut self, response: &Response) -> Result<(), DialogError> {
        if uac_dialog_id(response).as_ref() != Some(&self.id) {
            return Err(DialogError::NotInDialog);
        }
        let cseq = response
            .cseq()
            .ok_or(DialogError::InvalidResponse("CSeq"))?;
        let status = response.status;
        let contact = response.contact().map(|c| c.uri().clone());
        if (200..300).contains(&status) {
            if self.state == DialogState::Early && cseq.method == Method::Invite {
                self.state = DialogState::Confirmed;
                if let Some(mut routes) = route_set(response.headers.values("Record-Route")) {
                    routes.reverse();
                    self.route_set = routes;
                }
            }
            let target_refresh = matches!(
                cseq.method,
                Method::Invite
                    | Method::Update
                    | Method::Subscribe
                    | Method::Notify
                    | Method::Refer
            );
            if target_refresh && let Some(uri) = contact {
                self.remote_target = uri;
            }
        } else if (101..200).contains(&status)
            && self.state == DialogState::Early
            && cseq.method == Method::Invite
            && let Some(uri) = contact
        {
            self.remote_target = uri;
        }
        Ok(())
    }

    /// Checks an incoming in-dialog request (§12.2.2): it must belong to this dialog, and its
    /// CSeq must be above the last remote CSeq (ACK and CANCEL excepted). Records the CSeq and,
    /// for a target refresh (re-INVITE, UPDATE, SUBSCRIBE, NOTIFY, REFER) with a Contact, the
    /// new remote target.
    pub fn handle_remote_request(&mut self, req: &Request) -> Result<(), DialogError> {
        if uas_dialog_id(req).as_ref() != Some(&self.id) {
            return Err(DialogError::NotInDialog);
        }
        let cseq = req.cseq().ok_or(DialogError::InvalidRequest("CSeq"))?;
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq
            && cseq.seq <= last
        {
            return Err(DialogError::CSeqOutOfOrder {
                got: cseq.seq,
                last,
            });
        }
        self.remote_seq = Some(cseq.seq);
        let target_refresh = matches!(
            req.method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        );
        if target_refresh && let Some(contact) = req.contact() {
            self.remote_target = contact.uri().clone();
        }
        Ok(())
    }

    /// An in-dialog request with CSeq `seq` (§12.2.1.1).
    fn build_request(&self, method: Method, seq: u32) -> Request {
        let (uri, routes): (Uri, Vec<String>) = match self.route_set.split_first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some((first, _)) if first.uri().params().contains("lr") => (
                self.remote_target.clone(),
                self.route_set.iter().map(ToString::to_string).collect(),
            ),
            Some((first, rest)) => {
                // strict routing (§12.2.1.1): the first route becomes the Request-URI and the
                // remote target goes last in Route
                let mut routes: Vec<String> = rest.iter().map(ToString::to_string).collect();
                routes.push(format!("<{}>", self.remote_target));
                (strict_request_uri(first.uri()), routes)
            }
        };
        let mut req = Request::new(method.clone(), uri);
        for route in routes {
            req.headers.push("Route", route);
        }
        req.headers.push("From", self.local.to_string());
        req.headers.push("To", self.remote.to_string());
        req.headers.push("Call-ID", self.id.call_id.clone());
        req.headers.push("CSeq", CSeq { seq, method }.to_string());
        req.headers.push("Max-Forwards", "70");
        req.headers
            .push("Contact", format!("<{}>", self.local_contact));
        req
    }
}

/// The dialog an incoming request belongs to, seen from our side as UAS: local tag = To tag,
/// remote tag = From tag (empty if absent). `None` without Call-ID or To tag (not in a dialog).
pub fn uas_dialog_id(req: &Request) -> Option<DialogId> {
    let call_id = req.call_id()?;
    let to = req.to()?;
    let local_tag = to.tag()?;
    let remote_tag = req
        .from()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    Some(DialogId {
        call_id: call_id.to_owned(),
        local_tag: local_tag.to_owned(),
        remote_tag,
    })
}

/// The dialog a response to one of our requests belongs to (either side; for a UAC, the
/// dialog a response to our INVITE makes): local tag = From tag, remote tag = To tag (empty
/// if absent, as in a `100 Trying`, which makes no dialog). `None` without Call-ID or From
/// tag.
pub fn uac_dialog_id(response: &Response) -> Option<DialogId> {
    let call_id = response.call_id()?;
    let from = response.from()?;
    let local_tag = from.tag()?;
    let remote_tag = response
        .to()
        .and_then(|t| t.tag().map(str::to_owned))
        .unwrap_or_default();
    Some(DialogId {
        call_id: call_id.to_owned(),
        local_tag: local_tag.to_owned(),
        remote_tag,
    })
}

/// A route set from Route or Record-Route values, in the order given; `None` if one does
/// not parse.
fn route_set<'a>(values: impl Iterator<Item = &'a str>) -> Option<Vec<NameAddr>> {
    values.map(|v| NameAddr::parse(v).ok()).collect()
}

/// The Request-URI for a strict router (§12.2.1.1): its URI without the `method` parameter,
/// which a Request-URI may not carry (§19.1.1).
fn strict_request_uri(route: &Uri) -> Uri {
    let mut uri = route.clone();
    uri.params_mut().remove("method");
    uri
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

    const INVITE: &str = "INVITE sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-1
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Max-Forwards: 70
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:voxflow@192.0.2.10>
Call-ID: call-1@192.0.2.20
CSeq: 10 INVITE
Contact: <sip:alice@192.0.2.20:5060;transport=udp>
Content-Length: 0

";

    fn dialog() -> Dialog {
        let contact = Uri::parse("sip:voxflow@192.0.2.10:5060").unwrap();
        Dialog::uas(&request(INVITE), "b2", &contact).unwrap()
    }

    fn in_dialog(method: &str, cseq: u32) -> Request {
        request(&format!(
            "{method} sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-{cseq}
From: <sip:alice@example.com>;tag=a1
To: <sip:voxflow@192.0.2.10>;tag=b2
Call-ID: call-1@192.0.2.20
CSeq: {cseq} {method}
Contact: <sip:alice@198.51.100.1>
Content-Length: 0

"
        ))
    }

    #[test]
    fn uas_dialog_state() {
        let d = dialog();
        assert_eq!(
            d.id(),
            &DialogId {
                call_id: "call-1@192.0.2.20".into(),
                local_tag: "b2".into(),
                remote_tag: "a1".into(),
            }
        );
        assert_eq!(
            d.remote_target().to_string(),
            "sip:alice@192.0.2.20:5060;transport=udp"
        );
        assert_eq!(d.route_set().len(), 2);
        assert_eq!(d.local_uri().tag(), Some("b2"));
        assert_eq!(d.remote_uri().tag(), Some("a1"));
        assert_eq!(d.remote_seq(), Some(10));
        assert_eq!(uas_dialog_id(&in_dialog("BYE", 11)).as_ref(), Some(d.id()));
        // an initial request has no To tag, hence no dialog
        assert_eq!(uas_dialog_id(&request(INVITE)), None);
    }

    #[test]
    fn bye_construction() {
        let mut d = dialog();
        let bye = d.create_request(Method::Bye);
        assert_eq!(
            String::from_utf8(bye.to_bytes()).unwrap(),
            "BYE sip:alice@192.0.2.20:5060;transport=udp SIP/2.0\r\n\
             Route: <sip:p1.example.com;lr>\r\n\
             Route: <sip:p2.example.com;lr>\r\n\
             From: <sip:voxflow@192.0.2.10>;tag=b2\r\n\
             To: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
             Call-ID: call-1@192.0.2.20\r\n\
             CSeq: 1 BYE\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:voxflow@192.0.2.10:5060>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(d.create_request(Method::Info).cseq().unwrap().seq, 2);
        let reinvite = d.create_request(Method::Invite);
        assert_eq!(reinvite.cseq().unwrap().seq, 3);
        assert_eq!(
            d.create_request(Method::Ack).cseq(),
            Some(CSeq {
                seq: 3,
                method: Method::Ack
            })
        );
        assert_eq!(d.local_seq(), 3);
    }

    #[test]
    fn strict_route_puts_first_route_in_request_uri() {
        let text = INVITE.replace(
            "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            "Record-Route: <sip:strict.example.com>, <sip:p2.example.com;lr>",
        );
        let contact = Uri::parse("sip:voxflow@192.0.2.10").unwrap();
        let mut d = Dialog::uas(&request(&text), "b2", &contact).unwrap();
        let bye = d.create_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:strict.example.com");
        let routes: Vec<&str> = bye.headers.get_all("Route").collect();
        assert_eq!(
            routes,
            [
                "<sip:p2.example.com;lr>",
                "<sip:alice@192.0.2.20:5060;transport=udp>"
            ]
        );
    }

    #[test]
    fn no_route_set_uses_remote_target() {
        let text = INVITE.replace(
            "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\n",
            "",
        );
        let contact = Uri::parse("sip:voxflow@192.0.2.10").unwrap();
        let mut d = Dialog::uas(&request(&text), "b2", &contact).unwrap();
        let bye = d.create_request(Method::Bye);
        assert_eq!(
            bye.uri.to_string(),
            "sip:alice@192.0.2.20:5060;transport=udp"
        );
        assert!(!bye.headers.contains("Route"));
        assert!(!bye.headers.contains("Via"));
    }

    #[test]
    fn remote_cseq_must_increase() {
        let mut d = dialog();
        assert_eq!(d.handle_remote_request(&in_dialog("INFO", 11)), Ok(()));
        assert_eq!(
            d.handle_remote_request(&in_dialog("INFO", 11)),
            Err(DialogError::CSeqOutOfOrder { got: 11, last: 11 })
        );
        assert_eq!(
            d.handle_remote_request(&in_dialog("INFO", 5))
                .unwrap_err()
                .status(),
            500
        );
        // ACK and CANCEL carry the INVITE's number
        assert_eq!(d.handle_remote_request(&in_dialog("ACK", 10)), Ok(()));
        assert_eq!(d.remote_seq(), Some(11));
    }

    #[test]
    fn target_refresh_updates_remote_target() {
        let mut d = dialog();
        assert_eq!(d.handle_remote_request(&in_dialog("INFO", 11)), Ok(()));
        assert_eq!(d.remote_target().host(), "192.0.2.20");
        assert_eq!(d.handle_remote_request(&in_dialog("INVITE", 12)), Ok(()));
        assert_eq!(d.remote_target().host(), "198.51.100.1");
    }

    #[test]
    fn foreign_requests_rejected() {
        let mut d = dialog();
        let other = in_dialog("BYE", 11);
        let mut wrong_tag = other.clone();
        wrong_tag
            .headers
            .set("To", "<sip:voxflow@192.0.2.10>;tag=zz");
        let err = d.handle_remote_request(&wrong_tag).unwrap_err();
        assert_eq!((err.clone(), err.status()), (DialogError::NotInDialog, 481));
        let mut no_cseq = other;
        no_cseq.headers.remove("CSeq");
        assert_eq!(
            d.handle_remote_request(&no_cseq),
            Err(DialogError::InvalidRequest("CSeq"))
        );
    }

    #[test]
    fn uas_needs_contact_and_well_formed_record_route() {
        let contact = Uri::parse("sip:voxflow@192.0.2.10").unwrap();
        let no_contact =
            request(&INVITE.replace("Contact: <sip:alice@192.0.2.20:5060;transport=udp>\n", ""));
        assert_eq!(
            Dialog::uas(&no_contact, "b2", &contact),
            Err(DialogError::InvalidRequest("Contact"))
        );
        let bad_rr = request(&INVITE.replace("<sip:p2.example.com;lr>", "<sip:p2 bad>"));
        assert_eq!(
            Dialog::uas(&bad_rr, "b2", &contact),
            Err(DialogError::InvalidRequest("Record-Route"))
        );
    }

    // ---- UAC side ----

    /// Our INVITE (as the transaction layer sent it) and a response to it.
    const OUR_INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKus1;rport
Max-Forwards: 70
From: <sip:voxflow@192.0.2.10>;tag=v1
To: <sip:bob@example.com>
Call-ID: out-7@192.0.2.10
CSeq: 5 INVITE
Contact: <sip:voxflow@192.0.2.10:5060>
Content-Length: 0

";

    fn response(status: u16, tag: &str, extra: &str) -> Response {
        let text = format!(
            "SIP/2.0 {status} Whatever
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKus1;rport=5060
{extra}From: <sip:voxflow@192.0.2.10>;tag=v1
To: <sip:bob@example.com>;tag={tag}
Call-ID: out-7@192.0.2.10
CSeq: 5 INVITE
Content-Length: 0

"
        );
        match Message::parse(text.replace('\n', "\r\n").as_bytes()) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const RR: &str = "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>
Contact: <sip:bob@198.51.100.2:5070>
";

    #[test]
    fn uac_dialog_from_2xx() {
        let ok = response(200, "b7", RR);
        let d = Dialog::uac(&request(OUR_INVITE), &ok).unwrap();
        assert_eq!(
            d.id(),
            &DialogId {
                call_id: "out-7@192.0.2.10".into(),
                local_tag: "v1".into(),
                remote_tag: "b7".into(),
            }
        );
        assert_eq!(uac_dialog_id(&ok).as_ref(), Some(d.id()));
        assert_eq!(d.state(), DialogState::Confirmed);
        // Record-Route reversed: the proxy nearest to us first
        let routes: Vec<String> = d.route_set().iter().map(ToString::to_string).collect();
        assert_eq!(
            routes,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(d.next_hop().to_string(), "sip:p1.example.com;lr");
        assert_eq!(d.remote_target().to_string(), "sip:bob@198.51.100.2:5070");
        assert_eq!(d.local_uri().tag(), Some("v1"));
        assert_eq!(d.remote_uri().tag(), Some("b7"));
        assert_eq!((d.local_seq(), d.remote_seq()), (5, None));
    }

    #[test]
    fn uac_ack_construction() {
        let ok = response(200, "b7", RR);
        let mut d = Dialog::uac(&request(OUR_INVITE), &ok).unwrap();
        let ack = d.create_ack(5);
        assert_eq!(
            String::from_utf8(ack.to_bytes()).unwrap(),
            "ACK sip:bob@198.51.100.2:5070 SIP/2.0\r\n\
             Route: <sip:p1.example.com;lr>\r\n\
             Route: <sip:p2.example.com;lr>\r\n\
             From: <sip:voxflow@192.0.2.10>;tag=v1\r\n\
             To: <sip:bob@example.com>;tag=b7\r\n\
             Call-ID: out-7@192.0.2.10\r\n\
             CSeq: 5 ACK\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:voxflow@192.0.2.10:5060>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // the ACK does not use up a CSeq number; the next request does
        assert_eq!(d.local_seq(), 5);
        assert_eq!(d.create_request(Method::Bye).cseq().unwrap().seq, 6);
        assert_eq!(d.create_request(Method::Ack).cseq().unwrap().seq, 5);
    }

    #[test]
    fn uac_strict_router_first() {
        // reversed, the first route is a strict router (no lr)
        let ok = response(
            200,
            "b7",
            "Record-Route: <sip:p2.example.com;lr>, <sip:strict.example.com;method=INVITE>
Contact: <sip:bob@198.51.100.2>
",
        );
        let mut d = Dialog::uac(&request(OUR_INVITE), &ok).unwrap();
        assert_eq!(d.next_hop().host(), "strict.example.com");
        let bye = d.create_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:strict.example.com");
        let routes: Vec<&str> = bye.headers.get_all("Route").collect();
        assert_eq!(
            routes,
            ["<sip:p2.example.com;lr>", "<sip:bob@198.51.100.2>"]
        );
        let ack = d.create_ack(5);
        assert_eq!(ack.uri, bye.uri);
        assert_eq!(ack.headers.get_all("Route").count(), 2);
    }

    #[test]
    fn early_dialog_confirmed_by_2xx_recomputes_route_set() {
        let ringing = response(
            180,
            "b7",
            "Record-Route: <sip:p1.example.com;lr>
Contact: <sip:bob@198.51.100.2>
",
        );
        let mut d = Dialog::uac(&request(OUR_INVITE), &ringing).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.route_set().len(), 1);
        // a later 1xx of the same early dialog updates the target only
        let progress = response(183, "b7", "Contact: <sip:bob@198.51.100.3>\n");
        assert_eq!(d.handle_response(&progress), Ok(()));
        assert_eq!(d.remote_target().host(), "198.51.100.3");
        assert_eq!(d.route_set().len(), 1);
        assert_eq!(d.state(), DialogState::Early);
        // the 2xx confirms it and brings the final route set
        assert_eq!(d.handle_response(&response(200, "b7", RR)), Ok(()));
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.route_set().len(), 2);
        assert_eq!(d.remote_target().to_string(), "sip:bob@198.51.100.2:5070");
        // a 2xx with another To tag is another dialog (a fork)
        assert_eq!(
            d.handle_response(&response(200, "other", RR)),
            Err(DialogError::NotInDialog)
        );
    }

    #[test]
    fn target_refresh_from_reinvite_and_update_2xx() {
        let mut d = Dialog::uac(&request(OUR_INVITE), &response(200, "b7", RR)).unwrap();
        let reinvite = d.create_request(Method::Invite);
        let seq = reinvite.cseq().unwrap().seq;
        let refreshed = |method: &str, contact: &str| {
            let mut r = response(200, "b7", &format!("Contact: <{contact}>\n"));
            r.headers.set("CSeq", format!("{seq} {method}"));
            r
        };
        assert_eq!(
            d.handle_response(&refreshed("INVITE", "sip:bob@203.0.113.9")),
            Ok(())
        );
        assert_eq!(d.remote_target().host(), "203.0.113.9");
        assert_eq!(d.route_set().len(), 2, "route set kept");
        assert_eq!(
            d.handle_response(&refreshed("UPDATE", "sip:bob@203.0.113.10")),
            Ok(())
        );
        assert_eq!(d.remote_target().host(), "203.0.113.10");
        // not a target refresh: the Contact of a 200 to BYE or INFO is ignored
        assert_eq!(
            d.handle_response(&refreshed("INFO", "sip:bob@203.0.113.11")),
            Ok(())
        );
        assert_eq!(d.remote_target().host(), "203.0.113.10");
        // nor is a failed re-INVITE's
        let mut failed = refreshed("INVITE", "sip:bob@203.0.113.12");
        failed.status = 488;
        assert_eq!(d.handle_response(&failed), Ok(()));
        assert_eq!(d.remote_target().host(), "203.0.113.10");
        assert_eq!(d.create_ack(seq).cseq().unwrap().seq, seq);
    }

    #[test]
    fn uac_dialog_refusals() {
        let invite = request(OUR_INVITE);
        for (response, err) in [
            (
                response(100, "b7", ""),
                DialogError::InvalidResponse("status"),
            ),
            (
                response(486, "b7", ""),
                DialogError::InvalidResponse("status"),
            ),
            (
                response(180, "", "").clone_without_to_tag(),
                DialogError::InvalidResponse("To tag"),
            ),
            (
                response(200, "b7", "Record-Route: <sip:bad uri>\n"),
                DialogError::InvalidResponse("Record-Route"),
            ),
        ] {
            assert_eq!(Dialog::uac(&invite, &response), Err(err));
        }
        let mut wrong_cseq = response(200, "b7", "");
        wrong_cseq.headers.set("CSeq", "4 INVITE");
        assert_eq!(
            Dialog::uac(&invite, &wrong_cseq),
            Err(DialogError::InvalidResponse("CSeq"))
        );
        let mut wrong_call = response(200, "b7", "");
        wrong_call.headers.set("Call-ID", "x");
        assert_eq!(
            Dialog::uac(&invite, &wrong_call),
            Err(DialogError::InvalidResponse("Call-ID"))
        );
        let no_contact =
            request(&OUR_INVITE.replace("Contact: <sip:voxflow@192.0.2.10:5060>\n", ""));
        assert_eq!(
            Dialog::uac(&no_contact, &response(200, "b7", "")),
            Err(DialogError::InvalidRequest("Contact"))
        );
        // an RFC 2543 2xx without To tag still makes a dialog; no Contact: the Request-URI
        let d = Dialog::uac(&invite, &response(200, "", "").clone_without_to_tag()).unwrap();
        assert_eq!(d.id().remote_tag, "");
        assert_eq!(d.remote_target().to_string(), "sip:bob@example.com");
        assert_eq!(d.next_hop().to_string(), "sip:bob@example.com");
    }

    #[test]
    fn prack_only_for_new_in_order_reliable_provisionals() {
        let reliable = |rseq: u32| {
            response(
                183,
                "b7",
                &format!("Require: 100rel\nRSeq: {rseq}\nContact: <sip:bob@198.51.100.2>\n"),
            )
        };
        let mut d = Dialog::uac(&request(OUR_INVITE), &reliable(10)).unwrap();
        let prack = d.create_prack(&reliable(10)).unwrap();
        assert_eq!(
            String::from_utf8(prack.to_bytes()).unwrap(),
            "PRACK sip:bob@198.51.100.2 SIP/2.0\r\n\
             From: <sip:voxflow@192.0.2.10>;tag=v1\r\n\
             To: <sip:bob@example.com>;tag=b7\r\n\
             Call-ID: out-7@192.0.2.10\r\n\
             CSeq: 6 PRACK\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:voxflow@192.0.2.10:5060>\r\n\
             RAck: 10 5 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        // a retransmission, a gap: nothing; the next in order: a PRACK
        assert_eq!(d.create_prack(&reliable(10)), None);
        assert_eq!(d.create_prack(&reliable(12)), None);
        assert!(d.create_prack(&reliable(11)).is_some());
        // not reliable, another dialog, a bad RSeq, a final response: nothing
        assert_eq!(d.create_prack(&response(180, "b7", "")), None);
        assert_eq!(
            d.create_prack(&response(180, "zz", "Require: 100rel\nRSeq: 12\n")),
            None
        );
        assert_eq!(
            d.create_prack(&response(180, "b7", "Require: 100rel\nRSeq: 0\n")),
            None
        );
        assert_eq!(
            d.create_prack(&response(200, "b7", "Require: 100rel\nRSeq: 12\n")),
            None
        );
        assert_eq!(d.local_seq(), 7);
    }

    #[test]
    fn uas_dialog_next_hop_and_response_target_refresh() {
        let mut d = dialog();
        assert_eq!(d.next_hop().host(), "p1.example.com");
        assert_eq!(d.state(), DialogState::Confirmed);
        // our re-INVITE in a UAS dialog: its 2xx refreshes the target too
        let reinvite = d.create_request(Method::Invite);
        let mut ok = Response::for_request(&reinvite, 200);
        ok.headers.push("Contact", "<sip:alice@203.0.113.5>");
        assert_eq!(uac_dialog_id(&ok).as_ref(), Some(d.id()));
        assert_eq!(d.handle_response(&ok), Ok(()));
        assert_eq!(d.remote_target().host(), "203.0.113.5");
        let no_route = INVITE.replace(
            "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\n",
            "",
        );
        let contact = Uri::parse("sip:voxflow@192.0.2.10").unwrap();
        let d = Dialog::uas(&request(&no_route), "b2", &contact).unwrap();
        assert_eq!(d.next_hop(), d.remote_target());
    }

    trait WithoutToTag {
        fn clone_without_to_tag(&self) -> Response;
    }

    impl WithoutToTag for Response {
        fn clone_without_to_tag(&self) -> Response {
            let mut r = self.clone();
            r.headers.set("To", "<sip:bob@example.com>");
            r
        }
    }
}

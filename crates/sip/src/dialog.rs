//! Dialogs (RFC 3261 §12), UAS side: the state a call keeps to send and check in-dialog
//! requests.
//!
//! A [`Dialog`] is made from the INVITE we accept ([`Dialog::uas`]); incoming in-dialog
//! requests are found by [`uas_dialog_id`] and checked with
//! [`Dialog::handle_remote_request`]; our own (BYE, re-INVITE, INFO ...) are built by
//! [`Dialog::create_request`] and sent with [`crate::TransactionLayer::send_request`], which adds
//! the Via.

use crate::{CSeq, Method, NameAddr, Request, Uri};

/// The identity of a dialog, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag (the To tag of requests we receive).
    pub local_tag: String,
    /// The peer's tag (the From tag of requests we receive; empty for RFC 2543 peers).
    pub remote_tag: String,
}

/// Why a dialog could not be made or a request was refused.
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
    /// The request belongs to another dialog: answer 481.
    #[error("request does not belong to this dialog")]
    NotInDialog,
}

impl DialogError {
    /// The status code to answer the request with.
    pub fn status(&self) -> u16 {
        match self {
            DialogError::InvalidRequest(_) => 400,
            DialogError::CSeqOutOfOrder { .. } => 500,
            DialogError::NotInDialog => 481,
        }
    }
}

/// One dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    /// Our address with our tag (the To of the INVITE).
    local: NameAddr,
    /// The peer's address with its tag (the From of the INVITE).
    remote: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    local_contact: Uri,
    /// The CSeq number of the last request we sent (0 = none yet).
    local_seq: u32,
    /// The CSeq number of the last INVITE we sent, for its ACK.
    last_invite_seq: Option<u32>,
    remote_seq: Option<u32>,
}

impl Dialog {
    /// UAS side, from the INVITE we accept and the To tag we put in our responses.
    /// `local_contact` is our Contact URI. The route set is the INVITE's Record-Route, in
    /// order; the remote target its Contact.
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
        let route_set = invite
            .headers
            .values("Record-Route")
            .map(|v| NameAddr::parse(v).map_err(|_| DialogError::InvalidRequest("Record-Route")))
            .collect::<Result<Vec<_>, _>>()?;
        local.set_tag(local_tag);
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote.tag().unwrap_or("").to_owned(),
            },
            local,
            remote,
            remote_target: contact.uri().clone(),
            route_set,
            local_contact: local_contact.clone(),
            local_seq: 0,
            last_invite_seq: None,
            remote_seq: Some(cseq.seq),
        })
    }

    /// The dialog id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Where in-dialog requests go (the peer's latest Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The route set (Record-Route of the INVITE, in order).
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
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
                (first.uri().clone(), routes)
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
}

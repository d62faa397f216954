//! The header section: an ordered, lossless list of `(name, value)` fields (RFC 3261 §7.3), with
//! case-insensitive lookup that understands the compact forms (§7.3.3), and typed accessors.

use crate::grammar::split_list;
use crate::{CSeq, NameAddr, Via};

/// Header fields in the order received. Names keep their spelling (`v` stays `v`); values are
/// stored unfolded and trimmed. Lookups are case-insensitive and treat a compact form and its
/// long name as the same header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

/// Compact forms (RFC 3261 §7.3.3 and the extensions registered by IANA).
const COMPACT_FORMS: [(&str, &str); 15] = [
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("f", "From"),
    ("t", "To"),
    ("v", "Via"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
    ("b", "Referred-By"),
];

/// The long name of `name` if it is a compact form, else `name` itself.
pub(crate) fn long_name(name: &str) -> &str {
    if name.len() == 1 {
        for (short, long) in COMPACT_FORMS {
            if short.eq_ignore_ascii_case(name) {
                return long;
            }
        }
    }
    name
}

/// Whether two header names denote the same header.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

impl Headers {
    /// An empty header section.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// The values of every field named `name`, in order (one per header line; a line may hold
    /// a comma-separated list, see [`Headers::values`]).
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every element of the comma-separated lists of `name` across all its lines (for Via,
    /// Contact, Route, Record-Route, Allow, Supported ...; not for headers whose values contain
    /// commas, such as Date or WWW-Authenticate). A line with an unterminated quoted string
    /// yields itself whole.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.get_all(name)
            .flat_map(|v| split_list(v).unwrap_or_else(|| vec![v]))
            .filter(|v| !v.is_empty())
    }

    /// Whether a field named `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Inserts a field before all others (a new top Via).
    pub fn prepend(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.insert(0, (name.into(), value.into()));
    }

    /// Replaces every field named `name` by one field, at the position of the first (or at
    /// the end if there was none).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter().position(|(n, _)| same_name(n, &name)) {
            Some(i) => {
                let mut seen = 0usize;
                self.fields.retain(|(n, _)| {
                    let keep = !same_name(n, &name) || seen == 0;
                    if same_name(n, &name) {
                        seen += 1;
                    }
                    keep
                });
                if let Some(field) = self.fields.get_mut(i) {
                    *field = (name, value);
                }
            }
            None => self.fields.push((name, value)),
        }
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !same_name(n, name));
    }

    /// All fields in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of fields (header lines).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of the first field named `name`, to change it in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut String> {
        self.fields
            .iter_mut()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v)
    }

    // ---- typed accessors (None when absent or malformed) ----

    /// Call-ID, trimmed; `None` if absent or empty.
    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID").filter(|v| !v.is_empty())
    }

    /// CSeq.
    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(self.get("CSeq")?).ok()
    }

    /// From.
    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get("From")?).ok()
    }

    /// To.
    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.get("To")?).ok()
    }

    /// Every Via value, top first, across lines and comma-separated lists. Values that do
    /// not parse are skipped ([`crate::validate_request`] rejects such requests).
    pub fn vias(&self) -> Vec<Via> {
        self.values("Via")
            .filter_map(|v| Via::parse(v).ok())
            .collect()
    }

    /// The topmost Via value; `None` if absent or malformed.
    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.values("Via").next()?).ok()
    }

    /// The first Contact address (`None` for `*`, absent or malformed).
    pub fn contact(&self) -> Option<NameAddr> {
        NameAddr::parse(self.values("Contact").next()?).ok()
    }

    /// Every Contact address that parses.
    pub fn contacts(&self) -> Vec<NameAddr> {
        self.name_addrs("Contact")
    }

    /// Every Record-Route entry that parses, in order.
    pub fn record_routes(&self) -> Vec<NameAddr> {
        self.name_addrs("Record-Route")
    }

    /// Every Route entry that parses, in order.
    pub fn routes(&self) -> Vec<NameAddr> {
        self.name_addrs("Route")
    }

    /// Max-Forwards.
    pub fn max_forwards(&self) -> Option<u32> {
        let v = self.get("Max-Forwards")?;
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }

    /// Content-Type, as written.
    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
    }

    /// Expires (delta-seconds).
    pub fn expires(&self) -> Option<u32> {
        self.get("Expires")?.parse().ok()
    }

    fn name_addrs(&self, name: &str) -> Vec<NameAddr> {
        self.values(name)
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    fn sample() -> Headers {
        let mut h = Headers::new();
        h.push(
            "v",
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2",
        );
        h.push("Via", "SIP/2.0/UDP c.example.com:5070;branch=z9hG4bK3");
        h.push("f", "\"Alice\" <sip:alice@example.com>;tag=1928301774");
        h.push("TO", "<sip:bob@example.com>");
        h.push("i", "a84b4c76e66710@pc33.example.com");
        h.push("cseq", "314159 INVITE");
        h.push(
            "m",
            "<sip:alice@pc33.example.com>, <sip:alice@192.0.2.4>;q=0.1",
        );
        h.push("Max-Forwards", "70");
        h.push("c", "application/sdp");
        h
    }

    #[test]
    fn compact_forms_and_case_insensitivity() {
        let h = sample();
        assert_eq!(h.get("call-id"), Some("a84b4c76e66710@pc33.example.com"));
        assert_eq!(h.get("I"), h.get("Call-ID"));
        assert_eq!(h.get("Content-Type"), Some("application/sdp"));
        assert_eq!(h.get("to"), Some("<sip:bob@example.com>"));
        assert_eq!(h.get_all("via").count(), 2);
        assert_eq!(h.values("V").count(), 3);
        assert_eq!(h.get("Subject"), None);
    }

    #[test]
    fn typed_accessors() {
        let h = sample();
        assert_eq!(h.call_id(), Some("a84b4c76e66710@pc33.example.com"));
        assert_eq!(
            h.cseq(),
            Some(CSeq {
                seq: 314159,
                method: Method::Invite
            })
        );
        assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(h.to().unwrap().tag(), None);
        let vias = h.vias();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[1].transport(), "TCP");
        assert_eq!(vias[2].sent_by(), ("c.example.com", Some(5070)));
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(h.contact().unwrap().uri().host(), "pc33.example.com");
        assert_eq!(h.contacts().len(), 2);
        assert_eq!(h.max_forwards(), Some(70));
        assert_eq!(h.content_type(), Some("application/sdp"));
    }

    #[test]
    fn malformed_typed_values_are_none() {
        let mut h = Headers::new();
        h.push("CSeq", "x INVITE");
        h.push("From", "Bell, Alexander <sip:a@b>");
        h.push("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,");
        h.push("Max-Forwards", "-1");
        h.push("Contact", "*");
        h.push("Call-ID", "");
        assert_eq!(h.cseq(), None);
        assert_eq!(h.from(), None);
        assert_eq!(h.to(), None);
        assert_eq!(h.top_via(), None);
        assert!(h.vias().is_empty());
        assert_eq!(h.max_forwards(), None);
        assert_eq!(h.contact(), None);
        assert_eq!(h.call_id(), None);
    }

    #[test]
    fn set_replaces_all_in_place_and_remove() {
        let mut h = sample();
        h.set("Via", "SIP/2.0/UDP only.example.com");
        assert_eq!(
            h.get_all("Via").collect::<Vec<_>>(),
            ["SIP/2.0/UDP only.example.com"]
        );
        assert_eq!(
            h.iter().next(),
            Some(("Via", "SIP/2.0/UDP only.example.com"))
        );
        h.set("Subject", "new");
        assert_eq!(h.iter().last(), Some(("Subject", "new")));
        h.remove("s");
        assert!(!h.contains("Subject"));
        h.prepend("Via", "SIP/2.0/TCP top.example.com");
        assert_eq!(h.top_via().unwrap().host(), "top.example.com");
        *h.get_mut("max-forwards").unwrap() = "69".into();
        assert_eq!(h.max_forwards(), Some(69));
        assert_eq!(h.len(), 9);
        assert!(!h.is_empty());
    }
}

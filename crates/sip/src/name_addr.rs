//! `name-addr` / `addr-spec` with header parameters: the value of From, To, Contact, Route,
//! Record-Route, Refer-To (RFC 3261 §20.10, §25.1).

use std::fmt;
use std::str::FromStr;

use crate::grammar::{is_lws, is_token_char, quote, trim_lws, unquote};
use crate::params::Params;
use crate::{ParseError, Uri};

/// An address: optional display name, URI, and header parameters (`tag`, `expires`, `q`, ...).
///
/// Printing always uses the `<uri>` form, which is valid wherever an addr-spec is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    display_name: Option<String>,
    uri: Uri,
    params: Params,
}

impl NameAddr {
    /// An address with no display name and no parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses `"Display" <uri>;params`, `Display <uri>;params`, `<uri>;params` or
    /// `uri;params` (in the last form every `;` starts a header parameter).
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let err = ParseError::InvalidNameAddr;
        let s = trim_lws(s);
        let (display_name, bracketed) = if s.starts_with('"') {
            let (name, rest) = unquote(s).ok_or(err.clone())?;
            (Some(name), rest.trim_start_matches(is_lws))
        } else if let Some(lt) = s.find('<') {
            let (name, rest) = s.split_at(lt);
            let name = trim_lws(name);
            if !name.chars().all(|c| is_token_char(c) || is_lws(c)) {
                return Err(err);
            }
            ((!name.is_empty()).then(|| name.to_owned()), rest)
        } else {
            // addr-spec: the URI cannot contain ',', '?' or ';' here (RFC 3261 §20)
            let end = s.find(';').unwrap_or(s.len());
            let (uri, params) = s.split_at(end);
            let uri = trim_lws(uri);
            if uri.contains([',', '?']) {
                return Err(err);
            }
            return Ok(NameAddr {
                display_name: None,
                uri: Uri::parse(uri)?,
                params: Params::parse_header(params).ok_or(err)?,
            });
        };
        let inner = bracketed.strip_prefix('<').ok_or(err.clone())?;
        let (uri, rest) = inner.split_once('>').ok_or(err.clone())?;
        Ok(NameAddr {
            display_name,
            uri: Uri::parse(uri)?,
            params: Params::parse_header(rest).ok_or(err)?,
        })
    }

    /// The display name, unquoted and unescaped.
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The `tag` parameter, if present and non-empty.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").filter(|t| !t.is_empty())
    }

    /// One header parameter (`Some("")` for a parameter without value).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// The header parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The header parameters, to change them.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }

    /// Sets the display name.
    pub fn set_display_name(&mut self, name: Option<&str>) {
        self.display_name = name.map(str::to_owned);
    }
}

impl FromStr for NameAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<NameAddr, ParseError> {
        NameAddr::parse(s)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            write!(f, "{} ", quote(name))?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> NameAddr {
        let na = NameAddr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(NameAddr::parse(&na.to_string()).unwrap(), na, "{s}");
        na
    }

    #[test]
    fn quoted_display_name_with_escapes() {
        let na = round_trip(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\n  ;\n  tag = 98asjd8"
                .replace('\n', " ")
                .as_str(),
        );
        assert_eq!(na.display_name(), Some("J Rosenberg \\\""));
        assert_eq!(na.tag(), Some("98asjd8"));
        assert_eq!(na.uri().user(), Some("jdrosen"));
        assert_eq!(
            na.to_string(),
            "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8"
        );
    }

    #[test]
    fn token_display_name_and_no_space_before_angle() {
        let na = round_trip("caller<sip:caller@example.com>;tag=323");
        assert_eq!(na.display_name(), Some("caller"));
        assert_eq!(na.tag(), Some("323"));
        let na = round_trip("Joe Bloggs <sip:joe@example.com>");
        assert_eq!(na.display_name(), Some("Joe Bloggs"));
        assert_eq!(na.tag(), None);
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = round_trip("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(na.tag(), Some("1918181833n"));
        assert!(na.uri().params().is_empty());
        let na = round_trip("<sip:user@example.com;transport=udp>;expires=60;q=0.5");
        assert_eq!(na.uri().param("transport"), Some("udp"));
        assert_eq!(na.param("expires"), Some("60"));
        assert_eq!(na.param("Q"), Some("0.5"));
    }

    #[test]
    fn set_tag_prints() {
        let mut na = NameAddr::parse("<sip:bob@example.com>").unwrap();
        na.set_tag("abc");
        na.set_display_name(Some("Bob \"B\""));
        assert_eq!(
            na.to_string(),
            "\"Bob \\\"B\\\"\" <sip:bob@example.com>;tag=abc"
        );
        assert_eq!(round_trip(&na.to_string()), na);
    }

    /// Found by fuzzing: an addr-spec of an unknown scheme ending in `>` parsed, and printed as
    /// `<...>>`, which does not parse.
    #[test]
    fn addr_spec_of_other_scheme_always_reprints() {
        assert!(NameAddr::parse("yip:voxflow@127.0.0.1:5070>").is_err());
        assert!(NameAddr::parse("x:a\"b").is_err());
        let na = round_trip("urn:service:sos;q=0.5");
        assert_eq!(na.to_string(), "<urn:service:sos>;q=0.5");
    }

    #[test]
    fn malformed_addresses_rejected() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
            "<sip:user@example.com",
            "< sip:user@example.com >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "\"x\" sip:joe@example.org",
            "",
            "*",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
        // a flag `tag` parses but is not a tag
        assert_eq!(
            NameAddr::parse("<sip:joe@example.org>;tag").unwrap().tag(),
            None
        );
    }
}

//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966); any other scheme is kept opaque.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;
use crate::params::Params;

/// The scheme of a [`Uri`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme (lower-cased); the rest of the URI is opaque.
    Other(String),
}

/// A URI as found in a Request-URI, name-addr or Route.
///
/// For `sip:`/`sips:` every part is parsed. For `tel:` the number is [`Uri::user`] and the host is
/// empty. For other schemes the scheme-specific part is kept whole as [`Uri::host`]. Parts are
/// kept as written (percent-escapes included) so that printing reproduces the input, apart from
/// the scheme which is printed in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    scheme: Scheme,
    user: Option<String>,
    password: Option<String>,
    host: String,
    port: Option<u16>,
    params: Params,
    headers: Vec<(String, String)>,
}

impl Uri {
    /// Parses a URI. White space, control and non-ASCII characters are rejected.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let err = ParseError::InvalidUri;
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(err);
        }
        let (scheme, rest) = s.split_once(':').ok_or(err.clone())?;
        let mut scheme_chars = scheme.chars();
        let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(err);
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            other => Scheme::Other(other.to_owned()),
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(scheme, rest).ok_or(err),
            Scheme::Tel => parse_tel(rest).ok_or(err),
            Scheme::Other(_) if !rest.is_empty() && rest.chars().all(is_opaque_char) => Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: rest.to_owned(),
                port: None,
                params: Params::new(),
                headers: Vec::new(),
            }),
            Scheme::Other(_) => Err(err),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Whether this is a `sip:` or `sips:` URI.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The user part as written (percent-escapes kept), or the number of a `tel:` URI.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The user part with percent-escapes decoded (invalid UTF-8 replaced).
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }

    /// The password of `user:password@host` (discouraged by RFC 3261 but legal).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The host as written (IPv6 references keep their brackets); empty for `tel:`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The URI parameters, to change them.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// One URI parameter (`Some("")` for a flag such as `lr`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// The `?name=value&...` headers, as written.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Replaces the user part (written as given; escape it yourself if needed).
    pub fn set_user(&mut self, user: Option<&str>) {
        self.user = user.map(str::to_owned);
    }

    /// Replaces the port.
    pub fn set_port(&mut self, port: Option<u16>) {
        self.port = port;
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Sip => f.write_str("sip:")?,
            Scheme::Sips => f.write_str("sips:")?,
            Scheme::Tel => {
                write!(f, "tel:{}", self.user.as_deref().unwrap_or(""))?;
                return write!(f, "{}", self.params);
            }
            Scheme::Other(s) => return write!(f, "{s}:{}", self.host),
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

fn parse_sip(scheme: Scheme, rest: &str) -> Option<Uri> {
    // userinfo cannot contain an unescaped '@', so the first one ends it
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if user.is_empty() || !user.chars().all(is_user_char) {
                return None;
            }
            if let Some(p) = password
                && !p.chars().all(is_password_char)
            {
                return None;
            }
            (Some(user.to_owned()), password.map(str::to_owned))
        }
        None => (None, None),
    };

    let host_len = if hostpart.starts_with('[') {
        let end = hostpart.find(']')?;
        hostpart.get(1..end)?.parse::<std::net::Ipv6Addr>().ok()?;
        end + 1
    } else {
        let len = hostpart.find([':', ';', '?']).unwrap_or(hostpart.len());
        let host = hostpart.get(..len)?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return None;
        }
        len
    };
    let (host, mut rest) = hostpart.split_at(host_len);

    let mut port = None;
    if let Some(after) = rest.strip_prefix(':') {
        let len = after.find([';', '?']).unwrap_or(after.len());
        let (digits, after) = after.split_at(len);
        if digits.is_empty() || digits.len() > 5 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        port = Some(digits.parse::<u16>().ok()?);
        rest = after;
    }

    let (param_part, header_part) = match rest.split_once('?') {
        Some((p, h)) => (p, Some(h)),
        None => (rest, None),
    };
    let params = Params::parse_uri(param_part)?;
    let mut headers = Vec::new();
    if let Some(h) = header_part {
        for item in h.split('&') {
            let (name, value) = item.split_once('=')?;
            if name.is_empty()
                || !name.chars().all(is_header_char)
                || !value.chars().all(is_header_char)
            {
                return None;
            }
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Some(Uri {
        scheme,
        user,
        password,
        host: host.to_owned(),
        port,
        params,
        headers,
    })
}

fn parse_tel(rest: &str) -> Option<Uri> {
    let (number, params) = match rest.find(';') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let number_ok = !number.is_empty()
        && number.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '(' | ')' | '*' | '#' | '%')
        });
    if !number_ok {
        return None;
    }
    Some(Uri {
        scheme: Scheme::Tel,
        user: Some(number.to_owned()),
        password: None,
        host: String::new(),
        port: None,
        params: Params::parse_uri(params)?,
        headers: Vec::new(),
    })
}

/// `unreserved` of RFC 3261 §25.1 plus `%` for escapes.
fn is_unreserved_or_escape(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '!' | '~' | '*' | '\'' | '(' | ')' | '%'
        )
}

fn is_user_char(c: char) -> bool {
    is_unreserved_or_escape(c) || matches!(c, '&' | '=' | '+' | '$' | ',' | ';' | '?' | '/')
}

fn is_password_char(c: char) -> bool {
    is_unreserved_or_escape(c) || matches!(c, '&' | '=' | '+' | '$' | ',')
}

fn is_header_char(c: char) -> bool {
    is_unreserved_or_escape(c) || matches!(c, '[' | ']' | '/' | '?' | ':' | '+' | '$')
}

/// A character of the opaque part of a URI of another scheme: anything visible but the
/// delimiters and "unwise" characters of RFC 2396 §2.4.3 (`[`, `]`, `#` and `%` allowed), so
/// that the URI can always be printed inside `<...>` and read back.
fn is_opaque_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> Uri {
        let uri = Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(uri.to_string(), s);
        assert_eq!(Uri::parse(&uri.to_string()).unwrap(), uri);
        uri
    }

    #[test]
    fn sip_uri_parts() {
        let uri = round_trip("sip:alice:secret@example.com:5070;transport=tcp;lr?subject=hi&x=");
        assert_eq!(uri.scheme(), &Scheme::Sip);
        assert_eq!(uri.user(), Some("alice"));
        assert_eq!(uri.password(), Some("secret"));
        assert_eq!(uri.host(), "example.com");
        assert_eq!(uri.port(), Some(5070));
        assert_eq!(uri.param("transport"), Some("tcp"));
        assert_eq!(uri.param("lr"), Some(""));
        assert_eq!(
            uri.headers().collect::<Vec<_>>(),
            [("subject", "hi"), ("x", "")]
        );
    }

    #[test]
    fn hosts_ipv4_ipv6_and_names() {
        assert_eq!(round_trip("sip:192.0.2.1").host(), "192.0.2.1");
        let v6 = round_trip("sips:[2001:db8::10]:5061");
        assert_eq!(v6.host(), "[2001:db8::10]");
        assert_eq!(v6.port(), Some(5061));
        assert_eq!(
            round_trip("sip:user@host_name.example").user(),
            Some("user")
        );
    }

    #[test]
    fn escapes_kept_raw_and_decoded_on_demand() {
        let uri = round_trip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(uri.user(), Some("sips%3Auser%40example.com"));
        assert_eq!(uri.user_decoded().as_deref(), Some("sips:user@example.com"));
        let nul = round_trip("sip:null-%00-null@example.com");
        assert_eq!(nul.user_decoded().as_deref(), Some("null-\0-null"));
    }

    #[test]
    fn unusual_user_parts() {
        // ';' in the user part belongs to the user, not to the parameters
        let uri = round_trip("sip:user;par=u%40example.net@example.com");
        assert_eq!(uri.user(), Some("user;par=u%40example.net"));
        assert!(uri.params().is_empty());
        let odd = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let uri = round_trip(odd);
        assert_eq!(
            uri.user(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(uri.host(), "example.com");
    }

    #[test]
    fn tel_and_other_schemes() {
        let tel = round_trip("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(tel.user(), Some("+1-201-555-0123"));
        assert_eq!(tel.host(), "");
        let other = round_trip("nobodyknowsthisscheme:totallyopaquecontent");
        assert_eq!(
            other.scheme(),
            &Scheme::Other("nobodyknowsthisscheme".into())
        );
        assert!(!other.is_sip());
        assert_eq!(
            Uri::parse("SIP:Bob@Example.COM").unwrap().to_string(),
            "sip:Bob@Example.COM"
        );
    }

    #[test]
    fn malformed_uris_rejected() {
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "sip:user@example.com ",
            "sip:user @example.com",
            "<sip:user@example.com>",
            "sip:host:99999",
            "sip:host:",
            "sip:host:5x",
            "sip:[::1",
            "sip:[not-v6]",
            "sip:host;;lr",
            "sip:host?novalue",
            "sip:host;a=b c",
            "sip:hést",
            "1sip:host",
            "tel:",
            "other:",
            "other:a>b",
            "urn:<x>",
            "x:\"quoted\"",
            "nocolon",
        ] {
            assert_eq!(Uri::parse(bad), Err(ParseError::InvalidUri), "{bad:?}");
        }
    }
}

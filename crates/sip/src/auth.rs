//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).
//!
//! - [`Challenge`]: the value of `WWW-Authenticate` / `Proxy-Authenticate`;
//!   [`Credentials`]: the value of `Authorization` / `Proxy-Authorization`. Both parse
//!   tolerantly (case-insensitive names, quoted or bare values, extra spaces and commas,
//!   unknown parameters ignored) and print canonically.
//! - Client side: [`respond`] answers a challenge; [`select_challenge`] picks the strongest
//!   challenge we support among several (RFC 8760 §2.4).
//! - Server side: [`NonceIssuer`] makes stateless nonces (a timestamp and a MAC keyed by a
//!   secret) and verifies credentials in constant time.
//!
//! Algorithms: MD5, SHA-256, SHA-512-256 and their `-sess` variants; `qop=auth` and the
//! legacy RFC 2069 form without `qop`. Not supported: `qop=auth-int`, `userhash`, and the
//! RFC 7616 `username*` form (such credentials are rejected, not misread).
//!
//! Because the issuer keeps no state, it cannot detect a replayed `nc`: a captured
//! `Authorization` stays usable for the same method and URI until the nonce is stale. Keep the
//! nonce lifetime short (the default is [`DEFAULT_NONCE_LIFETIME`]).

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use crate::Method;
use crate::grammar::{is_lws, is_token_char, quote, unquote};

/// How long a nonce from [`NonceIssuer::challenge`] is valid, in seconds, unless configured.
pub const DEFAULT_NONCE_LIFETIME: u64 = 300;

/// A digest algorithm (RFC 7616 §6.1, RFC 8760).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`
    Md5Sess,
    /// `SHA-256`
    Sha256,
    /// `SHA-256-sess`
    Sha256Sess,
    /// `SHA-512-256`
    Sha512_256,
    /// `SHA-512-256-sess`
    Sha512_256Sess,
    /// Any other algorithm token, as written; never computed.
    Other(String),
}

/// A quality of protection (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authentication only (the one we compute).
    Auth,
    /// `auth-int`: authentication with integrity of the body (not computed).
    AuthInt,
    /// Any other token, as written.
    Other(String),
}

/// A Digest challenge: the value of `WWW-Authenticate` or `Proxy-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space (`realm`).
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Opaque data the client returns unchanged.
    pub opaque: Option<String>,
    /// The algorithm; `None` means MD5 (see [`Challenge::algorithm`]).
    pub algorithm: Option<Algorithm>,
    /// The qop values offered; empty for a legacy (RFC 2069) challenge.
    pub qop: Vec<Qop>,
    /// Whether the previous request failed only because its nonce was stale.
    pub stale: bool,
    /// The `domain` list, as written (space-separated URIs).
    pub domain: Option<String>,
}

/// Digest credentials: the value of `Authorization` or `Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The realm of the challenge answered.
    pub realm: String,
    /// The nonce of the challenge answered.
    pub nonce: String,
    /// The `uri` (digest-uri) the response was computed over.
    pub uri: String,
    /// The response digest, in hex.
    pub response: String,
    /// The algorithm; `None` means MD5 (see [`Credentials::algorithm`]).
    pub algorithm: Option<Algorithm>,
    /// The client nonce (required with `qop` and with `-sess` algorithms).
    pub cnonce: Option<String>,
    /// The nonce count (printed as 8 hex digits; required with `qop`).
    pub nc: Option<u32>,
    /// The qop chosen; `None` for the legacy form.
    pub qop: Option<Qop>,
    /// The challenge's `opaque`, returned unchanged.
    pub opaque: Option<String>,
}

/// The secret a server checks credentials against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PasswordOrHa1<'a> {
    /// The clear-text password.
    Password(&'a str),
    /// `H(username:realm:password)` in hex, for the algorithm of the credentials (see [`ha1`]).
    Ha1(&'a str),
}

/// Why a digest header could not be used, or why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header is not of the `Digest` scheme.
    #[error("not a Digest header")]
    UnsupportedScheme,
    /// The header value is malformed or lacks a required parameter.
    #[error("malformed digest header: {0}")]
    Malformed(&'static str),
    /// The algorithm is not one we compute.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// The qop is not `auth`, or it is missing where we require it.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// The credentials are for another realm.
    #[error("credentials for another realm")]
    WrongRealm,
    /// The nonce was not issued by us (forged, tampered or for another algorithm or realm).
    #[error("unknown nonce")]
    BadNonce,
    /// The response digest is wrong (wrong password or user name, or altered parameters).
    #[error("wrong digest response")]
    BadResponse,
    /// The response is right but the nonce has expired: challenge again with `stale=true`.
    #[error("stale nonce")]
    Stale,
}

/// Answers `challenge` (RFC 7616 §3.4): computes the response for `method` and `digest_uri`
/// (the Request-URI as written) with `qop=auth` when offered, else the legacy form.
/// `cnonce` is the client's fresh random nonce; `nc` counts the requests made with this nonce,
/// from 1.
///
/// Fails with [`AuthError::UnsupportedAlgorithm`] for an algorithm we cannot compute and
/// [`AuthError::UnsupportedQop`] when the challenge offers qop values but not `auth`.
pub fn respond(
    challenge: &Challenge,
    method: &Method,
    digest_uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<Credentials, AuthError> {
    let algorithm = challenge.algorithm();
    let (hash, sess) = hash_of(&algorithm).ok_or(AuthError::UnsupportedAlgorithm)?;
    let qop = if challenge.qop.is_empty() {
        None
    } else if challenge.qop.contains(&Qop::Auth) {
        Some(Qop::Auth)
    } else {
        return Err(AuthError::UnsupportedQop);
    };
    // RFC 2617 §3.2.2: cnonce is sent with qop and with the -sess algorithms.
    let cnonce = (qop.is_some() || sess).then(|| cnonce.to_owned());
    let nc = qop.is_some().then_some(nc);
    let ha1 = hash.hex(format!("{username}:{}:{password}", challenge.realm).as_bytes());
    let response = compute_response(
        hash,
        sess,
        &ha1,
        &ResponseInputs {
            nonce: &challenge.nonce,
            cnonce: cnonce.as_deref(),
            nc,
            qop: qop.as_ref(),
            method,
            uri: digest_uri,
        },
    );
    Ok(Credentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: digest_uri.to_owned(),
        response,
        algorithm: challenge.algorithm.clone(),
        cnonce,
        nc,
        qop,
        opaque: challenge.opaque.clone(),
    })
}

/// Of several challenge values (the `WWW-Authenticate` or `Proxy-Authenticate` lines of one
/// response), the one to answer: for the first realm, the strongest algorithm we can compute
/// (SHA-512-256, then SHA-256, then MD5) whose qop we support. Values that do not parse are
/// skipped.
pub fn select_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let usable: Vec<Challenge> = values
        .into_iter()
        .filter_map(|v| Challenge::parse(v).ok())
        .filter(|c| hash_of(&c.algorithm()).is_some())
        .filter(|c| c.qop.is_empty() || c.qop.contains(&Qop::Auth))
        .collect();
    let realm = usable.first()?.realm.clone();
    usable
        .into_iter()
        .filter(|c| c.realm == realm)
        .max_by_key(|c| hash_of(&c.algorithm()).map(|(h, _)| h.strength()))
}

/// `H(username:realm:password)` in hex for `algorithm` (the same for its `-sess` variant):
/// what a user store may keep instead of the password. `None` for an unsupported algorithm.
pub fn ha1(algorithm: &Algorithm, username: &str, realm: &str, password: &str) -> Option<String> {
    let (hash, _) = hash_of(algorithm)?;
    Some(hash.hex(format!("{username}:{realm}:{password}").as_bytes()))
}

/// Issues and checks stateless nonces: a nonce is the issue time and a MAC over it, the realm
/// and the algorithm, keyed by a server secret; nothing is stored per challenge.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: [u8; 32],
    lifetime: u64,
    allow_legacy: bool,
}

impl NonceIssuer {
    /// An issuer keyed by `secret` (32 random bytes, kept for as long as nonces should stay
    /// valid, e.g. the process lifetime), with nonces valid [`DEFAULT_NONCE_LIFETIME`] seconds
    /// and `qop=auth` required.
    pub fn new(secret: [u8; 32]) -> NonceIssuer {
        NonceIssuer {
            secret,
            lifetime: DEFAULT_NONCE_LIFETIME,
            allow_legacy: false,
        }
    }

    /// Sets how long a nonce stays valid, in seconds.
    #[must_use]
    pub fn with_lifetime(mut self, seconds: u64) -> NonceIssuer {
        self.lifetime = seconds;
        self
    }

    /// Whether to accept legacy (RFC 2069) credentials without `qop` (default: no).
    #[must_use]
    pub fn with_legacy_no_qop(mut self, allow: bool) -> NonceIssuer {
        self.allow_legacy = allow;
        self
    }

    /// How long a nonce stays valid, in seconds.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    /// A challenge for `realm` with a fresh nonce, offering `qop="auth"`. Set `stale` when
    /// answering credentials that failed with [`AuthError::Stale`].
    pub fn challenge(
        &self,
        realm: &str,
        algorithm: Algorithm,
        now_unix: u64,
        stale: bool,
    ) -> Challenge {
        let nonce = format!(
            "{now_unix:016x}{}",
            self.nonce_mac(now_unix, realm, &algorithm)
        );
        Challenge {
            realm: realm.to_owned(),
            nonce,
            opaque: None,
            algorithm: Some(algorithm),
            qop: vec![Qop::Auth],
            stale,
            domain: None,
        }
    }

    /// Checks `creds`, received with a `method` request, for our `realm` against the user's
    /// `secret`. Errors, in the order checked: [`AuthError::WrongRealm`],
    /// [`AuthError::UnsupportedAlgorithm`], [`AuthError::BadNonce`],
    /// [`AuthError::UnsupportedQop`] / [`AuthError::Malformed`], [`AuthError::BadResponse`],
    /// then [`AuthError::Stale`] (the response was right but the nonce is too old).
    ///
    /// The `uri` of the credentials is not compared with the Request-URI here; a proxy or
    /// registrar that wants that check compares [`Credentials::uri`] itself.
    pub fn verify(
        &self,
        creds: &Credentials,
        method: &Method,
        realm: &str,
        secret: PasswordOrHa1<'_>,
        now_unix: u64,
    ) -> Result<(), AuthError> {
        if creds.realm != realm {
            return Err(AuthError::WrongRealm);
        }
        let algorithm = creds.algorithm();
        let (hash, sess) = hash_of(&algorithm).ok_or(AuthError::UnsupportedAlgorithm)?;
        let issued = self.check_nonce(&creds.nonce, realm, &algorithm)?;
        match &creds.qop {
            Some(Qop::Auth) if creds.cnonce.is_none() => {
                return Err(AuthError::Malformed("qop without cnonce"));
            }
            Some(Qop::Auth) if creds.nc.is_none() => {
                return Err(AuthError::Malformed("qop without nc"));
            }
            Some(Qop::Auth) => {}
            Some(_) => return Err(AuthError::UnsupportedQop),
            None if !self.allow_legacy => return Err(AuthError::UnsupportedQop),
            None => {}
        }
        if sess && creds.cnonce.is_none() {
            return Err(AuthError::Malformed("-sess algorithm without cnonce"));
        }
        let ha1 = match secret {
            PasswordOrHa1::Password(password) => {
                hash.hex(format!("{}:{realm}:{password}", creds.username).as_bytes())
            }
            PasswordOrHa1::Ha1(ha1) => ha1.to_ascii_lowercase(),
        };
        let expected = compute_response(
            hash,
            sess,
            &ha1,
            &ResponseInputs {
                nonce: &creds.nonce,
                cnonce: creds.cnonce.as_deref(),
                nc: creds.nc,
                qop: creds.qop.as_ref(),
                method,
                uri: &creds.uri,
            },
        );
        let got = creds.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), got.as_bytes()) {
            return Err(AuthError::BadResponse);
        }
        if now_unix.saturating_sub(issued) > self.lifetime {
            return Err(AuthError::Stale);
        }
        Ok(())
    }

    /// The issue time of a nonce we made for `realm` and `algorithm`.
    fn check_nonce(
        &self,
        nonce: &str,
        realm: &str,
        algorithm: &Algorithm,
    ) -> Result<u64, AuthError> {
        let (time, mac) = nonce
            .split_at_checked(16)
            .filter(|(t, m)| t.bytes().all(is_lower_hex) && m.bytes().all(is_lower_hex))
            .ok_or(AuthError::BadNonce)?;
        let issued = u64::from_str_radix(time, 16).map_err(|_| AuthError::BadNonce)?;
        let expected = self.nonce_mac(issued, realm, algorithm);
        if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return Err(AuthError::BadNonce);
        }
        Ok(issued)
    }

    /// 128 bits of HMAC-SHA-256 over the issue time, realm and algorithm, in hex.
    fn nonce_mac(&self, issued: u64, realm: &str, algorithm: &Algorithm) -> String {
        let mac = hmac_sha256(
            &self.secret,
            &[
                b"voxflow digest nonce\0",
                &issued.to_be_bytes(),
                realm.as_bytes(),
                b"\0",
                algorithm.as_str().as_bytes(),
            ],
        );
        to_hex(mac.get(..16).unwrap_or(&mac))
    }
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("allow_legacy", &self.allow_legacy)
            .finish()
    }
}

impl fmt::Debug for PasswordOrHa1<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordOrHa1::Password(_) => f.write_str("Password(<redacted>)"),
            PasswordOrHa1::Ha1(_) => f.write_str("Ha1(<redacted>)"),
        }
    }
}

impl Algorithm {
    /// Parses an algorithm token (case-insensitive); unknown tokens become
    /// [`Algorithm::Other`].
    pub fn parse(s: &str) -> Algorithm {
        const KNOWN: [(&str, Algorithm); 6] = [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map_or_else(|| Algorithm::Other(s.to_owned()), |(_, a)| a)
    }

    /// The token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
            Algorithm::Other(s) => s,
        }
    }

    /// Whether we can compute this algorithm.
    pub fn is_supported(&self) -> bool {
        hash_of(self).is_some()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Qop {
    /// Parses a qop token (case-insensitive).
    pub fn parse(s: &str) -> Qop {
        if s.eq_ignore_ascii_case("auth") {
            Qop::Auth
        } else if s.eq_ignore_ascii_case("auth-int") {
            Qop::AuthInt
        } else {
            Qop::Other(s.to_owned())
        }
    }

    /// The token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
            Qop::Other(s) => s,
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Challenge {
    /// Parses a `WWW-Authenticate` / `Proxy-Authenticate` value. `realm` and `nonce` are
    /// required; unknown parameters are ignored; a parameter given twice is an error.
    pub fn parse(s: &str) -> Result<Challenge, AuthError> {
        let params = parse_digest(s)?;
        let qop = match params.get("qop") {
            Some(list) => list
                .split(',')
                .map(|q| q.trim_matches(is_lws))
                .filter(|q| !q.is_empty())
                .map(Qop::parse)
                .collect(),
            None => Vec::new(),
        };
        Ok(Challenge {
            realm: params.required("realm")?,
            nonce: params.required("nonce")?,
            opaque: params.owned("opaque"),
            algorithm: params.get("algorithm").map(Algorithm::parse),
            qop,
            stale: params
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            domain: params.owned("domain"),
        })
    }

    /// The algorithm, MD5 when none was named.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }
}

impl FromStr for Challenge {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Challenge, AuthError> {
        Challenge::parse(s)
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest realm={}", quote(&self.realm))?;
        if let Some(domain) = &self.domain {
            write!(f, ", domain={}", quote(domain))?;
        }
        write!(f, ", nonce={}", quote(&self.nonce))?;
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        if self.stale {
            f.write_str(", stale=TRUE")?;
        }
        if let Some(algorithm) = &self.algorithm {
            write!(f, ", algorithm={}", bare_or_quoted(algorithm.as_str()))?;
        }
        if !self.qop.is_empty() {
            let list: Vec<&str> = self.qop.iter().map(Qop::as_str).collect();
            write!(f, ", qop={}", quote(&list.join(",")))?;
        }
        Ok(())
    }
}

impl Credentials {
    /// Parses an `Authorization` / `Proxy-Authorization` value. `username`, `realm`, `nonce`,
    /// `uri` and `response` are required; unknown parameters are ignored; a parameter given
    /// twice is an error. `nc` must be 1 to 8 hex digits.
    pub fn parse(s: &str) -> Result<Credentials, AuthError> {
        let params = parse_digest(s)?;
        let userhash = params
            .get("userhash")
            .is_some_and(|u| u.eq_ignore_ascii_case("true"));
        if params.get("username*").is_some() || userhash {
            return Err(AuthError::Malformed(
                "username* and userhash are not supported",
            ));
        }
        let nc = match params.get("nc") {
            Some(nc) => {
                if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AuthError::Malformed("nc is not 8 hex digits"));
                }
                Some(u32::from_str_radix(nc, 16).map_err(|_| AuthError::Malformed("nc"))?)
            }
            None => None,
        };
        Ok(Credentials {
            username: params.required("username")?,
            realm: params.required("realm")?,
            nonce: params.required("nonce")?,
            uri: params.required("uri")?,
            response: params.required("response")?,
            algorithm: params.get("algorithm").map(Algorithm::parse),
            cnonce: params.owned("cnonce"),
            nc,
            qop: params.get("qop").map(Qop::parse),
            opaque: params.owned("opaque"),
        })
    }

    /// The algorithm, MD5 when none was named.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }
}

impl FromStr for Credentials {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Credentials, AuthError> {
        Credentials::parse(s)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response)
        )?;
        if let Some(algorithm) = &self.algorithm {
            write!(f, ", algorithm={}", bare_or_quoted(algorithm.as_str()))?;
        }
        if let Some(cnonce) = &self.cnonce {
            write!(f, ", cnonce={}", quote(cnonce))?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        if let Some(qop) = &self.qop {
            write!(f, ", qop={}", bare_or_quoted(qop.as_str()))?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        Ok(())
    }
}

// ---- parsing ----

/// The auth-params of a Digest header, names lower-cased, values unquoted.
struct DigestParams(Vec<(String, String)>);

impl DigestParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn required(&self, name: &'static str) -> Result<String, AuthError> {
        self.owned(name).ok_or(AuthError::Malformed(name))
    }
}

/// Parses `Digest name=value, name="quoted", ...`. Tolerates LWS around `=` and `,`, empty
/// list elements and bare (unquoted) values.
fn parse_digest(s: &str) -> Result<DigestParams, AuthError> {
    let s = s.trim_matches(is_lws);
    let scheme_len = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
    let (scheme, mut rest) = s.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::UnsupportedScheme);
    }
    if !rest.is_empty() && !rest.starts_with(is_lws) {
        return Err(AuthError::UnsupportedScheme);
    }
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c| is_lws(c) || c == ',');
        if rest.is_empty() {
            break;
        }
        let name_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if name_len == 0 {
            return Err(AuthError::Malformed("expected a parameter name"));
        }
        let (name, after) = rest.split_at(name_len);
        let after = after
            .trim_start_matches(is_lws)
            .strip_prefix('=')
            .ok_or(AuthError::Malformed("parameter without value"))?
            .trim_start_matches(is_lws);
        let (value, after) = if after.starts_with('"') {
            unquote(after).ok_or(AuthError::Malformed("unterminated quoted string"))?
        } else {
            let len = after
                .find(|c: char| is_lws(c) || c == ',')
                .unwrap_or(after.len());
            let (value, after) = after.split_at(len);
            if value.is_empty() {
                return Err(AuthError::Malformed("empty parameter value"));
            }
            (value.to_owned(), after)
        };
        rest = after.trim_start_matches(is_lws);
        if !rest.is_empty() && !rest.starts_with(',') {
            return Err(AuthError::Malformed("expected a comma between parameters"));
        }
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::Malformed("duplicate parameter"));
        }
        params.push((name, value));
    }
    Ok(DigestParams(params))
}

/// A token as is, anything else quoted.
fn bare_or_quoted(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_token_char) {
        s.to_owned()
    } else {
        quote(s)
    }
}

// ---- computing ----

/// The hash function behind an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha256,
    Sha512_256,
}

impl Hash {
    fn hex(self, data: &[u8]) -> String {
        match self {
            Hash::Md5 => to_hex(&Md5::digest(data)),
            Hash::Sha256 => to_hex(&Sha256::digest(data)),
            Hash::Sha512_256 => to_hex(&Sha512_256::digest(data)),
        }
    }

    fn strength(self) -> u8 {
        match self {
            Hash::Md5 => 0,
            Hash::Sha256 => 1,
            Hash::Sha512_256 => 2,
        }
    }
}

/// The hash of `algorithm` and whether it is a `-sess` variant.
fn hash_of(algorithm: &Algorithm) -> Option<(Hash, bool)> {
    Some(match algorithm {
        Algorithm::Md5 => (Hash::Md5, false),
        Algorithm::Md5Sess => (Hash::Md5, true),
        Algorithm::Sha256 => (Hash::Sha256, false),
        Algorithm::Sha256Sess => (Hash::Sha256, true),
        Algorithm::Sha512_256 => (Hash::Sha512_256, false),
        Algorithm::Sha512_256Sess => (Hash::Sha512_256, true),
        Algorithm::Other(_) => return None,
    })
}

/// What the response digest covers besides HA1.
struct ResponseInputs<'a> {
    nonce: &'a str,
    cnonce: Option<&'a str>,
    nc: Option<u32>,
    qop: Option<&'a Qop>,
    method: &'a Method,
    uri: &'a str,
}

/// RFC 7616 §3.4.1–§3.4.3 for `qop=auth` or none; `ha1` is `H(user:realm:password)` in hex.
fn compute_response(hash: Hash, sess: bool, ha1: &str, inputs: &ResponseInputs<'_>) -> String {
    let cnonce = inputs.cnonce.unwrap_or("");
    let ha1 = if sess {
        hash.hex(format!("{ha1}:{}:{cnonce}", inputs.nonce).as_bytes())
    } else {
        ha1.to_owned()
    };
    let ha2 = hash.hex(format!("{}:{}", inputs.method, inputs.uri).as_bytes());
    let data = match inputs.qop {
        Some(qop) => format!(
            "{ha1}:{}:{:08x}:{cnonce}:{qop}:{ha2}",
            inputs.nonce,
            inputs.nc.unwrap_or(0)
        ),
        None => format!("{ha1}:{}:{ha2}", inputs.nonce),
    };
    hash.hex(data.as_bytes())
}

/// HMAC-SHA-256 (RFC 2104) of the concatenation of `parts`, for a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let inner_pad = block.map(|b| b ^ 0x36);
    let outer_pad = block.map(|b| b ^ 0x5c);
    let mut inner = Sha256::new();
    inner.update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(outer_pad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const REALM: &str = "voxflow.example.com";
    const NOW: u64 = 1_700_000_000;

    fn get() -> Method {
        Method::Extension("GET".into())
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let challenge = Challenge::parse(
            r#"Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#
                .replace('\n', " ")
                .as_str(),
        )
        .unwrap();
        assert_eq!(challenge.realm, "testrealm@host.com");
        assert_eq!(challenge.qop, [Qop::Auth, Qop::AuthInt]);
        assert_eq!(challenge.algorithm(), Algorithm::Md5);
        let creds = respond(
            &challenge,
            &get(),
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
            1,
        )
        .unwrap();
        assert_eq!(creds.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(
            creds.to_string(),
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"6629fae49393a05397450978507c4ef1\", cnonce=\"0a4f113b\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", qop=auth, nc=00000001"
        );
        // the RFC's own Authorization header parses to the same credentials
        let theirs = Credentials::parse(
            r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#
                .replace('\n', " ")
                .as_str(),
        )
        .unwrap();
        assert_eq!(theirs, creds);
    }

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc7616_section_3_9_1_examples() {
        for (algorithm, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let challenge = Challenge::parse(&format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            ))
            .unwrap();
            let creds = respond(
                &challenge,
                &get(),
                "/dir/index.html",
                "Mufasa",
                "Circle of Life",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                1,
            )
            .unwrap();
            assert_eq!(creds.response, expected, "{algorithm}");
            assert_eq!(creds.algorithm, Some(Algorithm::parse(algorithm)));
        }
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn challenge_round_trip_and_tolerant_parsing() {
        let c = Challenge {
            realm: "a \"quoted\" \\ realm".into(),
            nonce: "n1".into(),
            opaque: Some("op".into()),
            algorithm: Some(Algorithm::Sha256Sess),
            qop: vec![Qop::Auth, Qop::AuthInt],
            stale: true,
            domain: Some("sip:a.example.com sip:b.example.com".into()),
        };
        let printed = c.to_string();
        assert_eq!(Challenge::parse(&printed).unwrap(), c);
        let odd = Challenge::parse(
            "digest  ,REALM = \"r\" ,, Nonce=abc , unknown=\"x, y\", STALE=true,qop=auth, algorithm=md5-SESS ,",
        )
        .unwrap();
        assert_eq!(odd.realm, "r");
        assert_eq!(odd.nonce, "abc");
        assert!(odd.stale);
        assert_eq!(odd.qop, [Qop::Auth]);
        assert_eq!(odd.algorithm(), Algorithm::Md5Sess);
        let minimal = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!minimal.stale && minimal.qop.is_empty() && minimal.algorithm.is_none());
        assert_eq!(minimal.to_string(), "Digest realm=\"r\", nonce=\"n\"");
    }

    #[test]
    fn credentials_round_trip() {
        let c = Credentials {
            username: "bob\"x".into(),
            realm: "r".into(),
            nonce: "n".into(),
            uri: "sip:bob@example.com;transport=tcp".into(),
            response: "abcdef".into(),
            algorithm: Some(Algorithm::Other("SHA-1".into())),
            cnonce: Some("c".into()),
            nc: Some(0xabc),
            qop: Some(Qop::Auth),
            opaque: None,
        };
        let printed = c.to_string();
        assert!(printed.contains("nc=00000abc"), "{printed}");
        assert_eq!(Credentials::parse(&printed).unwrap(), c);
        // qop quoted by some clients; nc in upper case
        let q = Credentials::parse(
            "Digest username=u,realm=r,nonce=n,uri=\"sip:x\",response=ab,qop=\"auth\",nc=0000000A,cnonce=c",
        )
        .unwrap();
        assert_eq!((q.qop, q.nc), (Some(Qop::Auth), Some(10)));
    }

    #[test]
    fn malformed_headers_are_errors() {
        for (bad, err) in [
            ("", AuthError::UnsupportedScheme),
            ("Basic dXNlcjpwYXNz", AuthError::UnsupportedScheme),
            ("Digestrealm=\"r\"", AuthError::UnsupportedScheme),
            ("Digest realm=\"r\"", AuthError::Malformed("nonce")),
            (
                "Digest realm=\"r\", nonce=\"n",
                AuthError::Malformed("unterminated quoted string"),
            ),
            (
                "Digest realm",
                AuthError::Malformed("parameter without value"),
            ),
            (
                "Digest realm=",
                AuthError::Malformed("empty parameter value"),
            ),
            (
                "Digest realm=\"r\" nonce=\"n\"",
                AuthError::Malformed("expected a comma between parameters"),
            ),
            (
                "Digest realm=\"r\", realm=\"s\", nonce=n",
                AuthError::Malformed("duplicate parameter"),
            ),
            (
                "Digest =x",
                AuthError::Malformed("expected a parameter name"),
            ),
        ] {
            assert_eq!(Challenge::parse(bad), Err(err), "{bad:?}");
        }
        let base = "Digest username=u, realm=r, nonce=n, uri=x, response=y";
        assert!(Credentials::parse(base).is_ok());
        assert!(Credentials::parse(&format!("{base}, userhash=false")).is_ok());
        for bad in [
            "Digest realm=r, nonce=n, uri=x, response=y",
            &format!("{base}, nc=123456789"),
            &format!("{base}, nc=xyz"),
            &format!("{base}, nc=\"\""),
            &format!("{base}, userhash=TRUE"),
            &format!("{base}, username*=UTF-8''J%C3%A4s%C3%B8n"),
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"Digest rmnoqu=\",\\ \t;aA0z\xc3\xa9";
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = Challenge::parse(&text);
            let _ = Credentials::parse(&text);
            let _ = select_challenge([text.as_ref()]);
        }
        let issuer = NonceIssuer::new(SECRET);
        for nonce in [
            "",
            "é",
            "ééééééééééééééééééé",
            "00000000000000000",
            "zzzzzzzzzzzzzzzz",
        ] {
            let creds = Credentials {
                username: "u".into(),
                realm: REALM.into(),
                nonce: nonce.into(),
                uri: "sip:x".into(),
                response: "".into(),
                algorithm: None,
                cnonce: None,
                nc: None,
                qop: None,
                opaque: None,
            };
            let result = issuer.verify(
                &creds,
                &Method::Register,
                REALM,
                PasswordOrHa1::Password("p"),
                NOW,
            );
            assert_eq!(result, Err(AuthError::BadNonce), "{nonce:?}");
        }
    }

    fn login(issuer: &NonceIssuer, algorithm: Algorithm, password: &str, nc: u32) -> Credentials {
        let challenge = issuer.challenge(REALM, algorithm, NOW, false);
        let header = challenge.to_string();
        let parsed = Challenge::parse(&header).unwrap();
        let creds = respond(
            &parsed,
            &Method::Register,
            "sip:voxflow.example.com",
            "alice",
            password,
            "0a4f113b",
            nc,
        )
        .unwrap();
        Credentials::parse(&creds.to_string()).unwrap()
    }

    #[test]
    fn client_server_loop_for_every_algorithm() {
        let issuer = NonceIssuer::new(SECRET);
        for algorithm in [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ] {
            let creds = login(&issuer, algorithm.clone(), "secret", 1);
            let ok = issuer.verify(
                &creds,
                &Method::Register,
                REALM,
                PasswordOrHa1::Password("secret"),
                NOW + 10,
            );
            assert_eq!(ok, Ok(()), "{algorithm}");
            let stored = ha1(&algorithm, "alice", REALM, "secret").unwrap();
            let ok = issuer.verify(
                &creds,
                &Method::Register,
                REALM,
                PasswordOrHa1::Ha1(&stored.to_uppercase()),
                NOW + 10,
            );
            assert_eq!(ok, Ok(()), "{algorithm} with HA1");
        }
    }

    #[test]
    fn wrong_password_method_or_uri_is_bad_response() {
        let issuer = NonceIssuer::new(SECRET);
        let creds = login(&issuer, Algorithm::Sha256, "wrong", 1);
        let verify = |c: &Credentials, m: &Method| {
            issuer.verify(c, m, REALM, PasswordOrHa1::Password("secret"), NOW)
        };
        assert_eq!(
            verify(&creds, &Method::Register),
            Err(AuthError::BadResponse)
        );
        let creds = login(&issuer, Algorithm::Sha256, "secret", 1);
        assert_eq!(verify(&creds, &Method::Register), Ok(()));
        assert_eq!(verify(&creds, &Method::Invite), Err(AuthError::BadResponse));
        let mut other_uri = creds.clone();
        other_uri.uri = "sip:elsewhere.example.com".into();
        assert_eq!(
            verify(&other_uri, &Method::Register),
            Err(AuthError::BadResponse)
        );
        let mut other_nc = creds.clone();
        other_nc.nc = Some(2);
        assert_eq!(
            verify(&other_nc, &Method::Register),
            Err(AuthError::BadResponse)
        );
        let mut other_user = creds;
        other_user.username = "mallory".into();
        assert_eq!(
            verify(&other_user, &Method::Register),
            Err(AuthError::BadResponse)
        );
    }

    #[test]
    fn stale_nonce_only_after_a_right_response() {
        let issuer = NonceIssuer::new(SECRET).with_lifetime(60);
        assert_eq!(issuer.lifetime(), 60);
        let creds = login(&issuer, Algorithm::Md5, "secret", 1);
        let at = |now, password| {
            issuer.verify(
                &creds,
                &Method::Register,
                REALM,
                PasswordOrHa1::Password(password),
                now,
            )
        };
        assert_eq!(at(NOW + 60, "secret"), Ok(()));
        assert_eq!(at(NOW + 61, "secret"), Err(AuthError::Stale));
        assert_eq!(at(NOW + 61, "wrong"), Err(AuthError::BadResponse));
        // a clock that went backwards does not reject a fresh nonce
        assert_eq!(at(NOW - 5, "secret"), Ok(()));
        let again = issuer.challenge(REALM, Algorithm::Md5, NOW + 61, true);
        assert!(again.stale);
        assert!(again.to_string().contains("stale=TRUE"));
        assert_eq!(NonceIssuer::new(SECRET).lifetime(), DEFAULT_NONCE_LIFETIME);
    }

    #[test]
    fn tampered_or_foreign_nonces_are_rejected() {
        let issuer = NonceIssuer::new(SECRET);
        let creds = login(&issuer, Algorithm::Sha256, "secret", 1);
        let verify = |c: &Credentials, realm: &str| {
            issuer.verify(
                c,
                &Method::Register,
                realm,
                PasswordOrHa1::Password("secret"),
                NOW,
            )
        };
        // a later timestamp with the old MAC
        let mut later = creds.clone();
        later.nonce = format!("{:016x}{}", NOW + 1000, &creds.nonce[16..]);
        assert_eq!(verify(&later, REALM), Err(AuthError::BadNonce));
        // one flipped MAC digit
        let mut flipped = creds.clone();
        let last = if flipped.nonce.ends_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.nonce.replace_range(47.., last);
        assert_eq!(verify(&flipped, REALM), Err(AuthError::BadNonce));
        // a nonce from another server
        let foreign = login(&NonceIssuer::new([8; 32]), Algorithm::Sha256, "secret", 1);
        assert_eq!(verify(&foreign, REALM), Err(AuthError::BadNonce));
        // the algorithm downgraded by a middlebox
        let mut downgraded = creds.clone();
        downgraded.algorithm = Some(Algorithm::Md5);
        assert_eq!(verify(&downgraded, REALM), Err(AuthError::BadNonce));
        // credentials for another realm
        assert_eq!(
            verify(&creds, "other.example.com"),
            Err(AuthError::WrongRealm)
        );
        let mut unknown = creds;
        unknown.algorithm = Some(Algorithm::Other("SHA-1".into()));
        assert_eq!(
            verify(&unknown, REALM),
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn qop_rules() {
        let issuer = NonceIssuer::new(SECRET);
        let challenge = issuer.challenge(REALM, Algorithm::Md5, NOW, false);
        let mut legacy_challenge = challenge.clone();
        legacy_challenge.qop.clear();
        let legacy = respond(
            &legacy_challenge,
            &Method::Register,
            "sip:r",
            "alice",
            "pw",
            "c",
            1,
        )
        .unwrap();
        assert_eq!(
            (legacy.qop.as_ref(), legacy.nc, legacy.cnonce.as_deref()),
            (None, None, None)
        );
        let verify = |issuer: &NonceIssuer, c: &Credentials| {
            issuer.verify(
                c,
                &Method::Register,
                REALM,
                PasswordOrHa1::Password("pw"),
                NOW,
            )
        };
        assert_eq!(verify(&issuer, &legacy), Err(AuthError::UnsupportedQop));
        let lenient = NonceIssuer::new(SECRET).with_legacy_no_qop(true);
        assert_eq!(verify(&lenient, &legacy), Ok(()));

        // -sess without qop still sends a cnonce (RFC 2617 §3.2.2)
        let mut sess = lenient.challenge(REALM, Algorithm::Md5Sess, NOW, false);
        sess.qop.clear();
        let creds = respond(&sess, &Method::Register, "sip:r", "alice", "pw", "c", 1).unwrap();
        assert_eq!(creds.cnonce.as_deref(), Some("c"));
        assert_eq!(verify(&lenient, &creds), Ok(()));

        let mut missing = respond(
            &challenge,
            &Method::Register,
            "sip:r",
            "alice",
            "pw",
            "c",
            1,
        )
        .unwrap();
        assert_eq!(verify(&issuer, &missing), Ok(()));
        missing.cnonce = None;
        assert_eq!(
            verify(&issuer, &missing),
            Err(AuthError::Malformed("qop without cnonce"))
        );

        let mut int_only = challenge.clone();
        int_only.qop = vec![Qop::AuthInt];
        assert_eq!(
            respond(&int_only, &Method::Register, "sip:r", "alice", "pw", "c", 1),
            Err(AuthError::UnsupportedQop)
        );
        let mut unknown = challenge;
        unknown.algorithm = Some(Algorithm::Other("SHA-1".into()));
        assert_eq!(
            respond(&unknown, &Method::Register, "sip:r", "alice", "pw", "c", 1),
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn select_prefers_the_strongest_supported_challenge() {
        let values = [
            "Digest realm=\"a\", nonce=\"1\", algorithm=MD5, qop=\"auth\"",
            "Digest realm=\"a\", nonce=\"2\", algorithm=SHA-256, qop=\"auth\"",
            "Digest realm=\"a\", nonce=\"3\", algorithm=SHA-1, qop=\"auth\"",
            "Digest realm=\"a\", nonce=\"4\", algorithm=SHA-512-256, qop=\"auth-int\"",
            "Basic realm=\"a\"",
        ];
        assert_eq!(select_challenge(values).unwrap().nonce, "2");
        assert_eq!(select_challenge(["Basic realm=x"]), None);
        assert!(Algorithm::Sha512_256.is_supported());
        assert!(!Algorithm::Other("x".into()).is_supported());
        assert_eq!(
            Algorithm::parse("sha-512-256-SESS"),
            Algorithm::Sha512_256Sess
        );
    }

    #[test]
    fn debug_does_not_leak_secrets() {
        let issuer = NonceIssuer::new([0xab; 32]);
        let text = format!("{issuer:?} {:?}", PasswordOrHa1::Password("hunter2"));
        assert!(!text.contains("171") && !text.contains("hunter2"), "{text}");
    }
}

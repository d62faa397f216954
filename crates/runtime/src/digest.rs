//! Digest authentication of devices (RFC 3261 §22, RFC 7616/8760): the challenge, the check of
//! the credentials against the device's stored HA1, and the brute-force guard around it. Used by
//! the registrar and for INVITEs from devices.

use std::net::IpAddr;

use sip::auth::{Algorithm, Credentials, PasswordOrHa1};
use sip::{Request, Response};

use crate::{Shared, now};

/// What to do with a request that must be authenticated.
pub(crate) enum Verdict {
    /// The credentials are good.
    Authenticated,
    /// Send this 401 (a challenge) or 403 (a blocked source).
    Refuse(Response),
}

/// Check `request`, sent from `source`, is from `device`: by its address when the device trusts
/// it, else by the `Authorization` credentials.
pub(crate) fn authenticate(
    shared: &Shared,
    request: &Request,
    source: IpAddr,
    device: &store::DeviceRecord,
    local_tag: &str,
) -> Verdict {
    if crate::allow_list::allows(&device.allowed_ips, source) {
        return Verdict::Authenticated;
    }
    let at = now();
    if shared.guard().is_blocked(source, at) {
        tracing::info!(%source, "authentication from a blocked source");
        return Verdict::Refuse(refusal(request, 403, local_tag));
    }
    let realm = shared.realm.as_str();
    let credentials = request
        .headers
        .get_all("Authorization")
        .filter_map(|value| Credentials::parse(strip_repeated_name(value)).ok())
        .find(|c| c.realm == realm);
    let Some(credentials) = credentials else {
        return Verdict::Refuse(challenge(shared, request, local_tag, false));
    };
    let ha1 = match credentials.algorithm() {
        Algorithm::Md5 | Algorithm::Md5Sess => Some(device.ha1_md5.as_str()),
        Algorithm::Sha256 | Algorithm::Sha256Sess => Some(device.ha1_sha256.as_str()),
        _ => None,
    };
    let result = match ha1 {
        Some(_) if credentials.username != device.username => {
            Err(sip::auth::AuthError::BadResponse)
        }
        // A device without a password (trusted by address only): the HA1 is the secret, and an
        // empty one would be known to everybody.
        Some("") => Err(sip::auth::AuthError::BadResponse),
        Some(ha1) => shared.nonces.verify(
            &credentials,
            &request.method,
            realm,
            PasswordOrHa1::Ha1(ha1),
            unix_now(),
        ),
        None => Err(sip::auth::AuthError::UnsupportedAlgorithm),
    };
    match result {
        Ok(()) => {
            shared.guard().handle_success(source);
            Verdict::Authenticated
        }
        Err(sip::auth::AuthError::Stale) => {
            Verdict::Refuse(challenge(shared, request, local_tag, true))
        }
        Err(e) => {
            tracing::info!(%source, user = %device.username, error = %e, "authentication failed");
            if shared.guard().handle_failure(source, at) {
                tracing::warn!(%source, "too many failed authentications; source blocked");
            }
            Verdict::Refuse(challenge(shared, request, local_tag, false))
        }
    }
}

/// Some UAs (SIPp scenarios that write `Authorization: [authentication]`) repeat the header
/// name inside the value: `Authorization: Authorization: Digest ...`. Read past it.
fn strip_repeated_name(value: &str) -> &str {
    let trimmed = value.trim_start();
    match trimmed.get(..14) {
        Some(head) if head.eq_ignore_ascii_case("authorization:") => {
            trimmed.get(14..).unwrap_or("")
        }
        _ => value,
    }
}

/// A 401 with one challenge per configured algorithm, in the configured order of preference
/// (RFC 8760 §2.4). Many deployed UAs (SIPp among them) read only the first, so the default
/// order is MD5 then SHA-256; `--sip-digest sha256,md5` prefers SHA-256.
fn challenge(shared: &Shared, request: &Request, local_tag: &str, stale: bool) -> Response {
    let mut response = refusal(request, 401, local_tag);
    let when = unix_now();
    for algorithm in shared.digest_algorithms.iter().cloned() {
        let challenge = shared
            .nonces
            .challenge(&shared.realm, algorithm, when, stale);
        response
            .headers
            .push("WWW-Authenticate", challenge.to_string());
    }
    response
}

fn refusal(request: &Request, status: u16, local_tag: &str) -> Response {
    let mut response = Response::for_request(request, status);
    response.set_to_tag(local_tag);
    response
}

/// Answer a server's 401/407 to a request of ours (RFC 3261 §22.2): the header to add to the
/// retried request (`Authorization` or `Proxy-Authorization`) and its value, or why not.
pub(crate) fn answer_challenge(
    response: &Response,
    method: &sip::Method,
    uri: &str,
    user: &str,
    password: &str,
) -> Result<(&'static str, String), String> {
    let (challenge_header, answer_header) = if response.status == 407 {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let challenge = sip::auth::select_challenge(response.headers.get_all(challenge_header))
        .ok_or_else(|| format!("{} without a usable challenge", response.status))?;
    let cnonce = format!(
        "{:08x}{:08x}",
        crate::call::rand_u32(),
        crate::call::rand_u32()
    );
    let credentials = sip::auth::respond(&challenge, method, uri, user, password, &cnonce, 1)
        .map_err(|e| format!("cannot answer the challenge: {e}"))?;
    Ok((answer_header, credentials.to_string()))
}

/// The HA1 values to store for a device's password in `realm`.
#[must_use]
pub fn device_ha1(username: &str, realm: &str, password: &str) -> (String, String) {
    let md5 = sip::auth::ha1(&Algorithm::Md5, username, realm, password).unwrap_or_default();
    let sha = sip::auth::ha1(&Algorithm::Sha256, username, realm, password).unwrap_or_default();
    (md5, sha)
}

/// Seconds since the Unix epoch (nonce timestamps, registration expiry).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::strip_repeated_name;

    #[test]
    fn a_repeated_header_name_is_skipped() {
        assert_eq!(
            strip_repeated_name("Authorization: Digest a=b").trim(),
            "Digest a=b"
        );
        assert_eq!(
            strip_repeated_name("authorization:Digest a=b"),
            "Digest a=b"
        );
        assert_eq!(strip_repeated_name("Digest a=b"), "Digest a=b");
        assert_eq!(strip_repeated_name("Auth"), "Auth");
    }
}

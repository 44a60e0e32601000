//! Who is calling: extractors for the operator, taxpayers, and the caller's audit facts.

use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};

use actix_web::dev::{Payload, RequestHead};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use gsp_gateway_domain::secret::constant_time_eq;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::tokens::{TokenError, TokenKind};

/// The bearer token of the request, if it has one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))
}

/// 401 `token_missing` with the challenge header.
pub fn token_missing(realm: &str) -> ApiError {
    ApiError::new(ErrorCode::TokenMissing, "send Authorization: Bearer <token>")
        .with_header(header::WWW_AUTHENTICATE, &format!("Bearer realm=\"{realm}\""))
}

/// 401 for a refused token of `kind`.
pub fn token_refused(error: TokenError, realm: &str) -> ApiError {
    let (code, detail) = match error {
        TokenError::Invalid => (ErrorCode::TokenInvalid, "the token is not valid here"),
        TokenError::Expired => (ErrorCode::TokenExpired, "the token has expired"),
    };
    ApiError::new(code, detail).with_header(
        header::WWW_AUTHENTICATE,
        &format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
    )
}

/// The operator, proven by the configured admin token.
#[derive(Debug)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let Some(expected) = state.settings.admin_token.as_deref() else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    "the admin API is not enabled on this gateway",
                ));
            };
            let token = bearer(req).ok_or_else(|| token_missing("admin"))?;
            if constant_time_eq(token, expected) {
                Ok(Operator)
            } else {
                Err(
                    ApiError::new(ErrorCode::TokenInvalid, "the admin token is wrong").with_header(
                        header::WWW_AUTHENTICATE,
                        "Bearer realm=\"admin\", error=\"invalid_token\"",
                    ),
                )
            }
        })())
    }
}

/// A logged-in taxpayer, proven by a taxpayer token.
#[derive(Debug, Clone)]
pub struct Taxpayer {
    /// The taxpayer's GSTIN (the token's `sub`).
    pub gstin: String,
    /// The password the token was issued under (`pwd`): a token from before a password change, or
    /// without the claim, is refused.
    pub password_tag: Option<String>,
}

impl FromRequest for Taxpayer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let token = bearer(req).ok_or_else(|| token_missing("taxpayer"))?;
            let claims = state
                .keys
                .verify(token, TokenKind::Taxpayer, state.clock.now())
                .map_err(|e| token_refused(e, "taxpayer"))?;
            Ok(Taxpayer {
                gstin: claims.sub,
                password_tag: claims.pwd,
            })
        })())
    }
}

/// The reverse proxies whose forwarding headers name the client (`trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.1.2.3`) and CIDR ranges (`10.0.0.0/8`); blank entries are skipped.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("trusted_proxies: {entry:?} is neither an address nor a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a connection from `peer`: the peer itself unless it is a trusted proxy; then the
    /// nearest untrusted address its `X-Forwarded-For` names (read from the right, since each proxy
    /// appends), or the farthest when all are trusted. A stranger's own header is never believed.
    pub fn client_ip(&self, peer: IpAddr, headers: &header::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer.to_canonical();
        }
        let chain = forwarded_chain(headers);
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
            .to_canonical()
    }
}

/// The addresses a request's `X-Forwarded-For` names, in order. Entries that are not addresses
/// (`unknown`, obfuscated names) are skipped. `Forwarded` is not read: most proxies append to
/// `X-Forwarded-For` but pass a caller's `Forwarded` through untouched.
fn forwarded_chain(headers: &header::HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all(header::X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(node_address)
        .collect()
}

/// `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]:4711` or `2001:db8::1`: the address.
fn node_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The client's address as the audit log records it (see [`TrustedProxies::client_ip`]).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => client_ip_of(state, req.head()),
        None => req.peer_addr().map(|peer| peer.ip()),
    }
}

/// The client's address of the request `head`, with `state`'s trusted proxies.
pub fn client_ip_of(state: &AppState, head: &RequestHead) -> Option<IpAddr> {
    let peer = head.peer_addr?.ip();
    Some(state.trusted_proxies.client_ip(peer, head.headers()))
}

/// What the audit log records of any caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's address: the connection's, or a trusted proxy's forwarding headers'.
    pub ip: Option<String>,
    /// The request id.
    pub request_id: String,
    /// The GST System dialect's `txn` header (recorded, never required unique).
    pub txn: Option<String>,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = client_ip(req).map(|ip| ip.to_string());
        let request_id = crate::request_id::current();
        ready(Ok(Caller {
            ip,
            request_id,
            txn: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn defaults() -> TrustedProxies {
        let entries: Vec<String> = crate::settings::DEFAULT_TRUSTED_PROXIES
            .iter()
            .map(|&e| e.to_owned())
            .collect();
        TrustedProxies::parse(&entries).unwrap()
    }

    #[test]
    fn a_strangers_forwarding_headers_are_not_believed() {
        let xff = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(defaults().client_ip(ip("203.0.113.9"), &xff), ip("203.0.113.9"));
        let none = TrustedProxies::parse(&[]).unwrap();
        assert_eq!(none.client_ip(ip("127.0.0.1"), &xff), ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_names_the_nearest_untrusted_address() {
        let proxies = defaults();
        let peer = ip("10.0.0.5");
        let cases = [
            (headers(&[("x-forwarded-for", "198.51.100.7")]), "198.51.100.7"),
            // The caller's own entries are on the left; each proxy appends on the right.
            (
                headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.7")]),
                "198.51.100.7",
            ),
            (
                headers(&[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.7"),
                ]),
                "198.51.100.7",
            ),
            // A caller's Forwarded, passed through by a proxy that appends to X-Forwarded-For, is
            // not read.
            (
                headers(&[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "198.51.100.7")]),
                "198.51.100.7",
            ),
            (
                headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]),
                "2001:db8::1",
            ),
            (
                headers(&[("x-forwarded-for", "unknown, 198.51.100.7:443")]),
                "198.51.100.7",
            ),
            (headers(&[("x-forwarded-for", "10.0.0.8")]), "10.0.0.8"),
            (headers(&[]), "10.0.0.5"),
        ];
        for (fields, expected) in cases {
            assert_eq!(proxies.client_ip(peer, &fields), ip(expected), "{fields:?}");
        }
        let mapped = ip("::ffff:127.0.0.1");
        let xff = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(proxies.client_ip(mapped, &xff), ip("198.51.100.7"));
    }

    #[test]
    fn entries_are_addresses_or_ranges() {
        let parsed = TrustedProxies::parse(&["10.1.2.3".into(), " ".into(), "fd00::/8".into()]).unwrap();
        assert!(parsed.trusts(ip("10.1.2.3")) && parsed.trusts(ip("fd12::1")));
        assert!(!parsed.trusts(ip("10.1.2.4")));
        assert!(TrustedProxies::parse(&["banana".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}

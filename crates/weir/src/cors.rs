//! Cross-origin access for browser callers.
//!
//! gRPC-Web requests always need a CORS preflight in a cross-origin page (their content type
//! is not a "simple" one), so the policy decides both the preflight answer and the headers on
//! the actual response. The default denies every cross-origin caller; same-origin pages and
//! non-browser clients (which send no `Origin`) are always allowed.

use std::collections::HashSet;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};

/// The CORS policy of a gRPC-Web endpoint.
#[derive(Debug, Clone)]
pub struct Cors {
    allowed: Allowed,
    allow_credentials: bool,
    max_age: Duration,
}

#[derive(Debug, Clone)]
enum Allowed {
    Any,
    List(HashSet<HeaderValue>),
}

impl Default for Cors {
    fn default() -> Self {
        Cors::deny_cross_origin()
    }
}

/// What the policy says of one request's `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No `Origin` (not a browser) or the page's own origin: no CORS headers needed.
    SameOrigin,
    /// A cross-origin caller this policy allows: answer with CORS headers for this origin.
    Allowed(HeaderValue),
    /// A cross-origin caller this policy refuses.
    Denied(HeaderValue),
}

impl Cors {
    /// Allows no cross-origin callers (the default).
    pub fn deny_cross_origin() -> Self {
        Cors {
            allowed: Allowed::List(HashSet::new()),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }

    /// Allows every origin. Use only for public APIs that carry no ambient credentials.
    pub fn allow_any_origin() -> Self {
        Cors {
            allowed: Allowed::Any,
            ..Cors::deny_cross_origin()
        }
    }

    /// Adds an allowed origin, such as `https://app.example.com` (scheme, host and port as the
    /// browser sends them in `Origin`). `*` allows every origin.
    ///
    /// # Errors
    /// If `origin` cannot be a header value.
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, http::header::InvalidHeaderValue> {
        if origin == "*" {
            self.allowed = Allowed::Any;
            return Ok(self);
        }
        let origin = HeaderValue::from_str(origin.trim_end_matches('/'))?;
        if let Allowed::List(list) = &mut self.allowed {
            list.insert(origin);
        }
        Ok(self)
    }

    /// Lets browsers send cookies and HTTP authentication cross-origin
    /// (`Access-Control-Allow-Credentials: true`). Off by default. It applies to listed origins
    /// only: with "any origin", every website could make credentialed calls and read the
    /// answers, so weir never allows credentials for an origin it did not list.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.allow_credentials = allow;
        self
    }

    /// How long browsers may cache a preflight answer (default 10 minutes).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    fn credentials_allowed(&self) -> bool {
        self.allow_credentials && matches!(self.allowed, Allowed::List(_))
    }

    pub(crate) fn verdict<B>(&self, request: &http::Request<B>) -> Verdict {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Verdict::SameOrigin;
        };
        if is_same_origin(origin, request) {
            return Verdict::SameOrigin;
        }
        let allowed = match &self.allowed {
            Allowed::Any => true,
            Allowed::List(list) => list.contains(origin),
        };
        if allowed {
            Verdict::Allowed(origin.clone())
        } else {
            Verdict::Denied(origin.clone())
        }
    }

    /// Headers of a successful preflight answer for `origin`.
    pub(crate) fn preflight_headers(&self, origin: HeaderValue, request: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        // Metadata is arbitrary, so every requested header is allowed; the browser lists
        // exactly the ones the call will send.
        if let Some(requested) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        if let Ok(age) = HeaderValue::try_from(self.max_age.as_secs().to_string()) {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, age);
        }
        if self.credentials_allowed() {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers
    }

    /// Adds the headers of an allowed cross-origin response: the origin, and every response
    /// header the page may read (status headers and all response metadata).
    pub(crate) fn decorate_response(&self, origin: HeaderValue, headers: &mut HeaderMap) {
        let mut expose: Vec<&str> = vec!["grpc-status", "grpc-message", "grpc-status-details-bin"];
        for name in headers.keys() {
            let name = name.as_str();
            if !expose.contains(&name) && !is_safelisted_response_header(name) {
                expose.push(name);
            }
        }
        if let Ok(value) = HeaderValue::try_from(expose.join(", ")) {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if self.credentials_allowed() {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// The CORS policy applied where no HTTP request exists: a WebTransport session's `Origin`
/// and authority.
// Only WebTransport sessions need it.
#[cfg_attr(not(feature = "webtransport"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct OriginCheck {
    cors: Cors,
    /// Ports of the session host whose pages count as our own (the gateway's HTTP listeners).
    own_ports: Vec<u16>,
}

#[cfg_attr(not(feature = "webtransport"), allow(dead_code))]
impl OriginCheck {
    pub(crate) fn new(cors: Cors, own_ports: Vec<u16>) -> Self {
        OriginCheck { cors, own_ports }
    }

    /// Whether a session from `origin` (absent for non-browser clients) to the server at
    /// `host` and `port` (from the session request's `:authority`, normalized: lowercase, no
    /// default port) may proceed: `docs/protocol/webtransport.md` §2.2. The origin must be
    /// serialized as browsers serialize it, and is compared byte for byte.
    pub(crate) fn allows(&self, origin: Option<&str>, host: &str, port: Option<u16>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if !is_serialized_origin(origin) {
            return false;
        }
        // 1. Our own origin.
        if origin == serialize_origin("https", host, port) {
            return true;
        }
        // 2. A page served by one of our own HTTP listeners on the same host: the demo page,
        // or an app the gateway serves next to its API.
        if self.own_ports.iter().any(|&own| {
            origin == serialize_origin("http", host, Some(own))
                || origin == serialize_origin("https", host, Some(own))
        }) {
            return true;
        }
        // 3. The CORS policy.
        match &self.cors.allowed {
            Allowed::Any => true,
            Allowed::List(list) => list
                .iter()
                .any(|allowed| allowed.as_bytes() == origin.as_bytes()),
        }
    }
}

/// An origin as RFC 6454 §6.2 serializes it, in lowercase: `scheme://host[:port]`, the port
/// left out when it is the scheme's default.
fn serialize_origin(scheme: &str, host: &str, port: Option<u16>) -> String {
    let default = match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    match port {
        Some(port) if Some(port) != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// Whether `origin` is an origin as browsers serialize it: a lowercase scheme, `://`, a
/// lowercase host, an optional port that is not the scheme's default, and nothing else (no
/// path, no trailing `/`). `null` is not.
fn is_serialized_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok
        || rest.is_empty()
        || rest
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b"/?#@ \\".contains(&b) || !b.is_ascii_graphic())
    {
        return false;
    }
    // A port: digits without a leading zero, and not the default one.
    let port = if let Some(bracket) = rest.rfind(']') {
        rest[bracket + 1..].strip_prefix(':')
    } else {
        rest.rsplit_once(':').map(|(_, port)| port)
    };
    match port {
        None => true,
        Some(port) => {
            !port.starts_with('0')
                && port.parse::<u16>().is_ok_and(|port| {
                    serialize_origin(scheme, "h", Some(port)) != serialize_origin(scheme, "h", None)
                })
        }
    }
}

/// Whether `Origin` names the server itself. An attacker's page cannot send the server's own
/// host and port as its origin, so comparing authorities is enough.
fn is_same_origin<B>(origin: &HeaderValue, request: &http::Request<B>) -> bool {
    let Some(origin_authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority)
    else {
        return false;
    };
    let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    host.is_some_and(|host| host.eq_ignore_ascii_case(origin_authority))
}

/// Response headers a page can always read (Fetch standard, "CORS-safelisted response-header
/// name"); listing them is harmless but noisy.
fn is_safelisted_response_header(name: &str) -> bool {
    matches!(
        name,
        "cache-control"
            | "content-language"
            | "content-length"
            | "content-type"
            | "expires"
            | "last-modified"
            | "pragma"
            | "vary"
            | "access-control-allow-origin"
            | "access-control-allow-credentials"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&str>, host: &str) -> http::Request<()> {
        let mut builder = http::Request::post("/x").header(header::HOST, host);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn denies_cross_origin_by_default() {
        let cors = Cors::default();
        assert_eq!(cors.verdict(&request(None, "api:80")), Verdict::SameOrigin);
        assert_eq!(
            cors.verdict(&request(Some("http://api:80"), "api:80")),
            Verdict::SameOrigin
        );
        assert!(matches!(
            cors.verdict(&request(Some("http://evil"), "api:80")),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn webtransport_origins() {
        let check = OriginCheck::new(
            Cors::default().allow_origin("https://app.example").unwrap(),
            vec![8080],
        );
        let allows = |origin| check.allows(origin, "127.0.0.1", Some(4433));
        assert!(allows(None));
        assert!(allows(Some("https://127.0.0.1:4433")));
        assert!(allows(Some("http://127.0.0.1:8080")));
        assert!(allows(Some("https://app.example")));
        for refused in [
            "HTTPS://127.0.0.1:4433",
            "https://127.0.0.1:4433/",
            "https://app.example/",
            "https://APP.example",
            "https://app.example:443",
            "https://app.example:0443",
            "null",
            "https://evil.example",
            "http://127.0.0.1:4433",
            "http://127.0.0.1:8081",
            "https://127.0.0.1:4433/x",
        ] {
            assert!(!allows(Some(refused)), "{refused}");
        }
        assert!(check.allows(Some("https://localhost"), "localhost", None));
        assert!(check.allows(Some("https://[::1]:4433"), "[::1]", Some(4433)));
    }

    #[test]
    fn allows_listed_origins() {
        let cors = Cors::default().allow_origin("http://app:3000/").unwrap();
        assert!(matches!(
            cors.verdict(&request(Some("http://app:3000"), "api")),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            cors.verdict(&request(Some("http://app:3001"), "api")),
            Verdict::Denied(_)
        ));
        let any = Cors::default().allow_origin("*").unwrap();
        assert!(matches!(
            any.verdict(&request(Some("http://x"), "api")),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn no_credentials_for_any_origin() {
        let mut headers = HeaderMap::new();
        let any = Cors::allow_any_origin().allow_credentials(true);
        any.decorate_response(HeaderValue::from_static("http://x"), &mut headers);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let listed = Cors::default()
            .allow_origin("http://x")
            .unwrap()
            .allow_credentials(true);
        let mut headers = HeaderMap::new();
        listed.decorate_response(HeaderValue::from_static("http://x"), &mut headers);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn session_origins() {
        let check = OriginCheck::new(
            Cors::default().allow_origin("http://app:3000").unwrap(),
            vec![8080],
        );
        let allows = |origin| check.allows(origin, "127.0.0.1", Some(4433));
        assert!(allows(None));
        assert!(allows(Some("http://app:3000")));
        assert!(allows(Some("https://127.0.0.1:4433")));
        assert!(!allows(Some("http://evil")));
        assert!(allows(Some("http://127.0.0.1:8080")));
        assert!(!allows(Some("http://127.0.0.1:8081")));
        assert!(!allows(Some("http://evil:8080")));
    }

    #[test]
    fn exposes_status_and_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/grpc-web"),
        );
        headers.insert("x-custom", HeaderValue::from_static("1"));
        Cors::default().decorate_response(HeaderValue::from_static("http://app"), &mut headers);
        let expose = headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap();
        assert_eq!(
            expose,
            "grpc-status, grpc-message, grpc-status-details-bin, x-custom"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://app");
    }
}

//! Content types of gRPC and gRPC-Web.
//!
//! `application/grpc[+codec]`, `application/grpc-web[+codec]` and
//! `application/grpc-web-text[+codec]`, where the codec suffix names the message encoding
//! (`proto` when absent). Parameters after `;` are accepted and ignored, and matching is
//! case-insensitive ([gRPC over HTTP/2][spec], [gRPC-Web][web]).
//!
//! [spec]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
//! [web]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use http::HeaderValue;
use std::borrow::Cow;

/// Which protocol a content type belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Native gRPC (`application/grpc`).
    Grpc,
    /// gRPC-Web with binary bodies (`application/grpc-web`).
    GrpcWeb,
    /// gRPC-Web with base64 bodies (`application/grpc-web-text`).
    GrpcWebText,
}

/// A parsed gRPC or gRPC-Web content type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentType {
    protocol: Protocol,
    codec: Option<Cow<'static, str>>,
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A codec name, lowercase; the usual ones without allocating.
fn codec_name(codec: &str) -> Cow<'static, str> {
    if codec.eq_ignore_ascii_case("proto") {
        Cow::Borrowed("proto")
    } else if codec.eq_ignore_ascii_case("json") {
        Cow::Borrowed("json")
    } else {
        Cow::Owned(codec.to_ascii_lowercase())
    }
}

impl ContentType {
    /// A content type of `protocol` with the given message codec (`None`: no suffix, proto).
    pub fn new(protocol: Protocol, codec: Option<&str>) -> Self {
        ContentType {
            protocol,
            codec: codec.map(codec_name),
        }
    }

    /// Parses a `content-type` value; `None` if it is not a gRPC or gRPC-Web type.
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        let rest = strip_prefix_ignore_case(essence, "application/grpc")?;
        let (protocol, rest) = if let Some(r) = strip_prefix_ignore_case(rest, "-web-text") {
            (Protocol::GrpcWebText, r)
        } else if let Some(r) = strip_prefix_ignore_case(rest, "-web") {
            (Protocol::GrpcWeb, r)
        } else {
            (Protocol::Grpc, rest)
        };
        let codec = match rest {
            "" => None,
            _ => {
                let codec = rest.strip_prefix('+')?;
                let valid = !codec.is_empty()
                    && codec
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !valid {
                    return None;
                }
                Some(codec_name(codec))
            }
        };
        Some(ContentType { protocol, codec })
    }

    /// Parses a header value; `None` for non-UTF-8 or non-gRPC values.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        value.to_str().ok().and_then(Self::parse)
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The codec suffix as sent (`None` when absent, which means proto).
    pub fn codec(&self) -> Option<&str> {
        self.codec.as_deref()
    }

    /// Whether the body is base64 text.
    pub fn is_text(&self) -> bool {
        self.protocol == Protocol::GrpcWebText
    }

    /// The same message codec under another protocol, e.g. the native gRPC type to forward a
    /// gRPC-Web request with.
    pub fn with_protocol(&self, protocol: Protocol) -> Self {
        ContentType {
            protocol,
            codec: self.codec.clone(),
        }
    }

    /// The canonical header value.
    pub fn to_header_value(&self) -> HeaderValue {
        let base = match self.protocol {
            Protocol::Grpc => "application/grpc",
            Protocol::GrpcWeb => "application/grpc-web",
            Protocol::GrpcWebText => "application/grpc-web-text",
        };
        match (self.protocol, self.codec.as_deref()) {
            (_, None) => HeaderValue::from_static(base),
            // The usual ones, without formatting.
            (Protocol::Grpc, Some("proto")) => HeaderValue::from_static("application/grpc+proto"),
            (Protocol::GrpcWeb, Some("proto")) => {
                HeaderValue::from_static("application/grpc-web+proto")
            }
            (Protocol::GrpcWebText, Some("proto")) => {
                HeaderValue::from_static("application/grpc-web-text+proto")
            }
            (_, Some(codec)) => HeaderValue::try_from(format!("{base}+{codec}"))
                // The codec was validated to be a token when parsed.
                .unwrap_or_else(|_| HeaderValue::from_static(base)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Protocol::*;
        type Case = (&'static str, Option<(Protocol, Option<&'static str>)>);
        let cases: &[Case] = &[
            ("application/grpc", Some((Grpc, None))),
            ("application/grpc+proto", Some((Grpc, Some("proto")))),
            ("application/grpc-web", Some((GrpcWeb, None))),
            ("application/grpc-web+proto", Some((GrpcWeb, Some("proto")))),
            ("application/grpc-web+json", Some((GrpcWeb, Some("json")))),
            ("application/grpc-web-text", Some((GrpcWebText, None))),
            (
                "application/grpc-web-text+proto",
                Some((GrpcWebText, Some("proto"))),
            ),
            (
                "Application/GRPC-Web-Text+Proto; charset=utf-8",
                Some((GrpcWebText, Some("proto"))),
            ),
            ("application/grpc-web ; q=1", Some((GrpcWeb, None))),
            ("application/grpcx", None),
            ("application/grpc+", None),
            ("application/grpc-webby", None),
            ("application/json", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got =
                ContentType::parse(input).map(|c| (c.protocol(), c.codec().map(str::to_owned)));
            let want = want.map(|(p, c)| (p, c.map(str::to_owned)));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn converts_between_protocols() {
        let web = ContentType::parse("application/grpc-web-text+proto").unwrap();
        assert!(web.is_text());
        assert_eq!(
            web.with_protocol(Protocol::Grpc).to_header_value(),
            "application/grpc+proto"
        );
        let plain = ContentType::parse("application/grpc-web").unwrap();
        assert_eq!(
            plain.with_protocol(Protocol::Grpc).to_header_value(),
            "application/grpc"
        );
    }
}

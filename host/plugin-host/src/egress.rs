//! Where a hook's HTTP request may go. The URL is parsed once, with the parser the HTTP
//! client itself uses; the allow-list is checked against the parsed host; a name is
//! resolved here and the request connects to the address that was checked, so neither
//! a URL the check and the client read differently nor a name that re-resolves (DNS
//! rebinding) can take a request somewhere the grant does not name.
//!
//! Addresses that reach the runner itself or its private network (loopback, link-local
//! including the instance-metadata endpoint, private and carrier-grade NAT ranges,
//! unique-local IPv6, the EC2 IPv6 metadata prefix) are refused unless the grant names
//! that address literally, whatever name leads there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use crate::bindings::types::CapabilityError;

/// Longest URL a plugin may send.
pub const MAX_URL_BYTES: usize = 8 << 10;

/// A request's checked destination: the parsed URL to send and the address to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub url: Url,
    /// The domain the URL names, when it names one (the client must connect to `addr` for
    /// it, never look it up again).
    pub domain: Option<String>,
    pub addr: SocketAddr,
}

fn denied(message: String) -> CapabilityError {
    CapabilityError::Denied(message)
}

/// Check `raw` against `allow` (exact names, `*.suffix` patterns, or literal addresses)
/// and decide where to connect, resolving a name with `resolve`.
///
/// # Errors
/// [`CapabilityError::Denied`] naming the rule; [`CapabilityError::Invalid`] for a URL
/// that is not one; [`CapabilityError::Unavailable`] when the name does not resolve.
pub async fn check<R, F>(
    allow: &[String],
    raw: &str,
    resolve: R,
) -> Result<Destination, CapabilityError>
where
    R: FnOnce(String, u16) -> F,
    F: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    let url = parse(raw)?;
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        Some(Host::Domain(domain)) => {
            let domain = domain.to_string();
            if !allow.iter().any(|pattern| name_matches(pattern, &domain)) {
                return Err(denied(format!(
                    "{domain} is not on this plugin's http-allow list"
                )));
            }
            let addrs = resolve(domain.clone(), port).await.map_err(|err| {
                CapabilityError::Unavailable(format!("cannot resolve {domain}: {err}"))
            })?;
            let mut refused = None;
            for addr in addrs {
                match special(addr.ip()) {
                    Some(kind) if !names_address(allow, addr.ip()) => {
                        refused.get_or_insert((addr.ip(), kind));
                    }
                    _ => {
                        return Ok(Destination {
                            url,
                            domain: Some(domain),
                            addr,
                        });
                    }
                }
            }
            Err(match refused {
                Some((ip, kind)) => denied(format!(
                    "{domain} resolves to {ip}, a {kind} address; to allow it, add \"{ip}\" to http-allow"
                )),
                None => CapabilityError::Unavailable(format!("{domain} has no address")),
            })
        }
        Some(Host::Ipv4(ip)) => literal(allow, IpAddr::V4(ip), port, url),
        Some(Host::Ipv6(ip)) => literal(allow, IpAddr::V6(ip), port, url),
        None => Err(CapabilityError::Invalid("the URL names no host".into())),
    }
}

fn literal(
    allow: &[String],
    ip: IpAddr,
    port: u16,
    url: Url,
) -> Result<Destination, CapabilityError> {
    if names_address(allow, ip) {
        Ok(Destination {
            url,
            domain: None,
            addr: SocketAddr::new(ip, port),
        })
    } else {
        Err(denied(format!(
            "{ip} is not on this plugin's http-allow list (an address is allowed only when listed as written)"
        )))
    }
}

/// `raw` as the HTTP client will read it, refused where a reader of the text would see
/// another host than the parser does.
fn parse(raw: &str) -> Result<Url, CapabilityError> {
    let invalid = |why: &str| CapabilityError::Invalid(format!("{why}: {}", shown(raw)));
    if raw.len() > MAX_URL_BYTES {
        return Err(CapabilityError::Limit(format!(
            "URLs are at most {MAX_URL_BYTES} bytes"
        )));
    }
    if raw
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\' || !c.is_ascii())
    {
        return Err(invalid(
            "URLs may not contain spaces, control characters, backslashes or non-ASCII text (write names in punycode)",
        ));
    }
    let url = Url::parse(raw).map_err(|err| invalid(&format!("not a URL ({err})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("only http:// and https:// URLs may be sent"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("URLs with user info (`user@host`) are refused"));
    }
    // The host exactly as written, lower-cased, must be the host the parser found:
    // no percent-encoding, alternative IPv4 notations (`2130706433`, `0x7f.1`), or
    // anything else the parser rewrites.
    let written = written_host(raw).ok_or_else(|| invalid("the URL names no host"))?;
    let parsed = url.host_str().unwrap_or_default();
    if !written.eq_ignore_ascii_case(parsed) {
        return Err(denied(format!(
            "the host is written as `{}` but means `{parsed}`; write it plainly",
            shown(&written)
        )));
    }
    Ok(url)
}

/// The authority's host as written: after `scheme://`, before the port, path, query or
/// fragment.
fn written_host(raw: &str) -> Option<String> {
    let (_, rest) = raw.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if authority.starts_with('[') {
        let end = authority.find(']')?;
        &authority[..=end]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Text from a plugin, cut short for a message.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown.escape_debug().to_string()
}

/// Whether allow-list entry `pattern` covers domain `name` (both compared without case;
/// a name with a trailing dot matches nothing).
fn name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if name.ends_with('.') {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => name == pattern,
    }
}

/// Whether the allow-list names `ip` literally (`127.0.0.1`, `::1` or `[::1]`).
fn names_address(allow: &[String], ip: IpAddr) -> bool {
    allow.iter().any(|pattern| {
        pattern
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|listed| listed == ip)
    })
}

/// What kind of non-public address `ip` is, if it is one.
pub fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => special_v4(v4),
            None => special_v6(v6),
        },
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (instance metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("reserved")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.segments()[..3] == [0xfd00, 0x0ec2, 0] {
        Some("EC2 instance metadata")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local (private)")
    } else if ip.to_ipv4().is_some() && first == 0 {
        // IPv4-compatible (::a.b.c.d): judged as the IPv4 address it carries.
        ip.to_ipv4().and_then(special_v4)
    } else if let Some(v4) = embedded_v4(ip) {
        // NAT64 and 6to4 addresses reach the IPv4 address they carry.
        special_v4(v4)
    } else {
        None
    }
}

/// The IPv4 address a translation prefix carries: NAT64 (`64:ff9b::/96`, RFC 6052) or
/// 6to4 (`2002::/16`, RFC 3056).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(from(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(from(s[1], s[2]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn to(
        allow_list: &[&str],
        url: &str,
        addrs: &[&str],
    ) -> Result<Destination, CapabilityError> {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        check(&allow(allow_list), url, |_, _| async move { Ok(addrs) }).await
    }

    #[tokio::test]
    async fn names_on_the_list_connect_to_the_public_address_they_resolve_to() {
        let dest = to(
            &["*.example.com"],
            "https://hooks.example.com/x?y=1",
            &["93.184.216.34:443"],
        )
        .await
        .unwrap();
        assert_eq!(dest.addr, "93.184.216.34:443".parse().unwrap());
        assert_eq!(dest.domain.as_deref(), Some("hooks.example.com"));
        assert_eq!(dest.url.as_str(), "https://hooks.example.com/x?y=1");
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_unless_the_address_is_listed() {
        for inside in [
            "127.0.0.1:80",
            "169.254.169.254:80",
            "10.1.2.3:80",
            "[::1]:80",
            "[fd00:ec2::254]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            let err = to(&["*.example.com"], "http://evil.example.com/", &[inside])
                .await
                .unwrap_err();
            assert!(
                matches!(err, CapabilityError::Denied(_)),
                "{inside}: {err:?}"
            );
        }
        let dest = to(
            &["*.example.com", "10.1.2.3"],
            "http://db.example.com/",
            &["10.1.2.3:80"],
        )
        .await
        .unwrap();
        assert_eq!(dest.addr, "10.1.2.3:80".parse().unwrap());
    }

    #[tokio::test]
    async fn disguised_hosts_are_refused() {
        for url in [
            "http://evil.example.com\\@hooks.example.com/",
            "http://hooks.example.com@127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://127.1/",
            "http://hooks%2eexample.com/",
            "http://hooks.example.com./",
            "http://h\u{f6}oks.example.com/",
            "http:// hooks.example.com/",
            "file:///etc/passwd",
            "http:/hooks.example.com/",
        ] {
            let result = to(
                &["*.example.com", "hooks.example.com"],
                url,
                &["93.184.216.34:80"],
            )
            .await;
            assert!(result.is_err(), "{url} was let through: {result:?}");
        }
    }

    #[test]
    fn translated_ipv6_forms_are_judged_by_the_ipv4_address_they_carry() {
        for inside in [
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a00:1::1",
        ] {
            assert!(special(inside.parse().unwrap()).is_some(), "{inside}");
        }
        for outside in ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "2606:4700::1111"] {
            assert_eq!(special(outside.parse().unwrap()), None, "{outside}");
        }
    }

    #[test]
    fn suffix_patterns_need_a_label_before_them() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(name_matches("*.example.com", "A.b.EXAMPLE.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "evilexample.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(!name_matches("hooks.example.com", "hooks.example.com."));
    }
}

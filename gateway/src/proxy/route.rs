//! Routing: host, then the longest path prefix on segment boundaries.

use crate::config::RouteSection;

/// The routes of the configuration, matched per request.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RouteSection>,
}

/// A path prefix matches on segment boundaries: "/api" matches "/api" and "/api/x" but not
/// "/apix", so a route meant for one application never catches another's paths.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn host_matches(route_host: Option<&str>, host: Option<&str>) -> bool {
    match route_host {
        None | Some("*") => true,
        Some(want) => host.is_some_and(|h| h.eq_ignore_ascii_case(want)),
    }
}

/// The host of a Host header or :authority, without port (IPv6 literals keep brackets).
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

impl RouteTable {
    pub fn new(routes: Vec<RouteSection>) -> Self {
        Self { routes }
    }

    /// The route for a request: a route naming the host beats a wildcard one; among
    /// those, the longest prefix wins.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&RouteSection> {
        let host = host.map(host_without_port);
        self.routes
            .iter()
            .filter(|r| host_matches(r.host.as_deref(), host) && prefix_matches(&r.path, path))
            .max_by_key(|r| {
                let specific_host = !matches!(r.host.as_deref(), None | Some("*"));
                (specific_host, r.path.trim_end_matches('/').len())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(!prefix_matches("/api", "/"));
    }

    #[test]
    fn host_port_is_ignored() {
        assert_eq!(
            host_without_port("portal.example.jp:8443"),
            "portal.example.jp"
        );
        assert_eq!(host_without_port("portal.example.jp"), "portal.example.jp");
        assert_eq!(host_without_port("[::1]:8443"), "[::1]");
        assert!(host_matches(
            Some("Portal.Example.JP"),
            Some("portal.example.jp")
        ));
        assert!(!host_matches(Some("a.example.jp"), None));
    }
}

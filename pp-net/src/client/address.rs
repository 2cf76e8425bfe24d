//! Node addresses as users write them: `host:port`, `host` (port 60000), `[v6]:port`.

use pp_runtime::remote::DEFAULT_PORT;

/// A node's host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeAddress {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl NodeAddress {
    /// Parses `host:port`, `host`, `[v6]:port` or `[v6]`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| format!("invalid node address `{text}`: {why}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("unexpected text after `]`")),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(bad("write an IPv6 address as `[addr]:port`")),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(NodeAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` (with brackets for IPv6), as shown in statistics.
    pub(crate) fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_port() {
        let a = NodeAddress::parse("10.0.0.1").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 60000));
        let a = NodeAddress::parse(" node7:6100 ").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("node7", 6100));
        let a = NodeAddress::parse("[::1]:7000").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.display()),
            ("::1", 7000, "[::1]:7000".into())
        );
        assert_eq!(NodeAddress::parse("[::1]").unwrap().port, 60000);
        for bad in ["", ":80", "h:0", "h:x", "h:70000", "::1", "[::1"] {
            assert!(NodeAddress::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}

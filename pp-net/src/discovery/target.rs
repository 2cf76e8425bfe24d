//! The discovery entries of `PP_SERVERS`: `*`, `*:PORT`, `192.168.1.*`, `*@HOST:PORT`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::config::DEFAULT_DISCOVERY_PORT;

/// Where a client looks for nodes: one `PP_SERVERS` entry containing `*`.
///
/// * `*` or `*:PORT`: probe by broadcast to `255.255.255.255` on the discovery port
///   (default 60000) and listen on that port for announcements; any node that answers is
///   used.
/// * `A.B.C.*`, `A.B.*.*`, `A.*.*.*`, each optionally `:PORT`: the same with the subnet's
///   broadcast address (`A.B.C.255`), using only nodes whose address is in that subnet.
/// * `*@HOST` or `*@HOST:PORT`: probe `HOST` on the discovery port by unicast, again and
///   again while the client runs, and use the node that answers. No broadcast is sent and
///   no port is listened on: this works where broadcast does not (on `127.0.0.1`, across
///   routers). Several such entries probe several hosts.
///
/// Discovery speaks IPv4.
///
/// # Examples
/// ```
/// use pp_net::discovery::Target;
/// assert!(Target::parse("*").unwrap().is_some());
/// assert!(Target::parse("10.1.2.*:6000").unwrap().is_some());
/// assert!(Target::parse("*@127.0.0.1:6001").unwrap().is_some());
/// assert!(Target::parse("node7:60000").unwrap().is_none()); // a named node
/// assert!(Target::parse("10.*.2.*").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Probe by broadcast; listen for announcements on `port`.
    Broadcast {
        /// The fixed leading octets of the subnet (none for `*`).
        prefix: Vec<u8>,
        /// The discovery port.
        port: u16,
    },
    /// Probe one host by unicast.
    Unicast {
        /// Host name or IPv4 address.
        host: String,
        /// The discovery port.
        port: u16,
    },
}

impl Target {
    /// Parses a `PP_SERVERS` entry: `Ok(None)` if it names a node (no `*`).
    ///
    /// # Errors
    /// A message naming the entry when it has a `*` but is none of the forms above.
    pub fn parse(text: &str) -> Result<Option<Target>, String> {
        let text = text.trim();
        if !text.contains('*') {
            return Ok(None);
        }
        let bad = |why: &str| format!("invalid discovery entry `{text}`: {why}");
        if let Some(rest) = text.strip_prefix("*@") {
            let (host, port) = split_port(rest).map_err(|why| bad(&why))?;
            if host.is_empty() || host.contains(['*', '@', '[', ']']) {
                return Err(bad("write `*@HOST` or `*@HOST:PORT` with an IPv4 host"));
            }
            return Ok(Some(Target::Unicast {
                host: host.to_owned(),
                port,
            }));
        }
        let (pattern, port) = split_port(text).map_err(|why| bad(&why))?;
        let prefix = if pattern == "*" {
            Vec::new()
        } else {
            subnet_prefix(pattern).ok_or_else(|| {
                bad("write `*`, a subnet such as `192.168.1.*` (stars only at the end), or `*@HOST`")
            })?
        };
        Ok(Some(Target::Broadcast { prefix, port }))
    }

    /// Where probes for this target go (for a broadcast target), or `None` for a unicast
    /// target, whose host is resolved when probed.
    pub(crate) fn broadcast_address(&self) -> Option<(Ipv4Addr, u16)> {
        match self {
            Target::Broadcast { prefix, port } => {
                let mut octets = [255u8; 4];
                octets[..prefix.len()].copy_from_slice(prefix);
                Some((Ipv4Addr::from(octets), *port))
            }
            Target::Unicast { .. } => None,
        }
    }

    /// Whether a broadcast target's subnet holds `ip`.
    pub(crate) fn holds(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Target::Broadcast { prefix, .. }, IpAddr::V4(v4)) => v4.octets().starts_with(prefix),
            _ => false,
        }
    }

    /// Whether this is a unicast target on the loopback interface.
    pub(crate) fn is_loopback(&self) -> bool {
        match self {
            Target::Unicast { host, .. } => {
                host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
            }
            Target::Broadcast { .. } => false,
        }
    }
}

/// The entry as it would be written in `PP_SERVERS` (the default port left out).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = match self {
            Target::Broadcast { prefix, port } => {
                for octet in prefix {
                    write!(f, "{octet}.")?;
                }
                let stars = if prefix.is_empty() {
                    1
                } else {
                    4 - prefix.len()
                };
                f.write_str(&vec!["*"; stars].join("."))?;
                *port
            }
            Target::Unicast { host, port } => {
                write!(f, "*@{host}")?;
                *port
            }
        };
        if port != DEFAULT_DISCOVERY_PORT {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// `text` as `(before, port)`: the port after the last `:`, or the default.
fn split_port(text: &str) -> Result<(&str, u16), String> {
    match text.rsplit_once(':') {
        None => Ok((text, DEFAULT_DISCOVERY_PORT)),
        Some((before, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("the port must be a number from 1 to 65535")?;
            Ok((before, port))
        }
    }
}

/// The fixed octets of `A.B.C.*`, `A.B.*.*` or `A.*.*.*`.
fn subnet_prefix(pattern: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = pattern.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let fixed = parts.iter().take_while(|p| **p != "*").count();
    if fixed == 0 || parts[fixed..].iter().any(|p| *p != "*") {
        return None;
    }
    parts[..fixed]
        .iter()
        .map(|p| p.parse::<u8>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Target {
        Target::parse(text).unwrap().unwrap()
    }

    #[test]
    fn broadcast_forms() {
        let all = parse("*");
        assert_eq!(
            all.broadcast_address(),
            Some((Ipv4Addr::BROADCAST, DEFAULT_DISCOVERY_PORT))
        );
        assert!(all.holds("10.1.2.3".parse().unwrap()));
        assert_eq!(
            parse(" *:6100 ").broadcast_address(),
            Some((Ipv4Addr::BROADCAST, 6100))
        );
        let subnet = parse("192.168.1.*");
        assert_eq!(
            subnet.broadcast_address(),
            Some((Ipv4Addr::new(192, 168, 1, 255), DEFAULT_DISCOVERY_PORT))
        );
        assert!(subnet.holds("192.168.1.7".parse().unwrap()));
        assert!(!subnet.holds("192.168.2.7".parse().unwrap()));
        assert!(!subnet.holds("::1".parse().unwrap()));
        assert_eq!(
            parse("10.*.*.*:7000").broadcast_address(),
            Some((Ipv4Addr::new(10, 255, 255, 255), 7000))
        );
    }

    #[test]
    fn unicast_form() {
        let target = parse("*@127.0.0.1:6001");
        assert_eq!(
            target,
            Target::Unicast {
                host: "127.0.0.1".into(),
                port: 6001
            }
        );
        assert!(target.is_loopback());
        assert_eq!(target.broadcast_address(), None);
        assert_eq!(
            parse("*@node7"),
            Target::Unicast {
                host: "node7".into(),
                port: DEFAULT_DISCOVERY_PORT
            }
        );
        assert!(!parse("*@node7").is_loopback());
    }

    #[test]
    fn named_nodes_are_not_discovery_entries() {
        assert_eq!(Target::parse("node7:60000"), Ok(None));
        assert_eq!(Target::parse("[::1]:5"), Ok(None));
    }

    #[test]
    fn entries_are_written_back_as_they_were_given() {
        for text in [
            "*",
            "*:6100",
            "10.1.2.*",
            "10.1.*.*:7000",
            "10.*.*.*",
            "*@node7",
            "*@127.0.0.1:6001",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
        assert_eq!(parse("*:60000").to_string(), "*");
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            "*:0",
            "*:x",
            "**",
            "10.*.2.*",
            "*.1.2.3",
            "1.2.3.*.*",
            "300.1.2.*",
            "*@",
            "*@:5",
            "*@a:0",
            "*@[::1]:5",
            "*@*",
            "x*",
        ] {
            let error = Target::parse(bad).expect_err(bad);
            assert!(error.contains(bad.trim()), "{error}");
        }
    }
}

//! Where a rank's node listens: `PP_LAUNCHER_HOST`, else the host's name resolved. A run
//! on several hosts never listens on loopback (Debian maps the host name to 127.0.1.1):
//! then the first address of an interface that is up takes its place.

use std::net::{IpAddr, ToSocketAddrs};

use super::detect::Launch;
use super::error::LauncherError;

/// The variable with the address a rank's node listens on (an IP address or a host name);
/// unset, the host's name resolved.
pub const LAUNCHER_HOST_ENV: &str = "PP_LAUNCHER_HOST";

/// The address this rank's node listens on (the port is chosen by the system).
///
/// # Errors
/// [`LauncherError::Address`] when the name does not resolve, or resolves to loopback only
/// on a run of several hosts with no other interface.
pub(super) fn listen_address(launch: &Launch) -> Result<IpAddr, LauncherError> {
    let named = std::env::var(LAUNCHER_HOST_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let explicit = named.is_some();
    let host = match named {
        Some(host) => host.trim().to_owned(),
        None => crate::node::sys::host_name().unwrap_or_else(|| "localhost".into()),
    };
    let fail = |reason: String| LauncherError::Address {
        host: host.clone(),
        reason,
    };
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .map(|a| a.ip())
            // Not loopback first, then IPv4 first.
            .min_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()))
            .ok_or_else(|| fail("it has no address".into()))?,
    };
    let one_host = launch.hosts.is_none_or(|hosts| hosts <= 1);
    if explicit || one_host || !ip.is_loopback() {
        return Ok(ip);
    }
    let interface = if_addrs::get_if_addrs()
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| !ip.is_loopback())
        .min_by_key(IpAddr::is_ipv6)
        .ok_or_else(|| {
            fail(format!(
                "it resolves to {ip}, which the other hosts cannot reach, and no other \
                 interface is up"
            ))
        })?;
    pp_runtime::debug!(
        "launcher: {host} resolves to {ip}, a loopback address: listening on {interface}"
    );
    Ok(interface)
}

#[cfg(test)]
mod tests {
    use super::super::detect::Kind;
    use super::*;

    #[test]
    fn a_host_name_resolves_to_an_address() {
        let launch = Launch {
            kind: Kind::Mpi,
            rank: 1,
            size: 2,
            hosts: Some(1),
            run_id: "x".into(),
        };
        // This machine's name, as a rank started here would use it.
        assert!(listen_address(&launch).is_ok());
    }
}

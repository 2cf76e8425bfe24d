//! The discovery datagrams, byte for byte.
//!
//! Every datagram starts with the same 8-byte header; integers are fixed-width
//! little-endian:
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 4    | magic `b"PPDS"`                                    |
//! | 4      | 1    | version, [`DISCOVERY_VERSION`]                     |
//! | 5      | 1    | kind: 1 = probe, 2 = announcement                  |
//! | 6      | 2    | reserved, sent as 0 and ignored                    |
//!
//! A probe is the header alone. An announcement goes on with:
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 8      | 2    | the node's job (TCP) port, not 0                   |
//! | 10     | 4    | worker processes the node starts per client        |
//! | 14     | 8    | the node's identifier, random at each start        |
//! | 22     | 1    | length of the name, at most [`MAX_NAME`]           |
//! | 23     | n    | the node's host name, UTF-8, for logs only         |
//!
//! A node answers a probe with an announcement whose name is empty (23 bytes), so that
//! the answer is at most 2.9 times the probe; the name comes with the announcements a node
//! sends unprompted. A probe cannot be padded to the answer's size without a new version:
//! nodes of this version refuse bytes after a probe's header.
//!
//! So a datagram is at most [`MAX_DATAGRAM`] bytes; anything else (another magic, another
//! version, a length that does not add up, trailing bytes) is refused with a [`WireError`].
//! Nothing here is secret: an announcement only says where a node listens, and a client
//! still has to pass the node's authentication. A change to the layout comes with a new
//! version; the golden-byte tests below fail if the encoding drifts.

use std::fmt;

/// The first four bytes of every discovery datagram.
pub const MAGIC: [u8; 4] = *b"PPDS";

/// The version of the discovery datagrams described in this module.
pub const DISCOVERY_VERSION: u8 = 1;

/// Longest node name an announcement carries, in bytes (longer names are cut).
pub const MAX_NAME: usize = 64;

/// Size of the common header.
const HEADER: usize = 8;

/// Size of an announcement without its name.
const ANNOUNCE_FIXED: usize = HEADER + 2 + 4 + 8 + 1;

/// Largest valid datagram: an announcement with the longest name.
pub const MAX_DATAGRAM: usize = ANNOUNCE_FIXED + MAX_NAME;

const KIND_PROBE: u8 = 1;
const KIND_ANNOUNCE: u8 = 2;

/// One discovery datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// Client to nodes: who is there? Nodes answer with an announcement sent to the probe's
    /// source address.
    Probe,
    /// Node to clients: here I am.
    Announce(Announcement),
}

/// What a node says about itself. Its IP address is the datagram's source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The TCP port the node takes jobs on.
    pub job_port: u16,
    /// Worker processes the node starts for each client.
    pub workers: u32,
    /// Random at each start of the node: a new value from a known address means the node
    /// restarted.
    pub node_id: u64,
    /// The node's host name, for logs (at most [`MAX_NAME`] bytes).
    pub name: String,
}

/// Why a datagram is not a discovery datagram pp understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its kind requires.
    #[error("too short: {0} bytes")]
    TooShort(usize),
    /// Longer than its kind allows.
    #[error("{0} bytes where the datagram ends")]
    Trailing(usize),
    /// Not `PPDS`: some other protocol.
    #[error("not a pp discovery datagram (magic {0:02x?})")]
    Magic([u8; 4]),
    /// A version this build does not speak.
    #[error("discovery version {0}, this build speaks version {DISCOVERY_VERSION}")]
    Version(u8),
    /// A kind that is neither probe nor announcement.
    #[error("unknown datagram kind {0}")]
    Kind(u8),
    /// An announcement naming job port 0.
    #[error("announcement with job port 0")]
    PortZero,
    /// An announcement whose name is too long or not UTF-8.
    #[error("announcement with a bad name")]
    Name,
}

impl Datagram {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        out.extend_from_slice(&MAGIC);
        out.push(DISCOVERY_VERSION);
        match self {
            Datagram::Probe => {
                out.push(KIND_PROBE);
                out.extend_from_slice(&[0, 0]);
            }
            Datagram::Announce(a) => {
                out.push(KIND_ANNOUNCE);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&a.job_port.to_le_bytes());
                out.extend_from_slice(&a.workers.to_le_bytes());
                out.extend_from_slice(&a.node_id.to_le_bytes());
                let name = truncated(&a.name);
                // `truncated` keeps at most MAX_NAME (64) bytes, so the length fits a u8.
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out
    }

    /// Reads a datagram, refusing anything that is not exactly one valid datagram.
    ///
    /// # Errors
    /// A [`WireError`] saying what is wrong; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Datagram, WireError> {
        let header: &[u8; HEADER] = bytes
            .get(..HEADER)
            .and_then(|h| h.try_into().ok())
            .ok_or(WireError::TooShort(bytes.len()))?;
        let magic = [header[0], header[1], header[2], header[3]];
        if magic != MAGIC {
            return Err(WireError::Magic(magic));
        }
        if header[4] != DISCOVERY_VERSION {
            return Err(WireError::Version(header[4]));
        }
        match header[5] {
            KIND_PROBE => match bytes.len() - HEADER {
                0 => Ok(Datagram::Probe),
                extra => Err(WireError::Trailing(extra)),
            },
            KIND_ANNOUNCE => decode_announcement(bytes).map(Datagram::Announce),
            kind => Err(WireError::Kind(kind)),
        }
    }
}

fn decode_announcement(bytes: &[u8]) -> Result<Announcement, WireError> {
    let fixed: &[u8; ANNOUNCE_FIXED] = bytes
        .get(..ANNOUNCE_FIXED)
        .and_then(|f| f.try_into().ok())
        .ok_or(WireError::TooShort(bytes.len()))?;
    let job_port = u16::from_le_bytes([fixed[8], fixed[9]]);
    let workers = u32::from_le_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&fixed[14..22]);
    let name_len = usize::from(fixed[22]);
    if name_len > MAX_NAME {
        return Err(WireError::Name);
    }
    let rest = &bytes[ANNOUNCE_FIXED..];
    if rest.len() < name_len {
        return Err(WireError::TooShort(bytes.len()));
    }
    if rest.len() > name_len {
        return Err(WireError::Trailing(rest.len() - name_len));
    }
    if job_port == 0 {
        return Err(WireError::PortZero);
    }
    let name = std::str::from_utf8(rest).map_err(|_| WireError::Name)?;
    Ok(Announcement {
        job_port,
        workers,
        node_id: u64::from_le_bytes(id),
        name: name.to_owned(),
    })
}

/// `name` cut to at most [`MAX_NAME`] bytes, at a character boundary.
fn truncated(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl fmt::Display for Announcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nodes answer probes without their name (see the announcer).
        if !self.name.is_empty() {
            write!(f, "{} ", self.name)?;
        }
        write!(
            f,
            "(port {}, {} workers, id {:016x})",
            self.job_port, self.workers, self.node_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(datagram: &Datagram, bytes: &[u8]) {
        assert_eq!(datagram.encode(), bytes, "encoding of {datagram:?} drifted");
        assert_eq!(&Datagram::decode(bytes).unwrap(), datagram);
    }

    #[test]
    fn golden_probe() {
        golden(&Datagram::Probe, b"PPDS\x01\x01\x00\x00");
    }

    #[test]
    fn golden_announcement() {
        let announcement = Announcement {
            job_port: 60000,
            workers: 3,
            node_id: 0x0102_0304_0506_0708,
            name: "n1".into(),
        };
        let mut bytes = b"PPDS\x01\x02\x00\x00".to_vec();
        bytes.extend_from_slice(&[0x60, 0xEA]); // 60000
        bytes.extend_from_slice(&[3, 0, 0, 0]);
        bytes.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
        bytes.extend_from_slice(&[2, b'n', b'1']);
        golden(&Datagram::Announce(announcement), &bytes);
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let name = "é".repeat(MAX_NAME); // 2 bytes each
        let bytes = Datagram::Announce(Announcement {
            job_port: 1,
            workers: 1,
            node_id: 1,
            name,
        })
        .encode();
        assert_eq!(bytes.len(), MAX_DATAGRAM);
        match Datagram::decode(&bytes).unwrap() {
            Datagram::Announce(a) => assert_eq!(a.name, "é".repeat(MAX_NAME / 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_reserved_bytes_are_ignored() {
        assert_eq!(
            Datagram::decode(b"PPDS\x01\x01\xff\xff").unwrap(),
            Datagram::Probe
        );
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let good = Datagram::Announce(Announcement {
            job_port: 7,
            workers: 1,
            node_id: 9,
            name: "ab".into(),
        })
        .encode();
        let mut cases: Vec<(Vec<u8>, WireError)> = vec![
            (vec![], WireError::TooShort(0)),
            (b"PPDS\x01".to_vec(), WireError::TooShort(5)),
            (b"XXXX\x01\x01\x00\x00".to_vec(), WireError::Magic(*b"XXXX")),
            (b"PPDS\x02\x01\x00\x00".to_vec(), WireError::Version(2)),
            (b"PPDS\x01\x09\x00\x00".to_vec(), WireError::Kind(9)),
            (b"PPDS\x01\x01\x00\x00!".to_vec(), WireError::Trailing(1)),
            (good[..good.len() - 1].to_vec(), WireError::TooShort(24)),
            ([&good[..], b"x"].concat(), WireError::Trailing(1)),
        ];
        let mut zero_port = good.clone();
        zero_port[8..10].copy_from_slice(&[0, 0]);
        cases.push((zero_port, WireError::PortZero));
        let mut long_name = good.clone();
        long_name[22] = 65;
        cases.push((long_name, WireError::Name));
        let mut not_utf8 = good.clone();
        not_utf8[23] = 0xff;
        cases.push((not_utf8, WireError::Name));
        for (bytes, expected) in cases {
            assert_eq!(Datagram::decode(&bytes), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic generator: every length up to past the maximum, with
        // the valid header often enough to reach the deeper checks.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for round in 0..20_000 {
            let len = round % (MAX_DATAGRAM + 8);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if round % 2 == 0 && len >= 6 {
                bytes[..5].copy_from_slice(b"PPDS\x01");
                bytes[5] = 1 + (round % 3) as u8;
            }
            let _ = Datagram::decode(&bytes);
        }
    }
}

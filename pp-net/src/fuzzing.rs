//! Harnesses for the fuzz targets in `fuzz/` and their regression tests. Not public API:
//! compiled only with the `fuzzing` feature (and in this crate's tests).
//!
//! Each harness takes arbitrary bytes, drives the real code with them, and panics only when
//! a property the protocol promises is broken; an error returned by the code under test is
//! the expected outcome for most inputs.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use snow::StatelessTransportState;

use crate::channel::frame::{self, FRAME_HEADER};
use crate::channel::{preamble, ChannelConfig, NetError, Peer, Secret, SecureReader};
use crate::protocol::Message;

/// Largest message the frame harness accepts: small enough for speed, large enough that
/// messages span several segments.
const MAX_MESSAGE: u32 = 1 << 18;

/// Polls a future that never waits (its reader is a byte slice) to completion.
fn run_ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a read from a byte slice waited"),
    }
}

/// Both ends of one session with fixed keys, made once: (sender, receiver). The states
/// are stateless (each side counts its own nonces), so every run starts from nonce 0.
fn session() -> &'static (Arc<StatelessTransportState>, Arc<StatelessTransportState>) {
    static SESSION: OnceLock<(Arc<StatelessTransportState>, Arc<StatelessTransportState>)> =
        OnceLock::new();
    SESSION.get_or_init(|| {
        let (i, r) = new_session();
        (Arc::new(i), Arc::new(r))
    })
}

fn new_session() -> (StatelessTransportState, StatelessTransportState) {
    let params: snow::params::NoiseParams = crate::channel::handshake::NOISE_PARAMS
        .parse()
        .expect("valid Noise parameters");
    let psk = [7u8; 32];
    let build = |initiator: bool| {
        let builder = snow::Builder::new(params.clone())
            .psk(0, &psk)
            .expect("a 32-byte psk");
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .expect("a handshake state")
    };
    let (mut i, mut r) = (build(true), build(false));
    let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
    let n = i.write_message(&[], &mut a).expect("message 1");
    r.read_message(&a[..n], &mut b).expect("message 1 reads");
    let n = r.write_message(&[], &mut a).expect("message 2");
    i.read_message(&a[..n], &mut b).expect("message 2 reads");
    (
        i.into_stateless_transport_mode().expect("transport"),
        r.into_stateless_transport_mode().expect("transport"),
    )
}

/// Frame decoder: builds a stream of genuine frames and damage from `data`, reads it with
/// a [`SecureReader`], and checks that exactly the frames before the first damage
/// come out, in order, followed by an error: no forged, reordered or lost message, no
/// panic, no allocation beyond the limit.
///
/// `data` is a script of operations, each an opcode byte and its operands:
/// `0 len bytes..` a genuine frame; `1 len bytes..` raw bytes; `2 pos pos x` xor a byte;
/// `3 pos pos` cut the stream; `4 kib` a genuine frame of `kib` KiB (several segments).
pub fn frame_stream(data: &[u8]) {
    let (sender, receiver) = session();
    let receiver = Arc::clone(receiver);
    let mut stream = Vec::new();
    // The intact prefix of the stream: genuine frames with consecutive nonces from 0, as
    // (end of the frame in the stream, next nonce after it, message). Whatever follows it
    // is damage.
    let mut intact: Vec<(usize, u64, Vec<u8>)> = Vec::new();
    let mut flipped = std::collections::BTreeSet::new();
    let (mut nonce, mut out, mut scratch) = (0u64, Vec::new(), Vec::new());
    let mut ops = data.iter().copied();
    let position = |ops: &mut std::iter::Copied<std::slice::Iter<'_, u8>>, len: usize| {
        usize::from(u16::from_le_bytes([
            ops.next().unwrap_or(0),
            ops.next().unwrap_or(0),
        ])) % len
    };
    while let Some(op) = ops.next() {
        match op % 5 {
            0 | 4 => {
                let n = usize::from(ops.next().unwrap_or(0));
                let message: Vec<u8> = if op % 5 == 0 {
                    ops.by_ref().take(n).collect()
                } else {
                    (0..n << 10).map(|i| i as u8).collect()
                };
                // It continues the intact prefix only if nothing else follows the prefix
                // and no sealed frame is missing from it (its nonce is the next one).
                let continues = stream.len() == intact.last().map_or(0, |f| f.0)
                    && nonce == intact.last().map_or(0, |f| f.1);
                frame::seal(sender, &mut nonce, &message, &mut out, &mut scratch)
                    .expect("a frame below the limit seals");
                stream.extend_from_slice(&out);
                if continues {
                    intact.push((stream.len(), nonce, message));
                }
            }
            1 => {
                let n = usize::from(ops.next().unwrap_or(0));
                stream.extend(ops.by_ref().take(n));
            }
            2 | 3 if stream.is_empty() => {}
            2 => {
                let pos = position(&mut ops, stream.len());
                let x = ops.next().unwrap_or(1).max(1);
                // Each byte is changed once: a second flip could undo the first.
                if flipped.insert(pos) {
                    stream[pos] ^= x;
                    intact.retain(|(end, ..)| *end <= pos);
                }
            }
            _ => {
                let pos = position(&mut ops, stream.len());
                stream.truncate(pos);
                flipped.retain(|&p| p < pos);
                intact.retain(|(end, ..)| *end <= pos);
            }
        }
    }
    let config = ChannelConfig {
        max_message: MAX_MESSAGE,
        ..ChannelConfig::default()
    };
    let mut reader = SecureReader::new(&stream[..], Peer(None), receiver, config);
    for (end, _, message) in &intact {
        match run_ready(reader.recv_bytes()) {
            Ok(received) => assert_eq!(&received, message, "frame ending at {end}"),
            Err(error) => panic!("the intact frame ending at {end} was refused: {error}"),
        }
    }
    // Past the damage (or at the end) only errors come.
    for _ in 0..4 {
        if let Ok(received) = run_ready(reader.recv_bytes()) {
            panic!(
                "a damaged stream gave a message of {} bytes",
                received.len()
            );
        }
    }
    // The clear header of a frame is never trusted for more than the limit.
    if stream.len() >= FRAME_HEADER {
        let mut out = Vec::new();
        let _ = frame::open(
            &session().1,
            &mut 0,
            &stream[FRAME_HEADER..],
            MAX_MESSAGE,
            &mut out,
            &mut Vec::new(),
        );
        assert!(out.capacity() <= MAX_MESSAGE as usize + 65536);
    }
}

/// The runtime the handshake harness runs on: the handshake needs a timer.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

fn secret() -> &'static Secret {
    static SECRET: OnceLock<Secret> = OnceLock::new();
    SECRET.get_or_init(|| Secret::new("the fuzzing secret").expect("a non-empty secret"))
}

/// Handshake state machine: plays `data` as the peer of a server (first byte even) or of a
/// client (odd), after a genuine preamble and, for the server, a genuine first Noise
/// message when the first byte asks for them. Someone who does not hold the session keys
/// wrote the rest, so the handshake must fail, cleanly and quickly: an `Ok` would be an
/// authentication bypass.
pub fn handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if mode & 2 != 0 {
        input.extend_from_slice(&preamble::ours());
    }
    if mode & 1 == 0 && mode & 6 == 6 {
        // A genuine first message from a client with the right secret: the server gets as
        // far as the confirmation, which the rest of the input cannot forge.
        let prologue = [preamble::ours(), preamble::ours()].concat();
        let params = crate::channel::handshake::NOISE_PARAMS
            .parse()
            .expect("valid Noise parameters");
        let mut client = snow::Builder::new(params)
            .psk(0, secret().psk())
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .expect("an initiator");
        let mut message = [0u8; 128];
        let n = client.write_message(&[], &mut message).expect("message 1");
        input.extend_from_slice(&(n as u16).to_le_bytes());
        input.extend_from_slice(&message[..n]);
    }
    input.extend_from_slice(rest);
    let config = ChannelConfig {
        handshake_timeout: Duration::from_secs(5),
        ..ChannelConfig::default()
    };
    let outcome: Result<(), NetError> = runtime().block_on(async {
        if mode & 1 == 0 {
            crate::channel::server_handshake(
                &input[..],
                tokio::io::sink(),
                Peer(None),
                secret(),
                config,
            )
            .await
            .map(drop)
        } else {
            crate::channel::client_handshake(
                &input[..],
                tokio::io::sink(),
                Peer(None),
                secret(),
                config,
            )
            .await
            .map(drop)
        }
    });
    match outcome {
        Ok(()) => panic!("a handshake with a peer that holds no session keys succeeded"),
        Err(NetError::HandshakeTimeout { .. }) => {
            panic!("a handshake from a finished byte slice waited for its timeout")
        }
        Err(_) => {}
    }
}

/// Message decoding: a node decodes every authentic frame as a [`Message`] with its limit.
/// Whatever decodes must encode back to the same bytes (one encoding per value), and a
/// claimed length never allocates past the limit.
pub fn message(data: &[u8]) {
    if let Ok(message) = pp_runtime::codec::decode_with_limit::<Message>(data, 1 << 20) {
        let again = pp_runtime::codec::encode(&message).expect("a decoded message encodes");
        assert_eq!(again, data, "{message:?} has two encodings");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `task_arguments` (2026-12-06): a run time whose nanoseconds were a second
    /// or more decoded (serde carries them into the seconds) and encoded back differently.
    #[test]
    fn a_duration_has_one_encoding() {
        message(&[
            6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 1, 0, 2, 73, 0, 0, 0, 0, 92, 255, 255, 255,
        ]);
    }

    #[test]
    fn intact_frames_come_through_and_damage_is_refused() {
        // Two frames, one of three segments, then a flipped byte in the second.
        frame_stream(&[0, 3, b'a', b'b', b'c', 4, 150]);
        frame_stream(&[0, 3, b'a', b'b', b'c', 4, 150, 2, 40, 0, 1]);
        frame_stream(&[0, 1, b'x', 3, 10, 0, 0, 2, b'y', b'z', 1, 4, 1, 2, 3, 4]);
        frame_stream(&[]);
    }

    /// Found by the fuzzer: raw bytes cut away entirely, then a genuine frame; and a frame
    /// cut twice, then a genuine frame (bugs of the harness's model of the stream, not of
    /// the decoder).
    #[test]
    fn regression_cuts_then_a_frame() {
        frame_stream(&[1, 1, 0, 48, 198, 176, 23, 0]);
        frame_stream(&[
            0x40, 0xff, 0x8a, 0x28, 0x4b, 0x58, 0x31, 0x8a, 0x28, 0x4b, 0x58,
        ]);
        // Two frames of several segments each: nonces count segments, not frames.
        frame_stream(&[0x18, 0x8d, 0x04, 0xf9]);
        // The same byte flipped twice, which restores it.
        frame_stream(&[0x04, 0x0c, 0xf9, 0x9d, 0, 0, 0x25, 0, 0, 0, 0x0c]);
    }

    #[test]
    fn forged_handshakes_fail_in_every_mode() {
        for mode in 0..8u8 {
            handshake(&[mode]);
            handshake(&[mode, 2, 0, 1, 2]);
            handshake(&[mode, 48, 0, 9, 9, 9]);
        }
    }

    #[test]
    fn messages_have_one_encoding() {
        message(&[7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        message(&[
            2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0,
        ]);
    }
}

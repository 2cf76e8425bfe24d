//! Tests of sealing and opening frames: layout, round trips, parts and batches, and
//! every kind of damage.

use snow::StatelessTransportState;

use super::layout::MAX_NOISE_MESSAGE;
use super::seal::seal_parts;
use super::*;

/// Two ends of an in-memory session: (initiator, responder).
fn session() -> (StatelessTransportState, StatelessTransportState) {
    let psk = [7u8; 32];
    let params: snow::params::NoiseParams =
        crate::channel::handshake::NOISE_PARAMS.parse().unwrap();
    let mut i = snow::Builder::new(params.clone())
        .psk(0, &psk)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut r = snow::Builder::new(params)
        .psk(0, &psk)
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
    let n = i.write_message(&[], &mut a).unwrap();
    r.read_message(&a[..n], &mut b).unwrap();
    let n = r.write_message(&[], &mut a).unwrap();
    i.read_message(&a[..n], &mut b).unwrap();
    (
        i.into_stateless_transport_mode().unwrap(),
        r.into_stateless_transport_mode().unwrap(),
    )
}

fn sealed(cipher: &StatelessTransportState, nonce: &mut u64, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal(cipher, nonce, message, &mut out, &mut Vec::new()).unwrap();
    out
}

fn opened(
    cipher: &StatelessTransportState,
    nonce: &mut u64,
    frame: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    open(
        cipher,
        nonce,
        &frame[FRAME_HEADER..],
        u32::MAX,
        &mut out,
        &mut Vec::new(),
    )?;
    Ok(out)
}

#[test]
fn layout_matches_body_len() {
    let (c, _) = session();
    for len in [0usize, 1, 65515, 65516, 65519, 200_000] {
        let frame = sealed(&c, &mut 0, &vec![9u8; len]);
        let body = u32::from_le_bytes(frame[..4].try_into().unwrap());
        assert_eq!(u64::from(body), body_len(len as u64), "len {len}");
        assert_eq!(frame.len(), FRAME_HEADER + body as usize);
    }
}

#[test]
fn round_trip_across_segments_and_nonces() {
    let (c, s) = session();
    let (mut wn, mut rn) = (0, 0);
    for len in [0usize, 5, 65515, 65516, 300_000] {
        let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let frame = sealed(&c, &mut wn, &message);
        assert_eq!(opened(&s, &mut rn, &frame).unwrap(), message);
    }
    assert_eq!(wn, rn);
}

#[test]
fn a_message_in_parts_seals_as_the_whole_message() {
    let (c, s) = session();
    let message: Vec<u8> = (0..400_000u32).map(|i| (i * 7) as u8).collect();
    let cuts: [&[usize]; 5] = [
        &[],
        &[0, 0, 10],
        &[10, 70_010, 70_015, 201_053, 201_053],
        &[65_515, 131_034],
        &[399_999],
    ];
    for cut in cuts {
        let mut parts = Vec::new();
        let mut start = 0;
        for &end in cut {
            parts.push(&message[start..end]);
            start = end;
        }
        parts.push(&message[start..]);
        let (mut whole, mut pieces, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        seal(&c, &mut 3, &message, &mut whole, &mut scratch).unwrap();
        let mut nonce = 3;
        seal_parts(&c, &mut nonce, &parts, &mut pieces, &mut scratch).unwrap();
        assert!(whole == pieces, "cut at {cut:?}");
        let mut rn = 3;
        assert_eq!(opened(&s, &mut rn, &pieces).unwrap(), message);
        assert_eq!(nonce, rn);
    }
}

#[test]
fn batches_of_segments_are_the_whole_frame() {
    let (c, _) = session();
    let message: Vec<u8> = (0..300_000u32).map(|i| (i * 3) as u8).collect();
    let parts: [&[u8]; 2] = [&message[..100], &message[100..]];
    let whole = sealed(&c, &mut 5, &message);
    for batch in [0, 1, 70_000, 200_000, usize::MAX] {
        let mut sealer = Sealer::new(&parts, 5).unwrap();
        let (mut joined, mut out, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            out.clear();
            let done = sealer.seal_some(&c, &mut out, &mut scratch, batch).unwrap();
            joined.extend_from_slice(&out);
            if done {
                break;
            }
        }
        assert!(joined == whole, "batch {batch}");
        assert_eq!(sealer.next_nonce(), 5 + 5, "five segments");
    }
}

#[test]
fn a_body_opened_as_it_arrives_is_the_message() {
    let (c, s) = session();
    let message: Vec<u8> = (0..200_000u32).map(|i| (i * 5) as u8).collect();
    let frame = sealed(&c, &mut 0, &message);
    let body = &frame[FRAME_HEADER..];
    // A reused buffer, longer than the message: its stale bytes stay past the end.
    let mut out = vec![0xEE; 300_000];
    for step in [1usize, 1000, 65_537, 100_000] {
        let mut opener = Opener::new(body.len() as u32, 0, u32::MAX);
        let (mut arrived, mut opened, mut scratch) = (0, 0, Vec::new());
        while opener.left() > 0 {
            arrived = (arrived + step).min(body.len());
            while let Some(taken) = opener
                .open_next(&s, &body[opened..arrived], &mut out, &mut scratch)
                .unwrap()
            {
                opened += taken;
            }
        }
        let (next, len) = opener.finish().unwrap();
        assert_eq!((next, len), (4, message.len()), "step {step}");
        assert!(out[..len] == message[..], "step {step}");
    }
}

#[test]
fn dropping_the_last_segment_is_detected() {
    let (c, s) = session();
    let frame = sealed(&c, &mut 0, &vec![1u8; 100_000]);
    // Keep only the first segment and fix up the clear length: each remaining
    // segment authenticates, but the authenticated length gives the cut away.
    let first = 4 + 2 + MAX_NOISE_MESSAGE;
    let mut cut = frame[..first].to_vec();
    cut[..4].copy_from_slice(&((first - 4) as u32).to_le_bytes());
    let mut nonce = 0;
    assert!(opened(&s, &mut nonce, &cut).is_err());
    assert_eq!(nonce, 0, "a rejected frame consumes no nonce");
}

#[test]
fn every_flipped_byte_is_rejected() {
    let (c, s) = session();
    let frame = sealed(&c, &mut 0, b"hello");
    for i in FRAME_HEADER..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x01;
        assert!(opened(&s, &mut 0, &bad).is_err(), "byte {i}");
    }
}

#[test]
fn replayed_frame_is_rejected() {
    let (c, s) = session();
    let mut wn = 0;
    let frame = sealed(&c, &mut wn, b"once");
    let mut rn = 0;
    opened(&s, &mut rn, &frame).unwrap();
    assert!(opened(&s, &mut rn, &frame).is_err());
}

#[test]
fn limit_applies_to_the_authenticated_length() {
    let (c, s) = session();
    let frame = sealed(&c, &mut 0, &[0u8; 100]);
    let mut out = Vec::new();
    let err = open(&s, &mut 0, &frame[4..], 99, &mut out, &mut Vec::new()).unwrap_err();
    assert!(err.contains("above the limit"));
}

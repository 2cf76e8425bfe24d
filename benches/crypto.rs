//! The channel's two crypto backends side by side (issue 17): ring's primitives, which pp
//! uses where a C compiler for the target is at hand (Linux, Windows, the BSDs), and
//! RustCrypto's pure-Rust ones (snow's default resolver), which it uses on Apple's systems.
//!
//! Run with `cargo bench --bench crypto`; it prints a Markdown table for BENCHMARKS.md.
//! Both backends run here, in the same process, on the channel's Noise pattern
//! (`Noise_NNpsk0_25519_AESGCM_SHA256`, see pp-net's `channel::handshake`):
//!
//! * **handshake**: both sides of one handshake, in memory (two X25519 key pairs, two DH,
//!   the PSK mix, SHA-256 and AES-GCM on the two messages). ring has no X25519 with which
//!   snow can do this, so both backends use curve25519-dalek for it, as pp does.
//! * **seal** / **open**: AES-256-GCM over full Noise messages (65,519 bytes of plaintext
//!   each, the channel's segment), with the stateless transport the channel uses; MB/s of
//!   plaintext.

#[cfg(not(target_vendor = "apple"))]
mod bench {
    use snow::params::NoiseParams;
    use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
    use snow::{Builder, StatelessTransportState};
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    const PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
    /// Plaintext of one full Noise message (65,535 bytes with the 16-byte tag).
    const SEGMENT: usize = 65_535 - 16;
    /// Bytes sealed and opened per bulk sample.
    const BULK: usize = 64 << 20;
    const HANDSHAKES: usize = 2_000;
    const RUNS: usize = 5;

    /// A backend by name.
    fn resolver(backend: &str) -> BoxedCryptoResolver {
        match backend {
            "ring" => Box::new(FallbackResolver::new(
                Box::new(RingResolver),
                Box::new(DefaultResolver),
            )),
            _ => Box::new(DefaultResolver),
        }
    }

    fn builder(backend: &str) -> Builder<'static> {
        let params: NoiseParams = PARAMS.parse().expect("the channel's pattern");
        Builder::with_resolver(params, resolver(backend))
            .psk(0, &[7; 32])
            .expect("a 32-byte key")
    }

    /// One whole handshake; returns the two ends' transports.
    fn handshake(backend: &str) -> (StatelessTransportState, StatelessTransportState) {
        let mut initiator = builder(backend).build_initiator().expect("an initiator");
        let mut responder = builder(backend).build_responder().expect("a responder");
        let (mut message, mut payload) = ([0u8; 256], [0u8; 256]);
        let len = initiator
            .write_message(&[], &mut message)
            .expect("message 1");
        responder
            .read_message(&message[..len], &mut payload)
            .expect("message 1 read");
        let len = responder
            .write_message(&[], &mut message)
            .expect("message 2");
        initiator
            .read_message(&message[..len], &mut payload)
            .expect("message 2 read");
        (
            initiator.into_stateless_transport_mode().expect("done"),
            responder.into_stateless_transport_mode().expect("done"),
        )
    }

    fn median(mut samples: Vec<f64>) -> f64 {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    /// Handshakes per second.
    fn handshakes(backend: &str) -> f64 {
        median(
            (0..RUNS)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..HANDSHAKES {
                        black_box(handshake(backend));
                    }
                    HANDSHAKES as f64 / start.elapsed().as_secs_f64()
                })
                .collect(),
        )
    }

    /// MB/s sealed, and MB/s opened.
    fn bulk(backend: &str) -> (f64, f64) {
        let (sender, receiver) = handshake(backend);
        let plain = vec![0x5a; SEGMENT];
        let mut sealed = vec![0; SEGMENT + 16];
        let mut opened = vec![0; SEGMENT];
        let segments = BULK / SEGMENT;
        let rate = |elapsed: Duration| (segments * SEGMENT) as f64 / elapsed.as_secs_f64() / 1e6;
        let (mut seal, mut open) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let start = Instant::now();
            for nonce in 0..segments as u64 {
                sender
                    .write_message(nonce, &plain, &mut sealed)
                    .expect("sealed");
            }
            seal.push(rate(start.elapsed()));
            let start = Instant::now();
            for _ in 0..segments {
                // The last nonce's segment, opened again and again: the same work.
                receiver
                    .read_message(segments as u64 - 1, &sealed, &mut opened)
                    .expect("opened");
            }
            open.push(rate(start.elapsed()));
        }
        (median(seal), median(open))
    }

    pub(crate) fn main() {
        println!(
            "| backend | handshakes/s (both sides) | seal MB/s | open MB/s |\n|---|---:|---:|---:|"
        );
        for (backend, name) in [
            ("ring", "ring (Linux, Windows, BSDs)"),
            ("rust", "RustCrypto (macOS)"),
        ] {
            let per_second = handshakes(backend);
            let (seal, open) = bulk(backend);
            println!("| {name} | {per_second:.0} | {seal:.0} | {open:.0} |");
        }
    }
}

fn main() {
    #[cfg(not(target_vendor = "apple"))]
    bench::main();
    #[cfg(target_vendor = "apple")]
    println!("skipped: pp uses RustCrypto's primitives only on this system (no ring)");
}

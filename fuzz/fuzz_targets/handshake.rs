//! Fuzzes the handshake state machine on both sides: arbitrary bytes (after an optional
//! genuine preamble and first message) must never authenticate, panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pp_net::fuzzing::handshake(data);
});

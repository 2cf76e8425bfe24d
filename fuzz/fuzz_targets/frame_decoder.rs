//! Fuzzes the frame decoder: genuine frames, raw bytes, flipped bytes and cuts, read back
//! by a `SecureReader` (see `pp_net::fuzzing::frame_stream` for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pp_net::fuzzing::frame_stream(data);
});

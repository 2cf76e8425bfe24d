//! Golden bytes of the codec: the same value has the same bytes on every target (a node of
//! another architecture decodes what this one encodes), so every primitive whose width or
//! byte order could depend on the target is pinned here: `usize`/`isize` travel as 64-bit
//! integers and floats as their IEEE 754 bits, all little-endian; a `char` as its UTF-8
//! bytes, which have no byte order.

use super::{decode, encode};

fn golden<T>(value: T, bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(encode(&value).unwrap(), bytes, "encoding of {value:?}");
    assert_eq!(decode::<T>(bytes).unwrap(), value, "decoding of {bytes:?}");
}

#[test]
fn pointer_sized_integers_are_64_bit_little_endian() {
    golden(0x0102_0304usize, &[4, 3, 2, 1, 0, 0, 0, 0]);
    golden(-2isize, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    golden(isize::MIN as i64, &[0, 0, 0, 0, 0, 0, 0, 0x80]);
    // A value a 32-bit target cannot hold is refused there, never truncated.
    let big = encode(&(u64::from(u32::MAX) + 1)).unwrap();
    match usize::BITS {
        64 => assert_eq!(
            decode::<usize>(&big).unwrap() as u64,
            u64::from(u32::MAX) + 1
        ),
        _ => assert!(decode::<usize>(&big).is_err()),
    }
}

#[test]
fn fixed_width_integers_are_little_endian() {
    golden(0x0102u16, &[2, 1]);
    golden(-1i32, &[0xFF; 4]);
    golden(0x0102_0304_0506_0708u64, &[8, 7, 6, 5, 4, 3, 2, 1]);
    golden(
        1u128 << 64,
        &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
    );
    golden(-3i8, &[0xFD]);
}

#[test]
fn floats_are_ieee_754_bits_little_endian() {
    golden(1.0f64, &[0, 0, 0, 0, 0, 0, 0xF0, 0x3F]);
    golden(-2.5f32, &[0, 0, 0x20, 0xC0]);
    golden(f64::INFINITY, &[0, 0, 0, 0, 0, 0, 0xF0, 0x7F]);
    // NaN is not equal to itself: its bits are pinned instead.
    let nan = f64::from_bits(0x7FF8_0000_0000_0001);
    assert_eq!(encode(&nan).unwrap(), [1, 0, 0, 0, 0, 0, 0xF8, 0x7F]);
    assert_eq!(
        decode::<f64>(&encode(&nan).unwrap()).unwrap().to_bits(),
        nan.to_bits()
    );
}

#[test]
fn chars_bools_and_options_have_one_encoding() {
    // bincode 1 writes a char as its UTF-8 bytes (1 to 4), the same everywhere.
    golden('A', &[0x41]);
    golden('é', &[0xC3, 0xA9]);
    golden('🦀', &[0xF0, 0x9F, 0xA6, 0x80]);
    golden(true, &[1]);
    golden(Some(7u8), &[1, 7]);
    golden(None::<u8>, &[0]);
    golden((1u8, 'x'), &[1, b'x']);
}

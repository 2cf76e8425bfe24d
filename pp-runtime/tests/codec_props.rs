//! Property tests of the codec: every value of the shapes jobs use comes back equal from
//! its encoding, the encoding is the documented fixed-width layout, and no input, however
//! broken, makes decoding panic or allocate past its limit.

use std::collections::BTreeMap;

use pp_runtime::codec::{decode, decode_with_limit, encode};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Point { x: i64, y: i64 },
    Named(String, Vec<u32>),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        (any::<i64>(), any::<i64>()).prop_map(|(x, y)| Shape::Point { x, y }),
        (".{0,12}", prop::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(name, values)| Shape::Named(name, values)),
    ]
}

/// Arguments of the kinds `#[pp::parallel]` functions take, as one tuple.
type Args = (
    u64,
    i32,
    String,
    Vec<u8>,
    Option<u64>,
    Vec<(u16, bool)>,
    char,
    BTreeMap<String, Shape>,
);

fn args() -> impl Strategy<Value = Args> {
    (
        any::<u64>(),
        any::<i32>(),
        ".{0,24}",
        prop::collection::vec(any::<u8>(), 0..256),
        any::<Option<u64>>(),
        prop::collection::vec(any::<(u16, bool)>(), 0..16),
        any::<char>(),
        prop::collection::btree_map(".{0,6}", shape(), 0..6),
    )
}

proptest! {
    #[test]
    fn arguments_round_trip(value in args()) {
        let bytes = encode(&value).unwrap();
        prop_assert_eq!(decode::<Args>(&bytes).unwrap(), value);
    }

    #[test]
    fn floats_round_trip_bit_for_bit(
        value in any::<f64>(),
        values in prop::collection::vec(any::<f32>(), 0..16),
    ) {
        let bytes = encode(&(value, values.clone())).unwrap();
        let (back, backs): (f64, Vec<f32>) = decode(&bytes).unwrap();
        prop_assert_eq!(back.to_bits(), value.to_bits());
        prop_assert_eq!(
            backs.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn byte_vectors_are_a_length_then_the_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let encoded = encode(&bytes).unwrap();
        prop_assert_eq!(&encoded[..8], &(bytes.len() as u64).to_le_bytes()[..]);
        prop_assert_eq!(&encoded[8..], &bytes[..]);
    }

    #[test]
    fn arbitrary_bytes_decode_to_an_error_or_a_value_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        // The limit is far below what the lengths in random bytes claim.
        let _ = decode_with_limit::<Args>(&bytes, 4096);
        let _ = decode_with_limit::<Vec<Vec<String>>>(&bytes, 4096);
        if let Ok(value) = decode::<Vec<Shape>>(&bytes) {
            // What decodes encodes back to the same bytes: one encoding per value.
            prop_assert_eq!(encode(&value).unwrap(), bytes);
        }
    }

    #[test]
    fn a_claimed_length_beyond_the_limit_is_refused(
        claim in 4097u64..,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = claim.to_le_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(decode_with_limit::<Vec<u8>>(&bytes, 4096).is_err());
        prop_assert!(decode_with_limit::<String>(&bytes, 4096).is_err());
    }
}

//! The one place that encodes and decodes job arguments and results.
//!
//! The format is bincode 1 with fixed-width little-endian integers (`usize` as `u64`), so
//! the same value gives the same bytes on every platform and architecture. Decoding is
//! bounded: a length that claims more than [`DEFAULT_DECODE_LIMIT`] bytes is an error before
//! any memory is reserved for it. Nothing else in pp calls bincode.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest encoded value accepted by [`decode`] (and produced by [`encode`]): 1 GiB.
pub const DEFAULT_DECODE_LIMIT: u64 = 1 << 30;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }
}

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

/// Encodes a value in pp's portable format.
///
/// # Errors
/// When the value's `Serialize` fails or its encoding exceeds [`DEFAULT_DECODE_LIMIT`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    options(DEFAULT_DECODE_LIMIT)
        .serialize(value)
        .map_err(|e| CodecError(format!("cannot encode value: {e}")))
}

/// Decodes a value in pp's portable format, with at most [`DEFAULT_DECODE_LIMIT`] bytes.
///
/// # Errors
/// When the bytes are not a valid encoding of `T`, have trailing bytes, or claim more
/// memory than the limit.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(bytes, DEFAULT_DECODE_LIMIT)
}

/// Decodes a value with an explicit size limit in bytes.
///
/// # Errors
/// As [`decode`], with `limit` in place of the default.
pub fn decode_with_limit<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    options(limit)
        .deserialize(bytes)
        .map_err(|e| CodecError(format!("cannot decode {}: {e}", std::any::type_name::<T>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(encode(&1u32).unwrap(), vec![1, 0, 0, 0]);
        assert_eq!(
            encode(&(1u64, 2u8)).unwrap(),
            vec![1, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(
            encode(&3usize).unwrap(),
            vec![3, 0, 0, 0, 0, 0, 0, 0],
            "usize travels as u64"
        );
        assert_eq!(
            encode("ab").unwrap(),
            vec![2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn round_trip() {
        let v = (42u64, String::from("x"), vec![1.5f64, -2.0]);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<f64>)>(&bytes).unwrap(), v);
    }

    #[test]
    fn decode_bomb_is_refused() {
        // A Vec<u8> that claims 2^60 elements.
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }

    #[test]
    fn trailing_and_truncated_bytes_are_errors() {
        assert!(decode::<u32>(&[1, 0, 0, 0, 9]).is_err());
        assert!(decode::<u32>(&[1, 0]).is_err());
    }
}

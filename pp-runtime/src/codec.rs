//! The one place that encodes and decodes job arguments and results.
//!
//! The format is bincode 1 with fixed-width little-endian integers (`usize` as `u64`), so
//! the same value gives the same bytes on every platform and architecture. Decoding is
//! bounded: a length that claims more than [`DEFAULT_DECODE_LIMIT`] bytes is an error before
//! any memory is reserved for it. Nothing else in pp calls bincode.

use std::any::{Any, TypeId};

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest encoded value accepted by [`decode`] (and produced by [`encode`]): 1 GiB.
pub const DEFAULT_DECODE_LIMIT: u64 = 1 << 30;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    /// An error with this message.
    #[doc(hidden)]
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
#[doc(hidden)]
pub fn decode_with_limit<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    options(limit)
        .deserialize(bytes)
        .map_err(|e| CodecError(format!("cannot decode {}: {e}", std::any::type_name::<T>())))
}

/// Decodes a value that may borrow from `bytes` (`&str` and `&[u8]` fields point into
/// them, uncopied), with an explicit size limit in bytes.
///
/// # Errors
/// As [`decode`], with `limit` in place of the default.
#[doc(hidden)]
pub fn decode_borrowed<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    limit: u64,
) -> Result<T, CodecError> {
    options(limit)
        .deserialize(bytes)
        .map_err(|e| CodecError(format!("cannot decode {}: {e}", std::any::type_name::<T>())))
}

/// [`encode`] for a job's arguments or result: a `Vec<u8>` result, or a `Vec<u8>` that is
/// a job's only argument, goes as one length and one copy instead of a serde call per
/// byte. The bytes are the same as [`encode`]'s.
pub(crate) fn encode_payload<T: Serialize + 'static>(value: &T) -> Result<Vec<u8>, CodecError> {
    match byte_vector(value) {
        Some(bytes) => encode_byte_vector(bytes),
        None => encode(value),
    }
}

/// [`encode_payload`] if the encoding is at most `limit` bytes, else `Ok(None)`: found
/// out after encoding at most `limit` bytes (a large value costs little).
pub(crate) fn encode_payload_within<T: Serialize + 'static>(
    value: &T,
    limit: u64,
) -> Result<Option<Vec<u8>>, CodecError> {
    if let Some(bytes) = byte_vector(value) {
        return match bytes.len() as u64 + 8 > limit {
            true => Ok(None),
            false => encode_byte_vector(bytes).map(Some),
        };
    }
    match options(limit.min(DEFAULT_DECODE_LIMIT)).serialize(value) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if matches!(*error, bincode::ErrorKind::SizeLimit) => Ok(None),
        Err(error) => Err(CodecError(format!("cannot encode value: {error}"))),
    }
}

/// [`decode`] for what [`encode_payload`] wrote: same checks, same errors' meaning.
pub(crate) fn decode_payload<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, CodecError> {
    let wanted = TypeId::of::<T>();
    let block: Box<dyn Any> = if wanted == TypeId::of::<Vec<u8>>() {
        Box::new(decode_byte_vector::<T>(bytes)?)
    } else if wanted == TypeId::of::<(Vec<u8>,)>() {
        Box::new((decode_byte_vector::<T>(bytes)?,))
    } else {
        return decode(bytes);
    };
    match block.downcast::<T>() {
        Ok(value) => Ok(*value),
        // The type ids matched above, so this does not happen; the general path would
        // still give the right value.
        Err(_) => decode(bytes),
    }
}

/// The byte vector `value` is, or holds as a one-element tuple.
fn byte_vector<T: 'static>(value: &T) -> Option<&Vec<u8>> {
    let value = value as &dyn Any;
    value
        .downcast_ref::<Vec<u8>>()
        .or_else(|| value.downcast_ref::<(Vec<u8>,)>().map(|(bytes,)| bytes))
}

fn encode_byte_vector(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let len = bytes.len() as u64;
    if len > DEFAULT_DECODE_LIMIT - 8 {
        return Err(CodecError(format!(
            "cannot encode value: {len} bytes are above the limit of {DEFAULT_DECODE_LIMIT}"
        )));
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

/// A `u64` length and exactly that many bytes; `T` names the decoded type in errors.
fn decode_byte_vector<T>(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let error = |what: &str| {
        CodecError(format!(
            "cannot decode {}: {what}",
            std::any::type_name::<T>()
        ))
    };
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(error("the length is cut short"));
    };
    let len = u64::from_le_bytes(*len);
    if len > DEFAULT_DECODE_LIMIT - 8 {
        return Err(error("the length is above the limit"));
    }
    match (rest.len() as u64).cmp(&len) {
        std::cmp::Ordering::Less => Err(error("the bytes are cut short")),
        std::cmp::Ordering::Greater => Err(error("trailing bytes after the value")),
        std::cmp::Ordering::Equal => Ok(rest.to_vec()),
    }
}

/// Byte vectors as one length and one copy, for `#[serde(with = "pp::codec::bytes")]` on a
/// `Vec<u8>` field.
///
/// On the wire this is exactly what a plain `Vec<u8>` gives (a `u64` length, then the
/// bytes); it only spares serde a call per byte, which makes megabyte payloads several times
/// faster to encode and decode. pp's own messages use it for arguments and results, and a
/// task whose only argument or whose result is a `Vec<u8>` gets the same without asking;
/// use it on large byte fields of your job arguments too (in a struct, or beside other
/// arguments).
///
/// # Examples
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Blob {
///     #[serde(with = "pp::codec::bytes")]
///     data: Vec<u8>,
/// }
/// let bytes = pp::codec::encode(&Blob { data: vec![1, 2, 3] })?;
/// assert_eq!(bytes, pp::codec::encode(&vec![1u8, 2, 3])?);
/// # Ok::<(), pp::codec::CodecError>(())
/// ```
pub mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    /// Writes the bytes as one length and one block.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(value)
    }

    /// Reads bytes written by [`serialize`] (or as a plain `Vec<u8>`).
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte array")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        // For self-describing formats that give bytes as a sequence.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // The hint comes from the peer: cap it rather than trust it.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
#[path = "codec_golden_tests.rs"]
mod golden_tests;

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
    fn encoding_within_a_limit_gives_the_same_bytes_or_none() {
        let small = (vec![7u8; 100],);
        let exact = encode(&small).unwrap();
        assert_eq!(
            encode_payload_within(&small, exact.len() as u64).unwrap(),
            Some(exact.clone())
        );
        assert_eq!(
            encode_payload_within(&small, exact.len() as u64 - 1).unwrap(),
            None
        );
        let strings = (vec!["pp".to_owned(); 10_000], 3u64);
        let all = encode(&strings).unwrap();
        assert_eq!(
            encode_payload_within(&strings, 1 << 20).unwrap(),
            Some(all.clone())
        );
        assert_eq!(encode_payload_within(&strings, 1024).unwrap(), None);
        assert_eq!(
            encode_payload_within(&strings, all.len() as u64 - 1).unwrap(),
            None
        );
    }

    #[test]
    fn a_lone_byte_vector_travels_as_one_block_with_the_same_bytes_and_checks() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let alone = encode_payload(&bytes).unwrap();
        assert_eq!(alone, encode(&bytes).unwrap());
        assert_eq!(encode_payload(&(bytes.clone(),)).unwrap(), alone);
        assert_eq!(decode_payload::<Vec<u8>>(&alone).unwrap(), bytes);
        assert_eq!(
            decode_payload::<(Vec<u8>,)>(&alone).unwrap(),
            (bytes.clone(),)
        );
        // Other types keep the general path.
        let pair = (bytes.clone(), 3u32);
        assert_eq!(encode_payload(&pair).unwrap(), encode(&pair).unwrap());
        assert_eq!(
            decode_payload::<(Vec<u8>, u32)>(&encode(&pair).unwrap()).unwrap(),
            pair
        );

        // The checks of the general path: cut, trailing, over the limit.
        for bad in [&alone[..5], &alone[..alone.len() - 1]] {
            assert!(decode::<Vec<u8>>(bad).is_err());
            assert!(decode_payload::<Vec<u8>>(bad).is_err());
        }
        let mut trailing = alone.clone();
        trailing.push(0);
        assert!(decode::<(Vec<u8>,)>(&trailing).is_err());
        let error = decode_payload::<(Vec<u8>,)>(&trailing).unwrap_err();
        assert!(error.to_string().contains("trailing"), "{error}");
        let mut bomb = (1u64 << 60).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0; 8]);
        assert!(decode_payload::<Vec<u8>>(&bomb).is_err());
        assert!(decode_payload::<Vec<u8>>(&u64::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn trailing_and_truncated_bytes_are_errors() {
        assert!(decode::<u32>(&[1, 0, 0, 0, 9]).is_err());
        assert!(decode::<u32>(&[1, 0]).is_err());
    }
}

/// A `Duration` on the wire with one encoding per value: `#[serde(with =
/// "pp::codec::duration")]` (and `duration::option` for `Option<Duration>`). The bytes are
/// serde's own (seconds as `u64`, then nanoseconds as `u32`), but nanoseconds of a second
/// or more are refused instead of carried into the seconds, so that no two byte strings
/// decode to the same duration (found by fuzzing `task_arguments`).
pub mod duration {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    const NANOS_PER_SEC: u32 = 1_000_000_000;

    /// Writes the seconds, then the nanoseconds.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        (value.as_secs(), value.subsec_nanos()).serialize(serializer)
    }

    /// Reads what [`serialize`] wrote.
    ///
    /// # Errors
    /// The deserializer's, or nanoseconds of a second or more.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let (secs, nanos) = <(u64, u32)>::deserialize(deserializer)?;
        if nanos >= NANOS_PER_SEC {
            return Err(D::Error::custom(format!(
                "a duration's nanoseconds must be under one second, not {nanos}"
            )));
        }
        Ok(Duration::new(secs, nanos))
    }

    /// The same for an `Option<Duration>`: serde's option tag, then the duration.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};
        use std::time::Duration;

        /// The duration's bytes with [`super::serialize`].
        #[derive(Serialize, Deserialize)]
        struct Canonical(#[serde(with = "super")] Duration);

        /// Writes the option's tag, then the duration.
        ///
        /// # Errors
        /// The serializer's.
        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            value.map(Canonical).serialize(serializer)
        }

        /// Reads what [`serialize`] wrote.
        ///
        /// # Errors
        /// The deserializer's, or nanoseconds of a second or more.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Ok(Option::<Canonical>::deserialize(deserializer)?.map(|c| c.0))
        }
    }
}

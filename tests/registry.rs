//! The task registry: every `#[parallel]` function and method runs from bytes alone, as a
//! remote worker will run it, and bad requests give typed errors.

use pp::codec::{decode, encode};
use pp::InvokeError;
use serde::{Deserialize, Serialize};

#[pp::parallel]
fn concat(a: String, b: Vec<u8>, c: (u16, i64)) -> String {
    format!("{a}{}{}{}", b.len(), c.0, c.1)
}

#[pp::parallel]
fn fails() -> u8 {
    panic!("remote panic")
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Scale {
    factor: f64,
}

#[pp::parallel]
impl Scale {
    fn apply(&self, xs: Vec<f64>) -> Vec<f64> {
        xs.iter().map(|x| x * self.factor).collect()
    }

    fn into_factor(self) -> f64 {
        self.factor
    }
}

#[test]
fn tasks_are_registered_under_module_path_and_name() {
    let registry = pp::registry();
    for id in [
        concat.id(),
        fails.id(),
        Scale::APPLY.id(),
        Scale::INTO_FACTOR.id(),
    ] {
        assert!(registry.get(id).is_some(), "{id} is registered");
    }
    assert_eq!(concat.id(), "registry::concat");
    assert_eq!(Scale::APPLY.id(), "registry::Scale::apply");
    assert_eq!(
        registry.get(concat.id()).unwrap().fingerprint(),
        concat.fingerprint()
    );
    assert_ne!(concat.fingerprint(), fails.fingerprint());
}

#[test]
fn a_function_round_trips_through_bytes() {
    let args = encode(&("x".to_owned(), vec![1u8, 2, 3], (7u16, -1i64))).unwrap();
    let out = pp::registry()
        .invoke(concat.id(), Some(concat.fingerprint()), &args)
        .unwrap();
    assert_eq!(decode::<String>(&out).unwrap(), "x37-1");
}

#[test]
fn a_method_round_trips_through_bytes() {
    let args = encode(&(Scale { factor: 2.0 }, vec![1.0f64, 2.5])).unwrap();
    let out = pp::registry()
        .invoke(Scale::APPLY.id(), None, &args)
        .unwrap();
    assert_eq!(decode::<Vec<f64>>(&out).unwrap(), vec![2.0, 5.0]);
    let args = encode(&(Scale { factor: 3.5 },)).unwrap();
    let out = pp::registry()
        .invoke(Scale::INTO_FACTOR.id(), None, &args)
        .unwrap();
    assert_eq!(decode::<f64>(&out).unwrap(), 3.5);
}

#[test]
fn bad_requests_are_typed_errors() {
    let registry = pp::registry();
    assert_eq!(
        registry.invoke("no::such::task", None, &[]),
        Err(InvokeError::UnknownTask("no::such::task".into()))
    );
    assert!(matches!(
        registry.invoke(concat.id(), Some(concat.fingerprint() ^ 1), &[]),
        Err(InvokeError::FingerprintMismatch { .. })
    ));
    assert!(matches!(
        registry.invoke(concat.id(), None, &[0xff; 3]),
        Err(InvokeError::DecodeArgs(_))
    ));
    assert_eq!(
        registry.invoke(fails.id(), None, &encode(&()).unwrap()),
        Err(InvokeError::Panicked("remote panic".into()))
    );
}

#[test]
fn the_registry_fingerprint_is_stable() {
    let registry = pp::registry();
    assert_eq!(registry.fingerprint(), registry.fingerprint());
    assert!(registry.len() >= 4);
}

//! `par!`: every reduction over every kind of source gives what the serial loop gives; float
//! sums are bit-identical for any worker count; `find` returns the first hit and skips the
//! chunks after it; panics reach the caller; nested loops do not deadlock; and each site is
//! a registered task that runs a chunk from bytes alone.

use md5::{Digest, Md5};
use pp::codec::{decode, encode};
use pp::Server;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering as CmpOrdering;
use std::f64::consts::LN_2;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

fn server(ncpus: usize) -> Server {
    Server::builder()
        .ncpus(ncpus)
        .build()
        .expect("server starts")
}

/// One worker, shared by the tests that need a server reachable from a `par!` body.
fn one_worker() -> &'static Server {
    static ONE: OnceLock<Server> = OnceLock::new();
    ONE.get_or_init(|| server(1))
}

fn md5_hex(n: u64) -> String {
    format!("{:x}", Md5::digest(n.to_string()))
}

#[test]
fn ln2_partial_sum_is_within_3e_8() {
    let srv = server(2);
    let ln2 = pp::par!(server = &srv, sum for k: u64 in 1..20_000_000 {
        if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
    });
    assert!((ln2 - LN_2).abs() < 3e-8, "{ln2} is not ln 2");
}

#[test]
fn float_sums_are_bit_identical_for_1_2_and_4_workers() {
    const N: u64 = 2_000_000;
    const CHUNKS: u64 = 37;
    let bits: Vec<u64> = [1, 2, 4, 2, 1]
        .into_iter()
        .map(|workers| {
            let srv = server(workers);
            let sum = pp::par!(server = &srv, chunks = CHUNKS as usize, sum for k: u64 in 1..N {
                if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
            });
            sum.to_bits()
        })
        .collect();
    assert!(bits.windows(2).all(|w| w[0] == w[1]), "{bits:x?}");

    // The documented arithmetic: 37 chunks of equal length (the first ones one longer),
    // each summed in order, then the chunk sums added in chunk order.
    let len = N - 1;
    let (quotient, remainder) = (len / CHUNKS, len % CHUNKS);
    let mut start = 1;
    let mut total = -0.0f64;
    for i in 0..CHUNKS {
        let end = start + quotient + u64::from(i < remainder);
        let part: f64 = (start..end)
            .map(|k| {
                if k % 2 == 1 {
                    1.0 / k as f64
                } else {
                    -1.0 / k as f64
                }
            })
            .sum();
        total += part;
        start = end;
    }
    assert_eq!(bits[0], total.to_bits());
}

#[test]
fn md5_search_finds_1829182() {
    let hash = md5_hex(1_829_182);
    let found = pp::par!(with (hash: String) find for i: u64 in 1..2_000_000 {
        (md5_hex(i) == *hash).then_some(i)
    });
    assert_eq!(found, Some(1_829_182));
}

/// Ordered by `key` only, so that `min` and `max` must pick among equal values.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Keyed {
    key: i64,
    at: i64,
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.key.cmp(&other.key)
    }
}

fn keyed(k: i64) -> Keyed {
    Keyed {
        key: (k * 7).rem_euclid(5),
        at: k,
    }
}

#[test]
fn every_reduction_equals_the_serial_loop_on_ranges() {
    let srv = server(3);
    let ranges = [(0i64, 0i64), (0, 1), (-50, 50), (-7, 200), (10, 3), (5, 6)];
    for chunks in [1, 2, 3, 7, 64, 1000] {
        for (a, b) in ranges {
            let serial = a..b;
            let ctx = format!("{a}..{b} in {chunks} chunks");
            let sum =
                pp::par!(server = &srv, chunks = chunks, sum for k: i64 in a..b { k * k - 3 * k });
            assert_eq!(
                sum,
                serial.clone().map(|k| k * k - 3 * k).sum::<i64>(),
                "{ctx}"
            );
            let product = pp::par!(server = &srv, chunks = chunks, product for k: i64 in a..b {
                if k % 9 == 0 { -2i128 } else { 1 }
            });
            let expected: i128 = serial
                .clone()
                .map(|k| if k % 9 == 0 { -2 } else { 1 })
                .product();
            assert_eq!(product, expected, "{ctx}");
            let min = pp::par!(server = &srv, chunks = chunks, min for k: i64 in a..b { keyed(k) });
            let expected = serial.clone().map(keyed).min();
            assert_eq!(
                min.map(|m| m.at),
                expected.map(|m| m.at),
                "first minimum, {ctx}"
            );
            let max = pp::par!(server = &srv, chunks = chunks, max for k: i64 in a..b { keyed(k) });
            let expected = serial.clone().map(keyed).max();
            assert_eq!(
                max.map(|m| m.at),
                expected.map(|m| m.at),
                "last maximum, {ctx}"
            );
            let count =
                pp::par!(server = &srv, chunks = chunks, count for k: i64 in a..b { k % 3 == 0 });
            assert_eq!(
                count,
                serial.clone().filter(|k| k % 3 == 0).count(),
                "{ctx}"
            );
            let any = pp::par!(server = &srv, chunks = chunks, any for k: i64 in a..b { k == 42 });
            assert_eq!(any, serial.clone().any(|k| k == 42), "{ctx}");
            let all = pp::par!(server = &srv, chunks = chunks, all for k: i64 in a..b { k < 100 });
            assert_eq!(all, serial.clone().all(|k| k < 100), "{ctx}");
            let find = pp::par!(server = &srv, chunks = chunks, find for k: i64 in a..b {
                (k % 13 == 4).then(|| k * 10)
            });
            let expected = serial.clone().find(|k| k % 13 == 4).map(|k| k * 10);
            assert_eq!(find, expected, "{ctx}");
            let collect =
                pp::par!(server = &srv, chunks = chunks, collect for k: i64 in a..b { k * 2 });
            assert_eq!(
                collect,
                serial.clone().map(|k| k * 2).collect::<Vec<_>>(),
                "{ctx}"
            );
            let text = pp::par!(server = &srv, chunks = chunks, reduce(String::new(), |mut a, b| {
                a.push_str(&b);
                a
            }) for k: i64 in a..b { format!("{k},") });
            let expected: String = serial.clone().map(|k| format!("{k},")).collect();
            assert_eq!(text, expected, "reduce keeps the order, {ctx}");
            let inclusive =
                pp::par!(server = &srv, chunks = chunks, collect for k: i64 in a..=b { k });
            assert_eq!(inclusive, (a..=b).collect::<Vec<_>>(), "{ctx}");
        }
    }
}

#[test]
fn empty_loops_give_each_reductions_identity() {
    let (a, b) = (5u32, 5u32);
    assert_eq!(pp::par!(sum for k: u32 in a..b { k }), 0);
    assert_eq!(pp::par!(sum for k: u32 in 9..=8 { k as f64 }), 0.0);
    assert_eq!(pp::par!(product for k: u32 in a..b { k }), 1);
    assert_eq!(pp::par!(min for k: u32 in a..b { k }), None);
    assert_eq!(pp::par!(max for k: u32 in b..a { k }), None);
    assert_eq!(pp::par!(count for k: u32 in a..b { k > 0 }), 0);
    assert!(!pp::par!(any for k: u32 in a..b { k > 0 }));
    assert!(pp::par!(all for k: u32 in a..b { k > 100 }));
    assert_eq!(pp::par!(find for k: u32 in 10..3 { Some(k) }), None);
    assert_eq!(
        pp::par!(collect for k: u32 in a..b { k }),
        Vec::<u32>::new()
    );
    assert_eq!(
        pp::par!(reduce(7u64, |x, y| x * y) for k: u32 in a..b { u64::from(k) }),
        7
    );
    let empty: Vec<u16> = Vec::new();
    assert_eq!(pp::par!(sum for x: &u16 in &empty { *x }), 0);
    assert_eq!(
        pp::par!(collect for x: &u16 in &empty { *x }),
        Vec::<u16>::new()
    );
}

#[test]
fn ranges_of_every_integer_type_reach_their_ends() {
    let srv = server(2);
    assert_eq!(
        pp::par!(server = &srv, collect for k: u8 in 0..=u8::MAX { k }),
        (0..=u8::MAX).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, chunks = 256, collect for k: i8 in i8::MIN..=i8::MAX { k }),
        (i8::MIN..=i8::MAX).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, count for k: i16 in i16::MIN..=i16::MAX { k % 7 == 0 }),
        (i16::MIN..=i16::MAX).filter(|k| k % 7 == 0).count()
    );
    assert_eq!(
        pp::par!(server = &srv, sum for k: u16 in 0..=u16::MAX { u64::from(k) }),
        (0..=u16::MAX).map(u64::from).sum::<u64>()
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: u32 in u32::MAX - 9..=u32::MAX { k }),
        (u32::MAX - 9..=u32::MAX).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: i32 in i32::MIN..i32::MIN + 5 { k }),
        (i32::MIN..i32::MIN + 5).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: u64 in u64::MAX - 3..=u64::MAX { k }),
        vec![u64::MAX - 3, u64::MAX - 2, u64::MAX - 1, u64::MAX]
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: i64 in -3..=2 { k }),
        vec![-3, -2, -1, 0, 1, 2]
    );
    assert_eq!(
        pp::par!(server = &srv, chunks = 3, collect for k: u128 in u128::MAX - 4..=u128::MAX { k }),
        (u128::MAX - 4..=u128::MAX).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: i128 in i128::MIN..=i128::MIN + 3 { k }),
        (i128::MIN..=i128::MIN + 3).collect::<Vec<_>>()
    );
    assert_eq!(
        pp::par!(server = &srv, collect for k: isize in -2..=isize::MIN + 1 { k }),
        Vec::<isize>::new()
    );
    assert_eq!(
        pp::par!(server = &srv, sum for k: usize in usize::MAX - 2..=usize::MAX { (k - (usize::MAX - 2)) as u8 }),
        3
    );
    // Whole-type ranges: the first chunk hits, so with one worker the others never start.
    let one = one_worker();
    assert_eq!(
        pp::par!(server = one, find for k: u64 in 0..=u64::MAX { (k == 5).then_some(k) }),
        Some(5)
    );
    assert!(
        pp::par!(server = one, any for k: i128 in i128::MIN..=i128::MAX { k == i128::MIN + 3 })
    );
    assert!(!pp::par!(server = one, all for k: u128 in 0..=u128::MAX { k < 10 }));
}

#[test]
fn slices_vecs_and_arrays_are_split_by_element() {
    let srv = server(2);
    let data: Vec<u32> = (0..1000).collect();
    for chunks in [1, 5, 64, 5000] {
        let threes =
            pp::par!(server = &srv, chunks = chunks, count for x: &u32 in &data { *x % 3 == 0 });
        assert_eq!(threes, 334);
        let doubled = pp::par!(server = &srv, chunks = chunks, collect for x: &u32 in &data[10..20] { x * 2 });
        assert_eq!(doubled, (20..40).step_by(2).collect::<Vec<_>>());
        let first_big = pp::par!(server = &srv, chunks = chunks, find for x: &u32 in &data { (*x > 500).then_some(*x) });
        assert_eq!(first_big, Some(501));
    }
    let words: Vec<String> = ["a", "bb", "ccc", "dd"].map(String::from).to_vec();
    let longest = pp::par!(server = &srv, max for w: &String in &words { w.len() });
    assert_eq!(longest, Some(3));
    let lengths = pp::par!(server = &srv, sum for w: &String in &words { w.len() });
    assert_eq!(lengths, 8);
    let array = [1.5f64, 2.5, -1.0];
    let total = pp::par!(server = &srv, sum for x: &f64 in &array { *x });
    assert_eq!(total, 3.0);
}

#[test]
fn captures_are_seen_by_reference() {
    let srv = server(2);
    let offset = 10i64;
    let names = vec!["zero".to_owned(), "one".to_owned(), "two".to_owned()];
    let text = pp::par!(server = &srv, with (offset: i64, names: Vec<String>) collect for k: usize in 0..6 {
        format!("{}{}", names[k % names.len()], k as i64 + *offset)
    });
    assert_eq!(
        text,
        ["zero10", "one11", "two12", "zero13", "one14", "two15"]
    );
    assert_eq!(offset, 10, "captures stay usable after the loop");
    assert_eq!(names.len(), 3);
}

/// A generic function can hold a `par!` whose body does not use its type parameters.
fn weighted_len<T>(items: &[T], weight: u64) -> u64 {
    let n = items.len();
    pp::par!(with (weight: u64) sum for k: usize in 0..n { k as u64 * *weight })
}

#[test]
fn par_in_generic_functions_and_closures() {
    assert_eq!(weighted_len(&["a", "b", "c"], 10), 30);
    assert_eq!(weighted_len::<u8>(&[], 10), 0);
    let totals: Vec<u64> = (1..4u64)
        .map(|n| pp::par!(with (n: u64) sum for k: u64 in 0..=n { k * *n }))
        .collect();
    assert_eq!(totals, vec![1, 6, 18]);
}

#[test]
fn user_reductions_with_tuples_and_functions() {
    let srv = server(2);
    let (n, sq) = pp::par!(server = &srv, reduce((0u64, 0u64), |a, b| (a.0 + b.0, a.1 + b.1)) for k: u64 in 1..=100 {
        (1, k * k)
    });
    assert_eq!((n, sq), (100, 338_350));
    let lowest = pp::par!(server = &srv, reduce(f64::INFINITY, f64::min) for k: i32 in -5..5 { f64::from(k).abs() - 0.5 });
    assert_eq!(lowest, -0.5);
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    pp::par!(server = &srv, reduce((), |(), ()| ()) for _k: u32 in 0..1000 {
        SEEN.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(SEEN.load(Ordering::Relaxed), 1000);
}

#[test]
fn find_returns_the_first_hit_when_many_chunks_hit() {
    let srv = server(4);
    for _ in 0..20 {
        let first = pp::par!(server = &srv, chunks = 50, find for k: u32 in 0..10_000 {
            (k % 1000 == 999).then_some(k)
        });
        assert_eq!(first, Some(999));
        let first = pp::par!(server = &srv, chunks = 50, find for k: u32 in 0..10_000 {
            (k % 1000 == 999).then_some(k)
        });
        assert_eq!(first, Some(999));
    }
}

#[test]
fn chunks_after_a_hit_are_skipped() {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let srv = server(1);
    // 1000 chunks of one iteration each: a chunk start is an iteration.
    let found = pp::par!(server = &srv, chunks = 1000, find for k: u32 in 0..1000 {
        STARTED.fetch_add(1, Ordering::SeqCst);
        (k == 0).then_some(k)
    });
    assert_eq!(found, Some(0));
    let started = STARTED.load(Ordering::SeqCst);
    assert!(started < 1000, "{started} chunks started");
    assert!(
        srv.stats().total_jobs() < 1000,
        "skipped chunks are not counted as jobs"
    );
}

#[test]
fn chunks_run_as_jobs_of_the_server() {
    let srv = server(2);
    let total = pp::par!(server = &srv, chunks = 10, sum for k: u64 in 0..1000 { k });
    assert_eq!(total, 499_500);
    assert_eq!(srv.stats().total_jobs(), 10);
    srv.wait();
    assert_eq!(srv.stats().queued_jobs, 0);
}

#[test]
fn a_panicking_chunk_panics_out_of_par_and_the_server_goes_on() {
    let srv = server(2);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        pp::par!(server = &srv, chunks = 8, sum for k: u64 in 0..100 {
            if k == 42 || k == 90 {
                panic!("boom at {k}");
            }
            k
        })
    }));
    let payload = caught.expect_err("the panic reaches the caller");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert_eq!(message, "boom at 42", "the lowest chunk's panic");
    assert_eq!(
        pp::par!(server = &srv, sum for k: u64 in 0..100 { k }),
        4950
    );
}

#[test]
#[should_panic(expected = "`chunks` must be at least 1")]
fn zero_chunks_is_refused() {
    let srv = server(1);
    let _ = pp::par!(server = &srv, chunks = 0, sum for k: u64 in 0..100 { k });
}

#[test]
fn nested_loops_on_one_worker_do_not_deadlock() {
    let outer = pp::par!(server = one_worker(), chunks = 4, sum for i: u64 in 0..8 {
        pp::par!(server = one_worker(), chunks = 4, with (i: u64) sum for j: u64 in 0..10 { i * j })
    });
    assert_eq!(
        outer,
        (0..8u64)
            .map(|i| (0..10u64).map(|j| i * j).sum::<u64>())
            .sum::<u64>()
    );
    // Nested on the default server too.
    let count = pp::par!(count for i: u32 in 0..20 {
        pp::par!(with (i: u32) count for j: u32 in 0..20 { (i + j) % 2 == 0 }) == 10
    });
    assert_eq!(count, 20);
}

/// A job whose body is a `par!` on the server the job runs on.
#[pp::parallel]
fn squares_below(n: u64) -> u64 {
    pp::par!(server = one_worker(), sum for k: u64 in 0..n { k * k })
}

#[test]
fn par_inside_a_job_of_the_same_server() {
    let job = one_worker().submit(squares_below, (100,));
    assert_eq!(job.result().expect("job result"), 328_350);
}

/// The ids of the par! sites registered at `line` of this file.
fn sites_at(line: u32) -> Vec<&'static str> {
    let prefix = format!("{}::par@{line}:", module_path!());
    pp::registry()
        .ids()
        .into_iter()
        .filter(|id| id.starts_with(&prefix))
        .collect()
}

#[test]
fn each_site_is_a_registered_task_that_runs_a_chunk_from_bytes() {
    let srv = server(2);
    let m = 3u64;
    let line = line!() + 1;
    let local = pp::par!(server = &srv, with (m: u64) sum for k: u64 in 0..1000 { k * m });
    assert_eq!(local, 1_498_500);
    let [id] = sites_at(line)[..] else {
        panic!("one site at line {line}: {:?}", sites_at(line));
    };
    let registry = pp::registry();
    let entry = registry.get(id).expect("registered");
    let bytes = encode(&(10u64, 19u64, (3u64,))).unwrap();
    let result = registry
        .invoke(id, Some(entry.fingerprint()), &bytes)
        .unwrap();
    assert_eq!(
        decode::<u64>(&result).unwrap(),
        (10..=19).map(|k| k * 3).sum::<u64>()
    );
    assert!(registry
        .invoke(id, Some(entry.fingerprint() ^ 1), &bytes)
        .is_err());
    assert!(matches!(
        registry.invoke(id, None, &[1, 2, 3]),
        Err(pp::InvokeError::DecodeArgs(_))
    ));
    // A chunk whose bounds are out of order is empty.
    let empty = registry
        .invoke(id, None, &encode(&(5u64, 4u64, (3u64,))).unwrap())
        .unwrap();
    assert_eq!(decode::<u64>(&empty).unwrap(), 0);

    let data = vec![3u32, 6, 7, 9, 10];
    let line = line!() + 1;
    let threes = pp::par!(server = &srv, count for x: &u32 in &data { *x % 3 == 0 });
    assert_eq!(threes, 3);
    let [id] = sites_at(line)[..] else {
        panic!("one site at line {line}");
    };
    let bytes = encode(&(vec![1u32, 3, 30, 31], ())).unwrap();
    let result = registry.invoke(id, None, &bytes).unwrap();
    assert_eq!(decode::<usize>(&result).unwrap(), 2);

    let hash = md5_hex(77);
    let line = line!() + 1;
    let found = pp::par!(server = &srv, with (hash: String) find for i: u64 in 1..1000 { (md5_hex(i) == *hash).then_some(i) });
    assert_eq!(found, Some(77));
    let [id] = sites_at(line)[..] else {
        panic!("one site at line {line}");
    };
    let run = |lo: u64, hi: u64| {
        let bytes = encode(&(lo, hi, (md5_hex(77),))).unwrap();
        decode::<Option<u64>>(&registry.invoke(id, None, &bytes).unwrap()).unwrap()
    };
    assert_eq!(run(1, 100), Some(77));
    assert_eq!(run(78, 200), None);
}

#[test]
fn nested_sites_are_registered_once() {
    let line = line!() + 2;
    let total = pp::par!(server = one_worker(), sum for i: u64 in 0..4 {
        pp::par!(server = one_worker(), with (i: u64) sum for j: u64 in 0..4 { i + j })
    });
    assert_eq!(total, 48);
    assert_eq!(sites_at(line).len(), 1, "{:?}", sites_at(line));
    let outer = sites_at(line - 1);
    assert_eq!(outer.len(), 1, "{outer:?}");
    assert_eq!(pp::registry().get(outer[0]).map(|e| e.id()), Some(outer[0]));
}

#[test]
fn the_documented_examples_work() {
    let ln2 = pp::par!(sum for k: u64 in 1..20_000_000 {
        if k % 2 == 1 { 1.0 / k as f64 } else { -1.0 / k as f64 }
    });
    assert!((ln2 - LN_2).abs() < 3e-8);
    let server = server(2);
    let data: Vec<u32> = (0..1000).collect();
    let threes = pp::par!(server = &server, chunks = 64, count for x: &u32 in &data {
        *x % 3 == 0
    });
    assert_eq!(threes, 334);
    let squares =
        pp::par!(with (data: Vec<u32>) collect for i: usize in 0..3 { data[i] * data[i] });
    assert_eq!(squares, vec![0, 1, 4]);
}

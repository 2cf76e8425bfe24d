//! Fuzzes the decoding of what a node and its workers receive: the arguments of tasks of
//! several shapes (run through the registry, as a worker runs them), the jobs and the
//! frames (a job's output, replies) of the worker pipe, and protocol messages. Bad bytes
//! must give errors, never a panic or an allocation the input does not pay for.
#![no_main]

use std::collections::BTreeMap;

use pp_net::worker::{self, FromWorker, WorkerInput};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Shape {
    Unit,
    Point { x: f64, y: f64 },
    Named(String, Vec<u32>),
}

#[pp::parallel]
fn bytes_sum(bytes: Vec<u8>, scale: u64) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum::<u64>().wrapping_mul(scale)
}

#[pp::parallel]
fn text(words: Vec<String>, separator: char) -> String {
    words.join(&separator.to_string())
}

#[pp::parallel]
fn nested(items: Vec<(u64, Option<Vec<i16>>)>, table: BTreeMap<String, Shape>) -> usize {
    items.len() + table.len()
}

#[pp::parallel]
fn shapes(list: Vec<Shape>, flag: bool, pair: (u8, i128)) -> usize {
    list.len() + usize::from(flag) + usize::from(pair.0)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, args)) = data.split_first() else {
        return;
    };
    let registry = pp::registry();
    let task = match which % 4 {
        0 => bytes_sum.id(),
        1 => text.id(),
        2 => nested.id(),
        _ => shapes.id(),
    };
    // Whatever the bytes, the registry answers: a result or an error, never a panic.
    let _ = registry.invoke(task, None, args);
    let limit = 1 << 20;
    let _ = worker::decode_body::<WorkerInput>(data, "job", limit);
    let _ = worker::decode_body::<FromWorker>(data, "reply", limit);
    // The worker's own loop, fed the bytes as its pipe (with no shared area, a job that
    // points into one must fail by name, not fault).
    let _ = worker::run_worker(data, std::io::sink(), limit);
    pp_net::fuzzing::message(data);
});

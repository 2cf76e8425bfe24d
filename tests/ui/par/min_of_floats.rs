fn main() {
    let lowest = pp::par!(min for k: u64 in 1..100 { 1.0 / k as f64 });
    println!("{lowest:?}");
}

fn main() {
    let first = pp::par!(find for k: u64 in 1.. { (k * k > 500).then_some(k) });
    println!("{first:?}");
}

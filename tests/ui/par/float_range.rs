fn main() {
    let total = pp::par!(sum for x: f64 in 0.0..1.0 { x });
    println!("{total}");
}

fn main() {
    let data = vec![1u64, 2, 3];
    let total = pp::par!(sum for x: &u64 in data.iter() { *x });
    println!("{total}");
}

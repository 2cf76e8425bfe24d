fn main() -> Result<(), std::num::ParseIntError> {
    let total = pp::par!(sum for k: u64 in 0..100 { k.to_string().parse::<u64>()? });
    println!("{total}");
    Ok(())
}

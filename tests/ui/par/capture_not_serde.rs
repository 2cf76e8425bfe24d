struct Table {
    factor: u64,
}

fn main() {
    let table = Table { factor: 3 };
    let total = pp::par!(with (table: Table) sum for k: u64 in 0..100 { k * table.factor });
    println!("{total}");
}

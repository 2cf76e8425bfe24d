#[pp::parallel]
unsafe fn raw_read(addr: usize) -> u8 {
    let _ = addr;
    0
}

fn main() {}

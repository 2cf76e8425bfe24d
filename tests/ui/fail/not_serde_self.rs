// The object of a method job travels to the worker too, so its type must be serde as well.
struct Plain {
    n: u64,
}

#[pp::parallel]
impl Plain {
    fn get(&self) -> u64 {
        self.n
    }

    fn add(&self, k: u64) -> u64 {
        self.n + k
    }
}

fn main() {}

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[pp::parallel]
impl Counter {
    fn get(&self) -> u64 {
        self.n
    }

    fn bump(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

fn main() {}

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct X(u32);

#[pp::parallel]
impl Clone for X {
    fn clone(&self) -> Self {
        X(self.0)
    }
}

fn main() {}

use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
enum Status {
    Up,
    Down,
}

#[derive(Event)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}

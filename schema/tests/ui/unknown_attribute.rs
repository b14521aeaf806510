use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(nmae = "Ping")]
struct Ping {}

#[derive(Serialize, Deserialize, Event)]
struct Pong {
    #[event(skip)]
    a: u8,
}

#[derive(Serialize, Deserialize, Event)]
#[event(name = "A", name = "B")]
struct Twice {}

#[derive(Serialize, Deserialize, Event)]
#[event(name = Ping)]
struct NotAString {}

fn main() {}

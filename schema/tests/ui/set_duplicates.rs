use serde::{Deserialize, Serialize};
use xbus_schema::{Event, EventSet};

#[derive(Serialize, Deserialize, Event)]
struct Ping {}

#[derive(Serialize, Deserialize, Event)]
#[event(name = "Ping")]
struct AlsoPing {}

#[derive(EventSet)]
enum SameType {
    A(Ping),
    B(Ping),
}

#[derive(EventSet)]
enum SameName {
    A(Ping),
    B(AlsoPing),
}

fn main() {}

use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
struct Reading {
    #[event(topic)]
    rack: u32,
}

fn main() {}

use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(crate = "not a path")]
struct Ping {}

fn main() {}

use serde::{Deserialize, Serialize};
use xbus_schema::{Event, EventSet};

#[derive(Serialize, Deserialize, Event)]
struct Ping {}

#[derive(EventSet)]
struct Inbox {
    ping: Ping,
}

fn main() {}

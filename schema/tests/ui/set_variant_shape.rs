use serde::{Deserialize, Serialize};
use xbus_schema::{Event, EventSet};

#[derive(Serialize, Deserialize, Event)]
struct Ping {}

#[derive(Serialize, Deserialize, Event)]
struct Pong {}

#[derive(EventSet)]
enum Inbox {
    Nothing,
    Two(Ping, Pong),
    Named { ping: Ping },
}

#[derive(EventSet)]
enum Empty {}

fn main() {}

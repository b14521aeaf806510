use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
struct Ping;

fn main() {}

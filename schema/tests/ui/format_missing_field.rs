use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{service}.{knid}")]
struct Status {
    service: String,
    kind: String,
}

fn main() {}

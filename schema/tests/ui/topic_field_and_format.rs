use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{service}.{kind}")]
struct Status {
    #[event(topic)]
    service: String,
    kind: String,
}

fn main() {}

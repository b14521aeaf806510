use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
struct Status {
    #[event(topic)]
    service: String,
    #[event(topic)]
    kind: String,
}

fn main() {}

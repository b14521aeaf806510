use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(topic)]
struct OnStruct {
    service: String,
}

#[derive(Serialize, Deserialize, Event)]
struct OnField {
    #[event(topic = "{service}")]
    service: String,
}

fn main() {}

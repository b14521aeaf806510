use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{service")]
struct Unclosed {
    service: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{}")]
struct Positional {
    service: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{service:>8}")]
struct Spec {
    service: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "{service}..{kind}")]
struct EmptySegment {
    service: String,
    kind: String,
}

#[derive(Serialize, Deserialize, Event)]
#[event(topic = "")]
struct Empty {
    service: String,
}

fn main() {}

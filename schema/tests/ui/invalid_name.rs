use serde::{Deserialize, Serialize};
use xbus_schema::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(name = "a.b")]
struct Dotted {}

#[derive(Serialize, Deserialize, Event)]
#[event(name = "$x")]
struct Reserved {}

#[derive(Serialize, Deserialize, Event)]
#[event(name = "")]
struct Empty {}

#[derive(Serialize, Deserialize, Event)]
#[event(name = "a b")]
struct Spaced {}

fn main() {}

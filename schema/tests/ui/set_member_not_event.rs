use xbus_schema::EventSet;

struct NotAnEvent;

#[derive(EventSet)]
enum Inbox {
    A(NotAnEvent),
}

#[derive(EventSet)]
#[event_set(krate = "xbus")]
enum BadAttr {
    A(NotAnEvent),
}

fn main() {}

//! What happens to mail and sessions, as events: the web API streams them
//! (Server-Sent Events) and draws a message's path from them.
//!
//! A leaf: servers and the relay emit into an [`Events`] bus; nothing here
//! knows who listens. The bus keeps a bounded history, so a message's path
//! can be drawn after the fact, and costs one lock and no allocation beyond
//! the event when nobody subscribes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many events the history keeps.
pub const HISTORY: usize = 20_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A server took a message (250 after DATA).
    Received,
    /// It queued the message for another domain.
    Queued,
    /// It handed the message to the next server, which accepted it.
    Relayed,
    /// It stored the message in a local mailbox.
    Delivered,
    /// It gave up and sent a report to the sender.
    Bounced,
    /// A client connected.
    SessionOpened,
    /// The connection closed.
    SessionClosed,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Queued => "queued",
            EventKind::Relayed => "relayed",
            EventKind::Delivered => "delivered",
            EventKind::Bounced => "bounced",
            EventKind::SessionOpened => "session_opened",
            EventKind::SessionClosed => "session_closed",
        }
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(&crate::date::rfc3339(*time))
}

/// One event, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its number, increasing.
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When; written as RFC 3339 only when the event is shown, since most
    /// events (every message makes two) are never read.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The server it happened at. Shared text, as for the message's id,
    /// sender and recipient: every message makes two events or more, and
    /// copying each of these for each was eight allocations a message.
    pub server: Arc<str>,
    /// The message's queue id at that server (as in its `Received:` field).
    pub message: Option<Arc<str>>,
    /// The envelope sender.
    pub from: Option<Arc<str>>,
    /// The recipient concerned.
    pub recipient: Option<Arc<str>>,
    /// The reply that decided it (the next server's, for `relayed` and `bounced`).
    pub reply: Option<String>,
    /// The session (see the sessions API).
    pub session: Option<String>,
    /// Where it went or came from: the next server for `relayed`, the client for `received`.
    pub to: Option<String>,
    /// Anything else worth a line.
    pub detail: Option<String>,
}

impl Event {
    /// An event of `kind` at `server`, now; fill the rest with the builder methods.
    pub fn new(kind: EventKind, server: &str) -> Event {
        Event::at(kind, server.into())
    }

    /// [`Event::new`] with the server's name shared.
    pub fn at(kind: EventKind, server: Arc<str>) -> Event {
        Event {
            seq: 0,
            kind,
            time: SystemTime::now(),
            server,
            message: None,
            from: None,
            recipient: None,
            reply: None,
            session: None,
            to: None,
            detail: None,
        }
    }

    /// With the message's queue id.
    pub fn message(mut self, id: impl ToString) -> Event {
        self.message = Some(id.to_string().into());
        self
    }

    /// With the envelope sender (`<>` for none).
    pub fn from(self, from: &str) -> Event {
        self.with_sender(from.into())
    }

    /// With the message's queue id and envelope sender, shared with other
    /// events of the message.
    pub fn of_message(mut self, id: &Arc<str>, from: &Arc<str>) -> Event {
        self.message = Some(id.clone());
        self.with_sender(from.clone())
    }

    fn with_sender(mut self, from: Arc<str>) -> Event {
        self.from = Some(if from.is_empty() { "<>".into() } else { from });
        self
    }

    /// With the recipient.
    pub fn recipient(mut self, rcpt: &str) -> Event {
        self.recipient = Some(rcpt.into());
        self
    }

    /// With the reply.
    pub fn reply(mut self, reply: impl ToString) -> Event {
        self.reply = Some(reply.to_string());
        self
    }

    /// With the session.
    pub fn session(mut self, session: &str) -> Event {
        self.session = Some(session.to_string());
        self
    }

    /// With where it went.
    pub fn to(mut self, to: &str) -> Event {
        self.to = Some(to.to_string());
        self
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl ToString) -> Event {
        self.detail = Some(detail.to_string());
        self
    }
}

/// The bus. Cheap to clone; every clone is the same bus.
#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
    history: Arc<Mutex<(u64, VecDeque<Event>)>>,
}

impl Default for Events {
    fn default() -> Events {
        Events::new()
    }
}

impl Events {
    /// A bus with nobody listening yet.
    pub fn new() -> Events {
        // A subscriber that falls this far behind skips ahead (and is told so).
        let (sender, _) = broadcast::channel(4096);
        Events {
            sender,
            history: Arc::new(Mutex::new((0, VecDeque::new()))),
        }
    }

    /// Publishes an event: numbered, kept in the history, sent to subscribers.
    pub fn emit(&self, mut event: Event) {
        // With nobody subscribed (as when no web page watches) the event
        // goes to the history alone, not copied for a send that would drop
        // it: each copy is a dozen allocations, for every message.
        let listened = self.sender.receiver_count() > 0;
        let sent = {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            history.0 += 1;
            event.seq = history.0;
            if history.1.len() == HISTORY {
                history.1.pop_front();
            }
            if listened {
                history.1.push_back(event.clone());
                Some(event)
            } else {
                history.1.push_back(event);
                None
            }
        };
        if let Some(event) = sent {
            let _ = self.sender.send(event);
        }
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// The kept events that `wanted` accepts, oldest first.
    pub fn history(&self, wanted: impl Fn(&Event) -> bool) -> Vec<Event> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.1.iter().filter(|e| wanted(e)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_kept_and_sent() {
        let events = Events::new();
        let mut rx = events.subscribe();
        events.emit(
            Event::new(EventKind::Received, "gmail.com")
                .message("q1")
                .from(""),
        );
        events.emit(
            Event::new(EventKind::Delivered, "gmail.com")
                .message("q1")
                .recipient("usr1@gmail.com"),
        );
        let first = rx.try_recv().unwrap();
        assert_eq!(
            (first.seq, first.kind, first.from.as_deref()),
            (1, EventKind::Received, Some("<>"))
        );
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        let kept = events.history(|e| e.message.as_deref() == Some("q1"));
        assert_eq!(kept.len(), 2);
        let json = serde_json::to_value(&kept[1]).unwrap();
        assert_eq!(json["type"], "delivered");
        assert_eq!(json["recipient"], "usr1@gmail.com");
        // The time is shown as RFC 3339, as it was taken when the event happened.
        assert_eq!(json["time"], crate::date::rfc3339(kept[1].time));
        let time = json["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{time}"
        );
    }

    /// A message's events share its id and sender, and the null sender
    /// shows as `<>` whichever way it is given.
    #[test]
    fn a_messages_events_share_their_text() {
        let (id, from, server): (Arc<str>, Arc<str>, Arc<str>) =
            ("q1".into(), "usr1@gmail.com".into(), "gmail.com".into());
        let received = Event::at(EventKind::Received, server.clone()).of_message(&id, &from);
        let delivered = Event::at(EventKind::Delivered, server.clone())
            .of_message(&id, &from)
            .recipient("bob@gmail.com");
        for event in [&received, &delivered] {
            assert!(Arc::ptr_eq(event.message.as_ref().unwrap(), &id));
            assert!(Arc::ptr_eq(event.from.as_ref().unwrap(), &from));
            assert!(Arc::ptr_eq(&event.server, &server));
        }
        let json = serde_json::to_value(&delivered).unwrap();
        assert_eq!(
            (
                &json["server"],
                &json["message"],
                &json["from"],
                &json["recipient"]
            ),
            (
                &serde_json::json!("gmail.com"),
                &serde_json::json!("q1"),
                &serde_json::json!("usr1@gmail.com"),
                &serde_json::json!("bob@gmail.com")
            )
        );
        let null: Arc<str> = "".into();
        let bounce = Event::at(EventKind::Received, server).of_message(&id, &null);
        assert_eq!(bounce.from.as_deref(), Some("<>"));
        assert_eq!(
            Event::new(EventKind::Received, "a")
                .from("")
                .from
                .as_deref(),
            Some("<>")
        );
    }

    #[test]
    fn events_are_kept_whether_or_not_anyone_listens() {
        let events = Events::new();
        events.emit(Event::new(EventKind::Received, "a").message("q1"));
        let mut rx = events.subscribe();
        events.emit(Event::new(EventKind::Delivered, "a").message("q1"));
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        assert!(
            rx.try_recv().is_err(),
            "only what followed the subscription"
        );
        drop(rx);
        events.emit(Event::new(EventKind::Queued, "a").message("q1"));
        let kept: Vec<u64> = events.history(|_| true).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [1, 2, 3]);
    }

    #[test]
    fn the_history_is_bounded() {
        let events = Events::new();
        for _ in 0..HISTORY + 10 {
            events.emit(Event::new(EventKind::SessionOpened, "a"));
        }
        let kept = events.history(|_| true);
        assert_eq!(kept.len(), HISTORY);
        assert_eq!(kept[0].seq, 11);
    }
}

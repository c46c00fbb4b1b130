//! The SMTP core (`smtp::session::Session`) on any dialogue, in any chunking.
//!
//! Input: byte 0 picks the policy (see the flags below), byte 1 the chunking
//! (0: whole; n: pieces of 1..=n octets), the rest is what the client sends.
//! Deliveries are answered at once, `Ok` or (flag) `Err`.
//!
//! Kept small on purpose: only [`answer`] knows the event enum, so a change
//! to the core's DATA/event API is adapted in one place.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mailnet::id::QueueId;
use mailnet::network::Network;
use mailnet::smtp::envelope::DeliveryError;
use mailnet::smtp::session::{Event, Session, SmtpContext};

mod chunks;

/// The COMP 431 grammar instead of the lenient one.
const STRICT: u8 = 1;
/// AUTH before submission.
const REQUIRE_AUTH: u8 = 2;
/// Any sender in a local domain, not only existing users.
const ANY_SENDER: u8 = 4;
/// Tiny limits, so the size, line, recipient and hop refusals are reachable.
const SMALL_LIMITS: u8 = 8;
/// Deliveries fail (`451`).
const FAIL_DELIVERY: u8 = 16;

/// The sixteen policies, built once: gmail.com of the default network.
fn context(flags: u8) -> Arc<SmtpContext> {
    static CONTEXTS: OnceLock<Vec<Arc<SmtpContext>>> = OnceLock::new();
    let all = CONTEXTS.get_or_init(|| {
        let net = Network::default_network();
        let base = net.server("gmail.com").expect("in the default network");
        (0..16u8)
            .map(|f| {
                let mut server = base.clone();
                let policy = &mut server.policy;
                policy.strict = f & STRICT != 0;
                policy.require_auth = f & REQUIRE_AUTH != 0;
                policy.sender_must_exist = f & ANY_SENDER == 0;
                if f & SMALL_LIMITS != 0 {
                    policy.max_message_size = 300;
                    policy.max_recipients = 2;
                    policy.max_command_line = 64;
                    policy.max_text_line = 80;
                    policy.max_hops = 1;
                }
                Arc::new(SmtpContext {
                    hostname: "gmail.com".into(),
                    server,
                    starttls: true,
                    faults: Default::default(),
                })
            })
            .collect()
    });
    all[usize::from(flags & 15)].clone()
}

/// Does what the I/O layer does with one event.
fn answer(session: &mut Session, event: Event, fail: bool) {
    match event {
        Event::Deliver(_envelope) => {
            let outcome = if fail {
                Err(DeliveryError::Queue(std::io::Error::other("fuzz")))
            } else {
                Ok(QueueId::from("FUZZ".to_string()))
            };
            let _ = session.delivered(outcome).to_wire();
        }
        Event::Reply(reply) => {
            let _ = reply.to_wire();
        }
        Event::StartTls(_) => {
            // As the session loop does once the handshake is done.
            session.tls_established(mailnet::tls::TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "FUZZ".into(),
            });
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunking, dialogue @ ..] = data else {
        return;
    };
    let mut session = Session::new(context(*flags));
    let _ = session.greeting().to_wire();
    for piece in chunks::split(dialogue, *chunking) {
        session.push(piece);
        while let Some(event) = session.next_event() {
            answer(&mut session, event, flags & FAIL_DELIVERY != 0);
        }
        let _ = session.take_transcript();
    }
    if !session.is_closed() {
        let _ = session.timeout().to_wire();
        assert!(session.is_closed());
        assert!(session.next_event().is_none());
    }
});

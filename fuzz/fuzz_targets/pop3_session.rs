//! The POP3 core (`pop3::session::Session`) on any dialogue, in any chunking.
//!
//! Input: byte 0 picks the maildrop and the I/O outcomes (see the flags
//! below), byte 1 the chunking (0: whole; n: pieces of 1..=n octets), the
//! rest is what the client sends. Users are gmail.com's of the default
//! network (`usr1@gmail.com` / `password1`).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mailnet::network::Network;
use mailnet::pop3::session::{Event, Listing, OpenError, Pop3Context, Session};

mod chunks;

/// Bits 0-1: how many messages the maildrop holds (0 to 3).
const MESSAGES: u8 = 3;
/// Opening the maildrop fails: another session holds it.
const IN_USE: u8 = 4;
/// Opening the maildrop fails: the store is broken.
const BROKEN: u8 = 8;
/// The deletions at QUIT fail.
const COMMIT_FAILS: u8 = 16;

fn context() -> Arc<Pop3Context> {
    static CONTEXT: OnceLock<Arc<Pop3Context>> = OnceLock::new();
    CONTEXT
        .get_or_init(|| {
            let net = Network::default_network();
            Arc::new(Pop3Context {
                hostname: "gmail.com".into(),
                server: net.server("gmail.com").expect("default network").clone(),
                stls: true,
                faults: Default::default(),
            })
        })
        .clone()
}

fn maildrop(count: usize) -> Vec<Listing> {
    [("u1", 120), ("u2", 0), ("u3", 4096)]
        .into_iter()
        .take(count)
        .map(|(uid, size)| Listing {
            uid: uid.into(),
            size,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunking, dialogue @ ..] = data else {
        return;
    };
    let count = usize::from(flags & MESSAGES);
    let mut session = Session::new(context(), "<1.2@gmail.com>".into());
    let _ = session.greeting();
    // How many messages the session was told of: every index it hands the
    // I/O layer must be one of them (the layer indexes its own list with it).
    let mut listed = 0;
    for piece in chunks::split(dialogue, *chunking) {
        session.push(piece);
        while let Some(event) = session.next_event() {
            match event {
                Event::OpenMailbox { user } => {
                    assert!(!user.is_empty());
                    let result = if flags & IN_USE != 0 {
                        Err(OpenError::InUse)
                    } else if flags & BROKEN != 0 {
                        Err(OpenError::System("fuzz".into()))
                    } else {
                        listed = count;
                        Ok(maildrop(count))
                    };
                    let _ = session.opened(result);
                }
                Event::Send { index, .. } => {
                    assert!(index < listed, "Send of message {index} of {listed}");
                }
                Event::Commit { delete } => {
                    assert!(
                        delete.iter().all(|&i| i < listed),
                        "Commit {delete:?} of {listed}"
                    );
                    let result = if flags & COMMIT_FAILS != 0 {
                        Err("fuzz".to_string())
                    } else {
                        Ok(())
                    };
                    let _ = session.committed(result);
                    assert!(session.is_closed());
                }
                Event::StartTls(_) => {
                    // As the session loop does once the handshake is done.
                    session.tls_established(mailnet::tls::TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "FUZZ".into(),
                    });
                }
                _ => {}
            }
        }
        let _ = session.take_transcript();
    }
});

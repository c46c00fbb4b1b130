use super::*;
use crate::network::Network;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

fn ctx() -> Arc<Pop3Context> {
    let net = Network::default_network();
    Arc::new(Pop3Context {
        hostname: "gmail.com".into(),
        server: net.server("gmail.com").unwrap().clone(),
        stls: true,
        faults: Default::default(),
    })
}

fn listing() -> Vec<Listing> {
    vec![
        Listing {
            uid: "u1".into(),
            size: 100,
        },
        Listing {
            uid: "u2".into(),
            size: 50,
        },
    ]
}

/// Runs a dialogue in chunks; the maildrop opens with two messages and every
/// commit succeeds. Returns the text of everything sent, one entry per event.
fn run_chunked(input: &[u8], chunk: usize) -> (Vec<String>, Vec<Vec<usize>>) {
    let mut session = Session::new(ctx(), "<1.2@gmail.com>".into());
    let mut out = vec![String::from_utf8(session.greeting()).unwrap()];
    let mut commits = Vec::new();
    for piece in input.chunks(chunk) {
        session.push(piece);
        while let Some(event) = session.next_event() {
            let bytes = match event {
                Event::Reply(b) | Event::LoginFailed(b) => b,
                Event::Pause(d) => format!("[pause {} ms]", d.as_millis()).into_bytes(),
                Event::Drop => b"[drop]".to_vec(),
                Event::OpenMailbox { user } => {
                    assert_eq!(user, "usr1@gmail.com");
                    session.opened(Ok(listing()))
                }
                Event::Send { status, index, top } => {
                    let mut b = status;
                    b.extend_from_slice(format!("[{index} {top:?}]").as_bytes());
                    b
                }
                Event::Commit { delete } => {
                    commits.push(delete);
                    session.committed(Ok(()))
                }
                Event::StartTls(reply) => {
                    // As the loop does once the handshake is done.
                    session.tls_established(crate::tls::TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TEST".into(),
                    });
                    reply
                }
            };
            out.push(String::from_utf8(bytes).unwrap());
        }
    }
    (out, commits)
}

/// Replays a dialogue in chunks of 1, 2, 4 … 512 bytes and the whole, checks
/// every chunking gets the same answers, and returns them. A failure shows
/// the dialogue, both sides.
fn run(input: &[u8]) -> (Vec<String>, Vec<Vec<usize>>) {
    let whole = run_chunked(input, input.len().max(1));
    let mut chunk = 1;
    while chunk <= 512 {
        let got = run_chunked(input, chunk);
        assert!(
            got == whole,
            "chunks of {chunk} bytes changed the dialogue\n{}\nwhole input gave:\n{}",
            String::from_utf8_lossy(input),
            whole.0.concat()
        );
        chunk *= 2;
    }
    whole
}

#[test]
fn rfc1939_dialogue_in_every_chunk_size() {
    let input = b"user usr1@gmail.com\r\nPASS password1\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nLIST 1\r\nRETR 1\r\nSTAT\r\nRSET\r\nDELE 2\r\nNOOP\r\nQUIT\r\n";
    let mut chunk = 1;
    while chunk <= 512 {
        let (out, commits) = run_chunked(input, chunk);
        assert!(out[0].starts_with("+OK gmail.com POP3 server ready <1.2@gmail.com>"));
        assert_eq!(out[2], "+OK maildrop has 2 messages (150 octets)\r\n");
        assert_eq!(out[3], "+OK 2 150\r\n");
        assert_eq!(
            out[4],
            "+OK 2 messages (150 octets)\r\n1 100\r\n2 50\r\n.\r\n"
        );
        assert_eq!(out[5], "+OK 2 u2\r\n");
        assert_eq!(out[6], "+OK 100 octets\r\n[0 None]");
        assert_eq!(out[7], "+OK top of message follows\r\n[1 Some(0)]");
        assert!(out[8].starts_with("+OK"));
        assert!(out[9].starts_with("-ERR message 1 already deleted"));
        assert!(out[10].starts_with("-ERR message 1 already deleted"));
        assert_eq!(out[11], "+OK 1 50\r\n");
        assert!(out[12].starts_with("+OK"));
        assert_eq!(out[14], "+OK\r\n");
        assert!(out[15].starts_with("+OK gmail.com POP3 server signing off (1 message left)"));
        assert_eq!(commits, vec![vec![1]], "chunk {chunk}");
        chunk *= 2;
    }
}

#[test]
fn wrong_password_and_commands_before_login() {
    let (out, _) = run(b"STAT\r\nPASS x\r\nUSER usr1@gmail.com\r\nPASS nope\r\nUSER nobody@gmail.com\r\nPASS password1\r\nBOGUS\r\nQUIT\r\n");
    assert!(out[1].starts_with("-ERR not authenticated"));
    assert!(out[2].starts_with("-ERR send USER first"));
    assert_eq!(out[4], "-ERR [AUTH] invalid user name or password\r\n");
    assert_eq!(out[6], "-ERR [AUTH] invalid user name or password\r\n");
    assert!(out[7].starts_with("-ERR unknown command BOGUS"));
    assert!(out[8].starts_with("+OK"));
}

#[test]
fn bad_message_numbers() {
    let (out, _) = run(b"USER usr1@gmail.com\r\nPASS password1\r\nRETR 0\r\nRETR 3\r\nRETR x\r\nTOP 1\r\nTOP 1 x\r\nDELE\r\n");
    for reply in &out[3..] {
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
}

#[test]
fn apop_and_auth_plain() {
    let digest: String = Md5::digest(b"<1.2@gmail.com>password1")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (out, _) = run(format!("APOP usr1@gmail.com {digest}\r\n").as_bytes());
    assert!(out[1].starts_with("+OK maildrop has 2"), "{out:?}");
    let plain = B64.encode("\0usr1@gmail.com\0password1");
    let (out, _) = run(format!("AUTH PLAIN\r\n{plain}\r\n").as_bytes());
    assert_eq!(out[1], "+ \r\n");
    assert!(out[2].starts_with("+OK maildrop"));
    let (out, _) = run(format!("AUTH PLAIN {plain}\r\n").as_bytes());
    assert!(out[1].starts_with("+OK maildrop"));
}

#[test]
fn auth_login_as_curl_does_it() {
    let (user, pass) = (B64.encode("usr1@gmail.com"), B64.encode("password1"));
    let (out, _) = run(format!("AUTH\r\nAUTH LOGIN\r\n{user}\r\n{pass}\r\n").as_bytes());
    assert_eq!(out[1], "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
    assert_eq!(out[2], "+ VXNlcm5hbWU6\r\n");
    assert_eq!(out[3], "+ UGFzc3dvcmQ6\r\n");
    assert!(out[4].starts_with("+OK maildrop"), "{out:?}");
    // With the user name as an initial response, and a wrong password.
    let wrong = B64.encode("guess");
    let (out, _) =
        run(format!("AUTH LOGIN {user}\r\n{wrong}\r\n*\r\nAUTH LOGIN\r\n*\r\n").as_bytes());
    assert_eq!(out[1], "+ UGFzc3dvcmQ6\r\n");
    assert!(out[2].starts_with("-ERR [AUTH]"), "{out:?}");
    assert!(out[3].starts_with("-ERR"), "{out:?}");
    assert_eq!(out[4], "+ VXNlcm5hbWU6\r\n");
    assert!(out[5].starts_with("-ERR"), "cancelled: {out:?}");
}

#[test]
fn in_use_maildrop_and_quit_without_login() {
    let mut session = Session::new(ctx(), "<c>".into());
    session.greeting();
    session.push(b"USER usr1@gmail.com\r\nPASS password1\r\n");
    let _ = session.next_event();
    assert_eq!(
        session.next_event(),
        Some(Event::OpenMailbox {
            user: "usr1@gmail.com".into()
        })
    );
    assert_eq!(
        session.opened(Err(OpenError::InUse)),
        b"-ERR [IN-USE] maildrop already locked by another session\r\n"
    );
    session.push(b"QUIT\r\n");
    assert!(matches!(session.next_event(), Some(Event::Reply(r)) if r.starts_with(b"+OK")));
    assert!(session.is_closed());
}

#[test]
fn capa_lists_what_is_supported() {
    let (out, _) = run(b"CAPA\r\n");
    for cap in [
        "USER",
        "TOP",
        "UIDL",
        "SASL PLAIN LOGIN",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "IMPLEMENTATION",
    ] {
        assert!(out[1].contains(&format!("\r\n{cap}")), "{cap}");
    }
    assert!(out[1].ends_with("\r\n.\r\n"));
}

#[test]
fn overlong_lines_are_refused_and_the_session_goes_on() {
    let mut input = vec![b'x'; 5000];
    input.extend_from_slice(b"\r\nCAPA\r\n");
    let (out, _) = run(&input);
    assert_eq!(out[1], "-ERR line too long\r\n");
    assert!(out[2].starts_with("+OK capability"));
}

#[test]
fn credentials_never_reach_the_transcript() {
    let plain = B64.encode("\0usr1@gmail.com\0password1");
    let mut session = Session::new(ctx(), "<1.2@gmail.com>".into());
    session.greeting();
    session.push(format!("USER usr1@gmail.com\r\nPASS password1\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN\r\n{plain}\r\n").as_bytes());
    while let Some(event) = session.next_event() {
        if let Event::OpenMailbox { .. } = event {
            session.opened(Err(OpenError::InUse));
        }
    }
    let transcript: String = session
        .take_transcript()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(transcript.contains("C: PASS [password]"), "{transcript}");
    for secret in [plain.as_str(), "password1"] {
        assert!(!transcript.contains(secret), "{secret} in:\n{transcript}");
    }
}

proptest::proptest! {
    /// Whatever a client sends, the session never panics, and how the bytes
    /// are split never changes what it answers.
    #[test]
    fn any_input_in_any_chunking_gets_the_same_answers(
        lines in proptest::collection::vec(
            "(USER usr1@gmail.com|PASS password1|STAT|LIST|UIDL 1|RETR 1|TOP 2 1|DELE 1|RSET|NOOP|CAPA|AUTH PLAIN|QUIT|[ -~]{0,12})",
            0..12,
        ),
    ) {
        let input: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let (out, _) = run(input.as_bytes());
        proptest::prop_assert!(out[0].starts_with("+OK"));
    }
}

#[test]
fn stls_is_offered_drops_pipelined_input_and_guards_logins() {
    let (out, _) = run(b"CAPA\r\n");
    assert!(out[1].contains("\r\nSTLS\r\n"), "{}", out[1]);
    // One write with an injected command after STLS: it is never answered.
    let mut session = Session::new(ctx(), "<c>".into());
    session.greeting();
    session.push(b"STLS\r\nUSER usr1@gmail.com\r\n");
    let mut replies = Vec::new();
    while let Some(event) = session.next_event() {
        match event {
            Event::StartTls(reply) => replies.push(String::from_utf8(reply).unwrap()),
            Event::Reply(reply) => replies.push(String::from_utf8(reply).unwrap()),
            _ => {}
        }
    }
    assert_eq!(replies, vec!["+OK Begin TLS negotiation\r\n"]);
    session.tls_established(crate::tls::TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TEST".into(),
    });
    session.push(b"CAPA\r\nSTLS\r\n");
    let mut replies = Vec::new();
    while let Some(Event::Reply(reply)) = session.next_event() {
        replies.push(String::from_utf8(reply).unwrap());
    }
    assert!(!replies[0].contains("STLS"), "{}", replies[0]);
    assert!(replies[1].starts_with("-ERR"), "{}", replies[1]);
    // auth_requires_tls: no login in clear.
    let net = Network::default_network();
    let mut server = net.server("gmail.com").unwrap().clone();
    server.policy.auth_requires_tls = true;
    let strict = Arc::new(Pop3Context {
        hostname: "gmail.com".into(),
        server,
        stls: true,
        faults: Default::default(),
    });
    let mut session = Session::new(strict, "<c>".into());
    session.greeting();
    session.push(b"USER usr1@gmail.com\r\n");
    match session.next_event() {
        Some(Event::Reply(reply)) => {
            assert!(String::from_utf8(reply)
                .unwrap()
                .starts_with("-ERR [AUTH] log in over TLS"))
        }
        other => panic!("{other:?}"),
    }
}

/// A session whose network has `fault` (as a network file writes it).
fn faulted(fault: &str) -> Session {
    let set = crate::fault::Faults::new(7);
    let spec = crate::network::faults::FaultSpec::from_yaml(fault).unwrap();
    let names = vec!["gmail.com".to_string()];
    set.add(
        spec.check(Some(&names), serde_saphyr::Location::UNKNOWN)
            .unwrap(),
    );
    let mut context = (*ctx()).clone();
    context.faults = set;
    Session::new(Arc::new(context), "<1.2@gmail.com>".into())
}

/// Drives `session` through `input`, answering as the I/O layer does.
fn drive(session: &mut Session, input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    session.push(input);
    while let Some(event) = session.next_event() {
        let bytes = match event {
            Event::Reply(b) | Event::LoginFailed(b) => b,
            Event::OpenMailbox { .. } => session.opened(Ok(listing())),
            Event::Send { status, index, .. } => {
                let mut b = status;
                b.extend_from_slice(format!("[message {index}]").as_bytes());
                b
            }
            Event::Commit { .. } => session.committed(Ok(())),
            Event::Pause(d) => format!("[pause {} ms]", d.as_millis()).into_bytes(),
            Event::Drop => b"[drop]".to_vec(),
            Event::StartTls(b) => b,
        };
        out.push(String::from_utf8_lossy(&bytes).trim_end().to_string());
    }
    out
}

#[test]
fn an_injected_retr_error_comes_once_then_the_message() {
    let mut s =
        faulted("server: gmail.com\non: retr\nreply: \"-ERR [SYS/TEMP] disk error\"\ntimes: 1\n");
    let out = drive(
        &mut s,
        b"USER usr1@gmail.com\r\nPASS password1\r\nRETR 1\r\nRETR 1\r\nQUIT\r\n",
    );
    assert_eq!(out[2], "-ERR [SYS/TEMP] disk error", "{out:?}");
    assert!(
        out[3].starts_with("+OK") && out[3].ends_with("[message 0]"),
        "{out:?}"
    );
    let transcript: Vec<String> = s.take_transcript().iter().map(|l| l.to_string()).collect();
    let at = transcript
        .iter()
        .position(|l| l == "S: -ERR [SYS/TEMP] disk error")
        .unwrap();
    assert!(transcript[at + 1].contains("injected"));
}

#[test]
fn pop3_faults_at_user_pass_dele_and_quit() {
    let mut s = faulted(
        "server: gmail.com\non: pop3_user\nmatch: \"usr1@*\"\nreply: \"-ERR [AUTH] go away\"\n",
    );
    assert_eq!(
        drive(&mut s, b"USER usr1@gmail.com\r\n"),
        ["-ERR [AUTH] go away"]
    );
    let mut s = faulted("server: gmail.com\non: pop3_pass\naction: drop\n");
    assert_eq!(
        drive(&mut s, b"USER usr1@gmail.com\r\nPASS password1\r\n")[1],
        "[drop]"
    );
    let mut s = faulted("server: gmail.com\non: dele\nreply: \"-ERR [SYS/PERM] read-only\"\n");
    let out = drive(
        &mut s,
        b"USER usr1@gmail.com\r\nPASS password1\r\nDELE 1\r\nQUIT\r\n",
    );
    assert_eq!(out[2], "-ERR [SYS/PERM] read-only");
    // A drop at QUIT ends the session before the update: nothing is deleted.
    let mut s = faulted("server: gmail.com\non: quit\naction: drop\n");
    let out = drive(
        &mut s,
        b"USER usr1@gmail.com\r\nPASS password1\r\nDELE 1\r\nQUIT\r\n",
    );
    assert_eq!(out.last().unwrap(), "[drop]");
    assert!(s.is_closed());
    // An SMTP reply never reaches POP3.
    let mut s = faulted("server: gmail.com\non: quit\nreply: \"421 bye\"\n");
    assert!(drive(&mut s, b"QUIT\r\n")[0].starts_with("+OK"));
}

use super::*;
use crate::network::Network;

fn ctx_with(edit: impl FnOnce(&mut ServerConfig)) -> Arc<SmtpContext> {
    let net = Network::default_network();
    let mut server = net.server("gmail.com").unwrap().clone();
    edit(&mut server);
    Arc::new(SmtpContext {
        hostname: "gmail.com".into(),
        server,
        starttls: true,
        faults: Default::default(),
    })
}

fn ctx() -> Arc<SmtpContext> {
    ctx_with(|_| {})
}

/// An envelope with the message whose parts the session handed out.
#[derive(Debug, PartialEq)]
struct Received {
    envelope: Envelope,
    message: Vec<u8>,
}

impl std::ops::Deref for Received {
    type Target = Envelope;
    fn deref(&self) -> &Envelope {
        &self.envelope
    }
}

/// Feeds `input` in chunks, and returns every reply line and envelope,
/// answering deliveries with `Ok("ID")`.
fn run_chunked(ctx: Arc<SmtpContext>, input: &[u8], chunk: usize) -> (Vec<String>, Vec<Received>) {
    let mut session = Session::new(ctx);
    let mut replies = vec![session.greeting().to_string()];
    let mut envelopes = Vec::new();
    let mut message = Vec::new();
    for piece in input.chunks(chunk) {
        session.push(piece);
        while let Some(event) = session.next_event() {
            match event {
                Event::Reply(r) => replies.push(r.to_string()),
                Event::Pause(d) => replies.push(format!("[pause {} ms]", d.as_millis())),
                Event::Drop => {
                    message.clear();
                    replies.push("[drop]".into());
                }
                Event::Body(part) => {
                    assert!(part.len() <= 2 * chunk, "parts are as small as the reads");
                    message.extend_from_slice(&part);
                    // As the server does: the next part reuses its memory,
                    // which must not leak old bytes into it.
                    session.recycle(part);
                }
                Event::Discard(r) => {
                    message.clear();
                    replies.push(r.to_string());
                }
                Event::StartTls(r) => {
                    replies.push(r.to_string());
                    // As the loop does once the handshake is done.
                    session.tls_established(crate::tls::TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TEST".into(),
                    });
                }
                Event::Deliver(envelope) => {
                    assert_eq!(envelope.size, message.len() as u64);
                    envelopes.push(Received {
                        envelope,
                        message: std::mem::take(&mut message),
                    });
                    replies.push(
                        session
                            .delivered(Ok(QueueId::from("ID".to_string())))
                            .to_string(),
                    );
                }
            }
        }
    }
    (replies, envelopes)
}

/// Replays a dialogue in chunks of 1, 2, 4 … 512 bytes and the whole, and
/// checks every chunking gets the same replies and envelopes; returns them.
/// A failure shows the dialogue, both sides.
fn run(ctx: Arc<SmtpContext>, input: &[u8]) -> (Vec<String>, Vec<Received>) {
    let whole = run_chunked(ctx.clone(), input, input.len().max(1));
    let mut chunk = 1;
    while chunk <= 512 {
        let got = run_chunked(ctx.clone(), input, chunk);
        assert!(
            got == whole,
            "chunks of {chunk} bytes changed the dialogue\n{}\nwhole input gave:\n{}",
            dialogue(input, &got.0),
            whole.0.concat()
        );
        chunk *= 2;
    }
    whole
}

/// The dialogue as a person reads it, for assertion messages.
fn dialogue(input: &[u8], replies: &[String]) -> String {
    let client: String = String::from_utf8_lossy(input)
        .lines()
        .map(|l| format!("C: {l}\n"))
        .collect();
    let server: String = replies
        .iter()
        .flat_map(|r| r.lines())
        .map(|l| format!("S: {l}\n"))
        .collect();
    format!("{client}{server}")
}

/// Asserts the reply codes, showing the dialogue when they differ.
#[track_caller]
fn assert_codes(input: &[u8], replies: &[String], expected: &[u16]) {
    assert!(
        codes(replies) == expected,
        "expected codes {expected:?}, got {:?}\n{}",
        codes(replies),
        dialogue(input, replies)
    );
}

fn codes(replies: &[String]) -> Vec<u16> {
    replies.iter().map(|r| r[..3].parse().unwrap()).collect()
}

#[test]
fn a_whole_transaction_replayed_in_every_chunk_size() {
    let input = b"EHLO client.test\r\nMAIL FROM:<bob@cs.unc.edu>\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
    let (replies, envs) = run(ctx(), input);
    assert_codes(input, &replies, &[220, 250, 250, 250, 354, 250, 221]);
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].message, b"Subject: hi\r\n\r\n.dot\r\n");
    assert_eq!(envs[0].local, vec!["usr1@gmail.com"]);
    assert_eq!(envs[0].mail_from, "bob@cs.unc.edu");
}

#[test]
fn ehlo_lists_the_extensions() {
    let (replies, _) = run(ctx(), b"EHLO x\r\n");
    let ehlo = &replies[1];
    for ext in [
        "PIPELINING",
        "SIZE ",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "AUTH PLAIN LOGIN",
        "250 HELP",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing from {ehlo}");
    }
}

#[test]
fn sequence_errors_are_503_and_the_session_goes_on() {
    let input = b"MAIL FROM:<usr1@gmail.com>\r\nHELO x\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\nMAIL FROM:<usr1@gmail.com>\r\nDATA\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\nx\r\n.\r\n";
    let (replies, envs) = run(ctx(), input);
    assert_eq!(
        codes(&replies),
        vec![220, 503, 250, 503, 503, 250, 503, 503, 250, 354, 250]
    );
    assert_eq!(envs.len(), 1);
}

#[test]
fn syntax_errors_are_500_or_501() {
    let input = b"HELO x\r\nd\r\nquit now please\r\nMAIL FROM:bob@gmail.com\r\nMAIL FROM:<bob>\r\nMAIL FROM:<usr1@gmail.com> junk\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<zhanhu@cse.ust.jk\r\nRCPT TO:<a@b@>\r\nHELO\r\n";
    let (replies, _) = run(ctx(), input);
    assert_eq!(codes(&replies), vec![220, 250, 500, 221]);
    let input = b"HELO x\r\nd\r\nMAIL FROM:bob@gmail.com\r\nMAIL FROM:<bob>\r\nMAIL FROM:<usr1@gmail.com> junk\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<zhanhu@cse.ust.jk\r\nHELO\r\nNOOP\r\n";
    let (replies, _) = run(ctx(), input);
    assert_eq!(
        codes(&replies),
        vec![220, 250, 500, 501, 501, 501, 250, 501, 501, 250]
    );
    assert!(
        replies[2].starts_with("500 5.5.1 Command unrecognized: \"d\""),
        "{}",
        replies[2]
    );
}

#[test]
fn verbs_are_case_insensitive_and_addresses_kept_as_typed() {
    let (replies, envs) = run(
        ctx(),
        b"helo X\r\nmail from:<Bob@CS.unc.edu>\r\nrcpt to:<USR1@gmail.com>\r\ndata\r\nx\r\n.\r\n",
    );
    assert_eq!(codes(&replies), vec![220, 250, 250, 250, 354, 250]);
    assert_eq!(envs[0].mail_from, "Bob@CS.unc.edu");
    assert_eq!(envs[0].local, vec!["USR1@gmail.com"]);
}

#[test]
fn unknown_local_recipient_is_550_5_1_1() {
    let (replies, _) = run(
        ctx(),
        b"HELO x\r\nMAIL FROM:<a@cs.unc.edu>\r\nRCPT TO:<error@gmail.com>\r\n",
    );
    assert!(replies[3].starts_with("550 5.1.1 "), "{}", replies[3]);
}

#[test]
fn local_sender_must_exist_and_open_relay_is_refused() {
    let (replies, _) = run(ctx(), b"HELO x\r\nMAIL FROM:<error@gmail.com>\r\nMAIL FROM:<a@cs.unc.edu>\r\nRCPT TO:<b@qq.com>\r\n");
    assert!(replies[2].starts_with("550 5.7.1 "), "{}", replies[2]);
    assert!(replies[4].starts_with("554 5.7.1 "), "{}", replies[4]);
    // A local sender may relay.
    let (replies, envs) = run(ctx(), b"HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<b@qq.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(codes(&replies), vec![220, 250, 250, 250, 250, 354, 250]);
    assert_eq!(envs[0].remote, vec!["b@qq.com"]);
    assert_eq!(envs[0].local, vec!["bob@gmail.com"]);
}

#[test]
fn a_local_sender_domain_is_matched_whatever_its_case_or_final_dot() {
    // Not a user: refused, as for `error@gmail.com`.
    let (replies, _) = run(ctx(), b"HELO x\r\nMAIL FROM:<error@GMail.COM.>\r\n");
    assert!(replies[2].starts_with("550 5.7.1 "), "{}", replies[2]);
    // A user (compared without case): a local sender, who may relay.
    let (replies, _) = run(
        ctx(),
        b"HELO x\r\nMAIL FROM:<USR1@Gmail.Com>\r\nRCPT TO:<b@qq.com>\r\n",
    );
    assert_eq!(codes(&replies), vec![220, 250, 250, 250]);
}

#[test]
fn null_sender_is_accepted_for_local_recipients() {
    let (replies, _) = run(
        ctx(),
        b"EHLO peer\r\nMAIL FROM:<>\r\nRCPT TO:<usr1@gmail.com>\r\nRCPT TO:<x@qq.com>\r\n",
    );
    assert_eq!(codes(&replies), vec![220, 250, 250, 250, 554]);
}

#[test]
fn auth_login_as_in_the_163_lab() {
    // The seed's exchange, byte for byte: HELO, then AUTH LOGIN.
    let user = B64.encode("usr1@gmail.com");
    let pass = B64.encode("password1");
    let input = format!("AUTH LOGIN\r\nHELO Sodascrew\r\nAUTH LOGIN\r\n{user}\r\n{pass}\r\nMAIL FROM: <usr1@gmail.com>\r\nRCPT TO: <bob@gmail.com>\r\nAUTH LOGIN\r\n");
    let (replies, _) = run(ctx(), input.as_bytes());
    assert_eq!(replies[1], "503 5.5.1 Error: send HELO/EHLO first\r\n");
    assert!(replies[2].starts_with("250 "));
    assert_eq!(replies[3], "334 dXNlcm5hbWU6\r\n");
    assert_eq!(replies[4], "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(replies[5], "235 2.7.0 Authentication successful\r\n");
    assert!(replies[6].starts_with("250 ") && replies[7].starts_with("250 "));
    assert_eq!(replies[8][..3].to_string(), "503");
}

#[test]
fn auth_plain_and_wrong_password() {
    let good = B64.encode("\0usr1@gmail.com\0password1");
    let bad = B64.encode("\0usr1@gmail.com\0nope");
    let input = format!("EHLO x\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN\r\n{good}\r\nAUTH CRAM-MD5\r\n");
    let (replies, _) = run(ctx(), input.as_bytes());
    assert_eq!(codes(&replies), vec![220, 250, 535, 334, 235, 503]);
}

#[test]
fn require_auth_and_sender_ownership() {
    let ctx = ctx_with(|s| s.policy.require_auth = true);
    let auth = B64.encode("\0usr1@gmail.com\0password1");
    let input = format!("EHLO x\r\nMAIL FROM:<usr1@gmail.com>\r\nAUTH PLAIN {auth}\r\nMAIL FROM:<bob@gmail.com>\r\nMAIL FROM:<usr1@gmail.com>\r\n");
    let (replies, _) = run(ctx, input.as_bytes());
    assert_eq!(codes(&replies), vec![220, 250, 530, 235, 553, 250]);
}

#[test]
fn long_lines_and_garbage_keep_the_session() {
    let mut input = b"HELO x\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'a', 10_000));
    input.extend_from_slice(b"\r\n\0\0\0\r\nNOOP\r\n");
    let (replies, _) = run(ctx(), &input);
    assert_eq!(codes(&replies), vec![220, 250, 500, 500, 250]);
    assert_eq!(replies[2], "500 5.5.2 Line too long\r\n");
}

#[test]
fn size_limits() {
    let ctx = ctx_with(|s| s.policy.max_message_size = 16);
    let input = b"EHLO x\r\nMAIL FROM:<usr1@gmail.com> SIZE=100\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\n01234567890123456789\r\n.\r\nNOOP\r\n";
    let (replies, envs) = run(ctx, input);
    assert_eq!(
        codes(&replies),
        vec![220, 250, 552, 250, 250, 354, 552, 250]
    );
    assert!(envs.is_empty());
}

#[test]
fn too_many_recipients() {
    let ctx = ctx_with(|s| s.policy.max_recipients = 1);
    let (replies, _) = run(ctx, b"HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nRCPT TO:<hcy@gmail.com>\r\n");
    assert_eq!(codes(&replies), vec![220, 250, 250, 250, 452]);
}

#[test]
fn mail_loops_are_refused() {
    let ctx = ctx_with(|s| s.policy.max_hops = 2);
    let input = b"HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nReceived: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n.\r\n";
    let (replies, _) = run(ctx, input);
    assert!(replies.last().unwrap().starts_with("554 5.4.6"));
}

#[test]
fn strict_grammar_of_hw1() {
    let ctx = ctx_with(|s| s.policy.strict = true);
    let input = b"HELO snapper.cs.unc.edu\r\nMAIL FROM:<a.b@cs.unc.edu>\r\nMAILFROM:<a@cs.unc.edu>\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA now\r\nDATA\r\n";
    let (replies, _) = run(ctx, input);
    assert_eq!(
        codes(&replies),
        vec![220, 250, 501, 500, 250, 250, 500, 354]
    );
}

#[test]
fn delivery_failure_is_451_and_the_session_goes_on() {
    let mut session = Session::new(ctx());
    session.greeting();
    session.push(b"HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
    let mut seen = Vec::new();
    while let Some(event) = session.next_event() {
        match event {
            Event::Reply(r) | Event::Discard(r) | Event::StartTls(r) => seen.push(r.code),
            Event::Body(_) | Event::Pause(_) | Event::Drop => {}
            Event::Deliver(_) => {
                assert_eq!(
                    session.next_event(),
                    None,
                    "nothing is answered before the delivery"
                );
                seen.push(
                    session
                        .delivered(Err(DeliveryError::Queue(std::io::Error::other(
                            "disk full",
                        ))))
                        .code,
                );
            }
        }
    }
    assert_eq!(seen, vec![250, 250, 250, 354, 451, 250]);
}

#[test]
fn transcript_records_both_sides_and_abbreviates_bodies() {
    let mut session = Session::new(ctx());
    session.greeting();
    let body: String = (0..50).map(|i| format!("line {i}\r\n")).collect();
    session.push(format!("HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\n{body}.\r\n").as_bytes());
    while let Some(event) = session.next_event() {
        if let Event::Deliver(_) = event {
            session.delivered(Ok(QueueId::from("Q1".to_string())));
        }
    }
    let lines: Vec<String> = session
        .take_transcript()
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        lines[0],
        "S: 220 gmail.com ESMTP mailnet Simple Mail Transfer Service Ready"
    );
    assert_eq!(lines[1], "C: HELO x");
    assert!(lines.iter().any(|l| l.starts_with("C: [... 46 more lines")));
    assert_eq!(lines.last().unwrap(), "S: 250 2.0.0 Ok: queued as Q1");
    assert!(lines.len() < 20);
}

#[test]
fn credentials_never_reach_the_transcript() {
    let user = B64.encode("usr1@gmail.com");
    let pass = B64.encode("password1");
    let plain = B64.encode("\0usr1@gmail.com\0password1");
    let input = format!(
        "EHLO x\r\nAUTH LOGIN\r\n{user}\r\n{pass}\r\nRSET\r\nEHLO y\r\nAUTH PLAIN {plain}\r\n"
    );
    let mut session = Session::new(ctx());
    session.greeting();
    session.push(input.as_bytes());
    let mut replies = Vec::new();
    while let Some(event) = session.next_event() {
        if let Event::Reply(r) = event {
            replies.push(r.to_string());
        }
    }
    let transcript: String = session
        .take_transcript()
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(transcript.contains("C: [password]"), "{transcript}");
    for secret in [&pass, &plain, "password1"] {
        assert!(
            !transcript.contains(secret),
            "{secret} is in the transcript:\n{transcript}"
        );
    }
    assert_eq!(
        replies.iter().filter(|r| r.starts_with("235")).count(),
        1,
        "{replies:?}"
    );
}

proptest::proptest! {
    /// Whatever a client sends, the session never panics, and how the bytes
    /// are split never changes what it answers.
    #[test]
    fn any_input_in_any_chunking_gets_the_same_answers(
        lines in proptest::collection::vec(
            "(HELO x|EHLO y|MAIL FROM:<usr1@gmail.com>|RCPT TO:<bob@gmail.com>|DATA|\\.|RSET|NOOP|AUTH LOGIN|QUIT|[ -~]{0,12})",
            0..12,
        ),
        ending in "(\r\n|\n)",
    ) {
        let input: String = lines.iter().map(|l| format!("{l}{ending}")).collect();
        let (replies, _) = run(ctx(), input.as_bytes());
        proptest::prop_assert!(replies[0].starts_with("220"));
    }
}

#[test]
fn strict_grammar_answers_multi_byte_garbage_and_goes_on() {
    let ctx = ctx_with(|s| s.policy.strict = true);
    let input = "HELO snapper.cs.unc.edu\r\nMAIL FRO€\r\nRCPT T€:<a@b>\r\nNOOP\r\n";
    let (replies, _) = run(ctx, input.as_bytes());
    assert_codes(input.as_bytes(), &replies, &[220, 250, 500, 500, 250]);
}

#[test]
fn a_client_off_the_network_must_authenticate_to_relay() {
    let auth = B64.encode("\0usr1@gmail.com\0password1");
    let input = format!(
        "EHLO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nRCPT TO:<someone@qq.com>\r\nRSET\r\n\
         AUTH PLAIN {auth}\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<someone@qq.com>\r\n"
    );
    let mut session = Session::new(ctx()).trusting(false);
    let mut replies = vec![session.greeting().to_string()];
    session.push(input.as_bytes());
    while let Some(event) = session.next_event() {
        if let Event::Reply(r) = event {
            replies.push(r.to_string());
        }
    }
    // A forged local sender delivers locally but relays nowhere; after AUTH it relays.
    assert_codes(
        input.as_bytes(),
        &replies,
        &[220, 250, 250, 250, 554, 250, 235, 250, 250],
    );
    assert!(replies[4].contains("Relay access denied"), "{}", replies[4]);
    assert!(replies[8].contains("will relay"), "{}", replies[8]);
    // The same dialogue from the server's own network relays without AUTH.
    let (replies, _) = run(
        ctx(),
        b"EHLO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<someone@qq.com>\r\n",
    );
    assert!(replies[3].contains("will relay"), "{}", replies[3]);
}

#[test]
fn a_size_too_large_to_count_is_552_not_accepted() {
    let input = b"EHLO x\r\nMAIL FROM:<usr1@gmail.com> SIZE=99999999999999999999999\r\nMAIL FROM:<usr1@gmail.com> SIZE=33554433\r\nMAIL FROM:<usr1@gmail.com> SIZE=1000\r\n";
    let (replies, _) = run(ctx(), input);
    assert_codes(input, &replies, &[220, 250, 552, 552, 250]);
}

#[test]
fn long_text_lines_are_kept_byte_exact_and_refused_only_when_strict() {
    let line = "x".repeat(2_000);
    let input = format!(
        "HELO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nSubject: long\r\n\r\n{line}\r\n.\r\n"
    );
    let (replies, envs) = run(ctx(), input.as_bytes());
    assert_codes(input.as_bytes(), &replies, &[220, 250, 250, 250, 354, 250]);
    assert_eq!(
        envs[0].message,
        format!("Subject: long\r\n\r\n{line}\r\n").as_bytes()
    );
    let strict = ctx_with(|s| s.policy.strict = true);
    let (replies, envs) = run(strict, input.as_bytes());
    assert_eq!(replies.last().unwrap(), "500 5.5.2 Line too long\r\n");
    assert!(envs.is_empty());
}

#[test]
fn parameters_not_advertised_get_555() {
    let input = b"EHLO x\r\nMAIL FROM:<usr1@gmail.com> BODY=BINARYMIME\r\nMAIL FROM:<usr1@gmail.com> RET=HDRS\r\nMAIL FROM:<usr1@gmail.com> ENVID=x\r\nMAIL FROM:<usr1@gmail.com> BODY=8BITMIME SMTPUTF8 SIZE=10\r\nRCPT TO:<bob@gmail.com> NOTIFY=SUCCESS\r\nRCPT TO:<bob@gmail.com> ORCPT=rfc822;bob@gmail.com\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nx\r\n.\r\n";
    let (replies, envs) = run(ctx(), input);
    assert_codes(
        input,
        &replies,
        &[220, 250, 555, 555, 555, 250, 555, 555, 250, 354, 250],
    );
    assert!(replies[2].starts_with("555 5.5.4"), "{}", replies[2]);
    assert_eq!(
        envs[0].body,
        Body {
            eight_bit: true,
            smtputf8: true
        }
    );
}

#[test]
fn accept_any_takes_every_address_of_its_domains() {
    let input = b"HELO x\r\nMAIL FROM:<anyone@gmail.com>\r\nRCPT TO:<whoever@gmail.com>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\nhi\r\n.\r\n";
    let (replies, _) = run(ctx(), input);
    assert_codes(input, &replies, &[220, 250, 550, 503, 503, 503, 500, 500]);
    let catch_all = ctx_with(|s| s.policy.accept_any = true);
    let (replies, envs) = run(catch_all, input);
    assert_codes(input, &replies, &[220, 250, 250, 250, 250, 354, 250]);
    assert_eq!(envs[0].local, vec!["whoever@gmail.com"]);
    // A trusted (loopback) client relays as before; accept_any opens no relay.
    assert_eq!(envs[0].remote, vec!["x@elsewhere.test"]);
}

#[test]
fn starttls_drops_what_was_pipelined_in_clear_and_starts_over() {
    // The injected RSET after STARTTLS must never be answered (CVE-2011-0411).
    let input =
        b"EHLO x\r\nAUTH PLAIN AHVzcjFAZ21haWwuY29tAHBhc3N3b3JkMQ==\r\nSTARTTLS\r\nRSET\r\n";
    // In one write, as the attack sends it (later bytes would be TLS).
    let (replies, _) = run_chunked(ctx(), input, input.len());
    assert_codes(input, &replies, &[220, 250, 235, 220]);
    assert!(replies[1].contains("250-STARTTLS"), "{}", replies[1]);
    // After the handshake: no HELO, no login kept; STARTTLS no longer offered.
    let mut session = Session::new(ctx());
    session.greeting();
    session.push(b"EHLO x\r\nSTARTTLS\r\n");
    while session.next_event().is_some() {}
    session.tls_established(crate::tls::TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TEST".into(),
    });
    session.push(b"MAIL FROM:<usr1@gmail.com>\r\nEHLO x\r\nSTARTTLS\r\n");
    let mut codes = Vec::new();
    let mut ehlo = String::new();
    while let Some(event) = session.next_event() {
        if let Event::Reply(r) = event {
            if r.code == 250 {
                ehlo = r.to_string();
            }
            codes.push(r.code);
        }
    }
    assert_eq!(codes, vec![503, 250, 503]);
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
}

#[test]
fn tls_required_and_auth_requires_tls() {
    let required = ctx_with(|s| s.policy.tls = crate::network::TlsPolicy::Required);
    let input = b"EHLO x\r\nMAIL FROM:<usr1@gmail.com>\r\nAUTH PLAIN AHVzcjFAZ21haWwuY29tAHBhc3N3b3JkMQ==\r\n";
    let (replies, _) = run(required, input);
    assert_codes(input, &replies, &[220, 250, 530, 530]);
    let auth_tls = ctx_with(|s| s.policy.auth_requires_tls = true);
    let (replies, _) = run(auth_tls, input);
    assert_codes(input, &replies, &[220, 250, 250, 538]);
    let input = b"EHLO x\r\nAUTH PLAIN AHVzcjFAZ21haWwuY29tAHBhc3N3b3JkMQ==\r\nSTARTTLS\r\nEHLO x\r\nAUTH PLAIN AHVzcjFAZ21haWwuY29tAHBhc3N3b3JkMQ==\r\n";
    let auth_tls = ctx_with(|s| s.policy.auth_requires_tls = true);
    let (replies, _) = run_chunked(auth_tls, input, input.len());
    assert_codes(input, &replies, &[220, 250, 538, 220]);
}

/// A context whose network has `faults` (as a network file writes them).
fn ctx_faulted(faults: &str) -> Arc<SmtpContext> {
    let set = crate::fault::Faults::new(7);
    let names = vec!["gmail.com".to_string(), "exmail.qq.com".to_string()];
    for text in faults.split("---") {
        let spec = crate::network::faults::FaultSpec::from_yaml(text).unwrap();
        set.add(
            spec.check(Some(&names), serde_saphyr::Location::UNKNOWN)
                .unwrap(),
        );
    }
    let mut ctx = (*ctx()).clone();
    ctx.faults = set;
    Arc::new(ctx)
}

/// [`run`] with a fresh fault set for each chunking (faults count events).
fn run_faulted(faults: &str, input: &[u8]) -> (Vec<String>, Vec<Received>) {
    let whole = run_chunked(ctx_faulted(faults), input, input.len().max(1));
    let mut chunk = 1;
    while chunk <= 512 {
        let got = run_chunked(ctx_faulted(faults), input, chunk);
        assert!(
            got == whole,
            "chunks of {chunk} bytes changed the dialogue\n{}",
            dialogue(input, &got.0)
        );
        chunk *= 2;
    }
    whole
}

const TWO_RCPTS: &[u8] = b"EHLO x\r\nMAIL FROM:<usr1@mail.sustech.edu.cn>\r\nRCPT TO:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n";

#[test]
fn an_injected_rcpt_reply_refuses_only_the_matching_recipient() {
    let (replies, envelopes) = run_faulted(
        "server: gmail.com\non: rcpt\nmatch: \"bob@*\"\nreply: \"451 4.3.0 Try again later\"\n",
        TWO_RCPTS,
    );
    assert_eq!(replies[4], "451 4.3.0 Try again later\r\n", "{replies:?}");
    assert!(replies[3].starts_with("250"));
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0].local, vec!["usr1@gmail.com".to_string()]);
}

#[test]
fn an_injected_reply_is_marked_in_the_transcript() {
    let mut session = Session::new(ctx_faulted(
        "server: gmail.com\non: mail\nreply: \"421 4.3.2 Going down\"\n",
    ));
    session.greeting();
    session.push(b"HELO x\r\nMAIL FROM:<a@b.c>\r\n");
    while session.next_event().is_some() {}
    let lines: Vec<String> = session
        .take_transcript()
        .iter()
        .map(|l| l.to_string())
        .collect();
    let at = lines
        .iter()
        .position(|l| l == "S: 421 4.3.2 Going down")
        .unwrap();
    assert!(lines[at + 1].contains("injected"), "{lines:?}");
}

#[test]
fn a_fault_fires_the_number_of_times_it_says() {
    let once = "server: gmail.com\non: rcpt\nreply: \"450 4.2.0 Busy\"\ntimes: 1\n";
    let (replies, envelopes) = run_faulted(once, TWO_RCPTS);
    assert!(replies[3].starts_with("450"), "{replies:?}");
    assert!(replies[4].starts_with("250"));
    assert_eq!(envelopes[0].local, vec!["bob@gmail.com".to_string()]);
}

#[test]
fn end_of_data_refusal_throws_the_message_away() {
    let (replies, envelopes) = run_faulted(
        "server: gmail.com\non: end_of_data\nmatch: usr1@gmail.com\nreply: \"554 5.7.1 Rejected by policy\"\n",
        TWO_RCPTS,
    );
    assert!(envelopes.is_empty());
    assert!(
        replies.contains(&"554 5.7.1 Rejected by policy\r\n".to_string()),
        "{replies:?}"
    );
    assert!(replies.last().unwrap().starts_with("221"));
}

#[test]
fn a_drop_at_data_ends_the_session_without_a_word() {
    let (replies, envelopes) =
        run_faulted("server: gmail.com\non: data\naction: drop\n", TWO_RCPTS);
    assert!(envelopes.is_empty());
    assert_eq!(replies.last().unwrap(), "[drop]", "{replies:?}");
    assert!(!replies.iter().any(|r| r.starts_with("354")));
}

#[test]
fn a_delay_pauses_before_the_usual_answer() {
    let (replies, envelopes) = run_faulted(
        "server: gmail.com\non: end_of_data\ndelay: 250ms\n",
        TWO_RCPTS,
    );
    let at = replies.iter().position(|r| r == "[pause 250 ms]").unwrap();
    assert!(
        replies[at + 1].starts_with("250 2.0.0 Ok: queued"),
        "{replies:?}"
    );
    assert_eq!(envelopes.len(), 1);
}

#[test]
fn greeting_and_connect_faults_change_the_opening() {
    let open = |faults: &str| -> Vec<String> {
        Session::new(ctx_faulted(faults))
            .open()
            .into_iter()
            .map(|e| match e {
                Event::Reply(r) => r.to_string(),
                Event::Pause(d) => format!("[pause {} ms]", d.as_millis()),
                Event::Drop => "[drop]".into(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let normal = open("dns: {name: x.test, answer: servfail}\n");
    assert_eq!(normal.len(), 1);
    assert!(normal[0].starts_with("220 "));
    let delayed = open("server: gmail.com\non: greeting\ndelay: 2s\n");
    assert_eq!(delayed[0], "[pause 2000 ms]");
    assert!(delayed[1].starts_with("220 "));
    assert_eq!(
        open("server: gmail.com\non: greeting\nreply: \"554 5.3.2 No service\"\n"),
        ["554 5.3.2 No service\r\n"]
    );
    assert_eq!(
        open("server: gmail.com\non: connect\nreply: \"421 4.3.2 Busy\"\n"),
        ["421 4.3.2 Busy\r\n", "[drop]"]
    );
    assert_eq!(
        open("server: gmail.com\non: connect\naction: drop\n"),
        ["[drop]"]
    );
    // A POP3 reply at the greeting is for POP3 sessions only.
    assert!(open("server: gmail.com\non: greeting\nreply: \"-ERR down\"\n")[0].starts_with("220 "));
}

#[test]
fn a_link_fault_touches_only_the_relay_it_names() {
    let faults = "link: exmail.qq.com -> gmail.com\non: helo\nreply: \"421 4.7.0 Not you\"\n";
    let helo = |from: Option<&str>| {
        let mut s = Session::new(ctx_faulted(faults)).relayed_from(from.map(str::to_string));
        s.greeting();
        s.push(b"EHLO mx\r\n");
        match s.next_event() {
            Some(Event::Reply(r)) => r.code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(helo(Some("exmail.qq.com")), 421);
    assert_eq!(helo(None), 250);
}

#[test]
fn a_client_that_talks_before_the_greeting_gets_554_and_only_quit() {
    let input = b"EHLO early.example\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<usr1@gmail.com>\r\nDATA\r\nQUIT\r\nNOOP\r\n";
    for chunk in [1, 2, 4, 8, 16, 32, input.len()] {
        let mut session = Session::new(ctx());
        session.spoke_first();
        let mut replies: Vec<String> = session
            .open()
            .into_iter()
            .map(|e| match e {
                Event::Reply(r) => r.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        for piece in input.chunks(chunk) {
            session.push(piece);
            while let Some(event) = session.next_event() {
                match event {
                    Event::Reply(r) => replies.push(r.to_string()),
                    other => panic!("no service, yet {other:?}"),
                }
            }
        }
        let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
        assert_eq!(
            codes,
            ["554", "503", "503", "503", "503", "221"],
            "chunks of {chunk}: {replies:?}"
        );
        assert!(
            replies[0].contains("talked before my greeting"),
            "{replies:?}"
        );
        assert!(session.is_closed());
        let transcript = session.take_transcript();
        assert!(
            transcript
                .iter()
                .any(|l| l.text.contains("[sent before the greeting]")),
            "{transcript:?}"
        );
    }
}

//! A message much larger than any buffer, relayed between two servers of a
//! `mailnet up` process: it arrives byte for byte, and the process's memory
//! does not grow with it (the relay reads the queue file a chunk at a time).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::Up;

/// Under the default 32 MiB limit of the default network, and far more than
/// the memory the test allows the relay.
const SIZE: usize = 30 * 1024 * 1024;

/// Line `i` of the message: lengths vary so lines, and the `.` that starts
/// every seventh, fall on every offset of the relay's chunks.
fn line(i: usize) -> Vec<u8> {
    let dot = if i % 7 == 0 { "." } else { "" };
    format!("{dot}{i} {}\r\n", "x".repeat(i % 131)).into_bytes()
}

/// The message, as the test sends it and expects it stored.
fn message() -> Vec<u8> {
    let mut out =
        b"From: usr1@gmail.com\r\nTo: usr1@mail.sustech.edu.cn\r\nSubject: large\r\n\r\n".to_vec();
    let mut i = 0;
    while out.len() < SIZE {
        out.extend_from_slice(&line(i));
        i += 1;
    }
    out
}

fn status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Sends `message` (dot-stuffed here) through `addr` as one SMTP transaction.
fn submit(addr: std::net::SocketAddr, message: &[u8]) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, stream);
    let mut expect = |writer: &mut std::io::BufWriter<TcpStream>, send: &[u8], code: &str| {
        writer.write_all(send).unwrap();
        writer.flush().unwrap();
        loop {
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
            if reply.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect(&mut writer, b"", "220");
    expect(&mut writer, b"EHLO big.client\r\n", "250");
    expect(&mut writer, b"MAIL FROM:<usr1@gmail.com>\r\n", "250");
    expect(
        &mut writer,
        b"RCPT TO:<usr1@mail.sustech.edu.cn>\r\n",
        "250",
    );
    expect(&mut writer, b"DATA\r\n", "354");
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            writer.write_all(b".").unwrap();
        }
        writer.write_all(line).unwrap();
    }
    expect(&mut writer, b".\r\n", "250");
    expect(&mut writer, b"QUIT\r\n", "221");
}

/// The one message in `dir`, once it is there.
fn arrived(dir: &Path, deadline: Duration) -> std::path::PathBuf {
    let started = Instant::now();
    loop {
        let found = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .next();
        if let Some(path) = found {
            return path;
        }
        assert!(
            started.elapsed() < deadline,
            "nothing arrived in {} within {deadline:?}",
            dir.display()
        );
        // Another process fills the folder: nothing here can wake on it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 30 MiB from gmail.com to mail.sustech.edu.cn: the relay at gmail.com
/// reads it back from its queue and sends it over STARTTLS. The process
/// serving both ends must not grow by anything near the message's size; a
/// relay that read the message whole (let alone made a stuffed copy) would.
#[test]
fn a_30_mib_message_is_relayed_byte_for_byte_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path(), &[]);
    let pid = up.pid();
    let message = message();
    // Boot has its own peak (certificates, the zone): start counting now.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status(pid, "VmRSS:");
    submit(up.smtp("gmail.com"), &message);
    let new = up
        .data
        .join("exmail.qq.com/mail/usr1@mail.sustech.edu.cn/new");
    let stored = std::fs::read(arrived(&new, Duration::from_secs(120))).unwrap();
    let grew_mib = status(pid, "VmHWM:").saturating_sub(before) / 1024;
    assert!(
        stored.ends_with(&message),
        "the stored message ({} octets) does not end with the {} sent",
        stored.len(),
        message.len()
    );
    let hops = &stored[..stored.len() - message.len()];
    let hops = String::from_utf8_lossy(hops);
    assert!(
        hops.contains("by gmail.com (mailnet)") && hops.contains("by exmail.qq.com (mailnet)"),
        "{hops}"
    );
    assert!(
        grew_mib < 16,
        "the process grew by {grew_mib} MiB while relaying {} MiB",
        SIZE >> 20
    );
}

//! The course grader's clients, byte for byte: `smtplib.SMTP.sendmail` with
//! the message `email.mime.text.MIMEText` builds, and `poplib.POP3`. Each
//! sends what Python 3.11 sends (lower-case `ehlo`, `mail FROM:<a> size=N`,
//! …) and fails with the exception Python raises, so a student's server
//! gets the same bytes and the same marks as under the course's grader.
//! The line I/O is the project's SMTP and POP3 clients'.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::net::TcpStream;

use super::python::{py_bytes, py_str, PyError};
use crate::pop3::client::Pop3Client;
use crate::smtp::client::{ClientError, SmtpClient};
use crate::transcript::Line;

/// smtplib's `_MAXLINE`.
const SMTP_MAXLINE: usize = 8192;
/// poplib's `_MAXLINE`.
const POP3_MAXLINE: usize = 2048;

/// The name smtplib gives in EHLO: `socket.getfqdn()`, approximated by the host name.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Connecting as `socket.create_connection` fails.
fn connect_error(e: &std::io::Error) -> PyError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => PyError::new(
            "ConnectionRefusedError",
            "ConnectionRefusedError(111, 'Connection refused')",
        ),
        std::io::ErrorKind::ConnectionReset => PyError::new(
            "ConnectionResetError",
            "ConnectionResetError(104, 'Connection reset by peer')",
        ),
        _ => PyError::new("OSError", format!("OSError({})", py_str(&e.to_string()))),
    }
}

/// A failed write, as the socket's `sendall` raises it.
fn write_error(e: ClientError) -> PyError {
    match e {
        ClientError::Io(io) => connect_error(&io),
        other => PyError::with_message("OSError", &other.to_string()),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, PyError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| connect_error(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Python's `int()` of reply-code bytes: optional blanks and sign, digits
/// with single underscores between them.
fn py_int(text: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let value: i32 = digits.replace('_', "").parse().ok()?;
    Some(if text.starts_with('-') { -value } else { value })
}

/// Everything `MIMEText(body, 'plain', 'utf-8')` with `Subject` and `From`
/// gives `as_string()`, with smtplib's CRLF line ends: what `sendmail` sends.
pub fn mime_text(from: &str, subject: &str, body: &str) -> Vec<u8> {
    let mut out = String::from(
        "Content-Type: text/plain; charset=\"utf-8\"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n",
    );
    out.push_str(&header("Subject", subject));
    out.push_str(&header("From", from));
    out.push_str("\r\n");
    // base64mime.body_encode: 57 bytes a line, each line ending in a newline.
    for chunk in body.as_bytes().chunks(57) {
        out.push_str(&B64.encode(chunk));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// A header as the `compat32` policy writes it: ASCII as it is (folded at
/// blanks past 78 columns), anything else RFC 2047-encoded in UTF-8, in
/// whichever of B and Q is shorter.
fn header(name: &str, value: &str) -> String {
    if !value.is_ascii() {
        let b = B64.encode(value.as_bytes());
        let q: String = value
            .bytes()
            .map(|c| match c {
                b' ' => "_".to_string(),
                c if c.is_ascii_alphanumeric() || b"!*+-/".contains(&c) => (c as char).to_string(),
                c => format!("={c:02X}"),
            })
            .collect();
        let encoded = if b.len() < q.len() {
            format!("=?utf-8?b?{b}?=")
        } else {
            format!("=?utf-8?q?{q}?=")
        };
        return format!("{name}: {encoded}\r\n");
    }
    let mut out = format!("{name}:");
    let mut column = out.len();
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 && column + 1 + word.len() > 78 {
            out.push_str("\r\n");
            column = 0;
        }
        out.push(' ');
        out.push_str(word);
        column += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// smtplib's `_quote_periods` and the end of `data()`: every line starting
/// with `.` gets another, and the message ends with CRLF `.` CRLF.
fn quote_data(message: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            q.push(b'.');
        }
        q.push(b);
        line_start = b == b'\n';
    }
    if !q.ends_with(b"\r\n") {
        q.extend_from_slice(b"\r\n");
    }
    q.extend_from_slice(b".\r\n");
    q
}

/// One `smtplib.SMTP` connection.
pub struct Smtplib {
    client: SmtpClient<TcpStream>,
    esmtp_features: Vec<String>,
    does_esmtp: bool,
}

/// When `sendmail` has sent its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterData {
    /// As the course's `SENDMAIL` does: wait this long, then `quit()`.
    WaitThenQuit(Duration),
    /// `quit()` at once, then wait (at most this long) for the server to
    /// close: its handler has finished with the message.
    QuitThenAwaitClose(Duration),
}

impl Smtplib {
    /// `SMTP(host, port)`: connects and reads the greeting (`220` or `SMTPConnectError`).
    pub async fn connect(addr: SocketAddr) -> Result<Smtplib, PyError> {
        // The whole step has a deadline; a read never needs one of its own.
        let mut client = SmtpClient::new(connect(addr).await?, Duration::from_secs(3600));
        client.record_transcript();
        let mut smtp = Smtplib {
            client,
            esmtp_features: Vec::new(),
            does_esmtp: false,
        };
        let (code, text) = smtp.getreply().await?;
        if code != 220 {
            return Err(PyError::response("SMTPConnectError", code, &text));
        }
        Ok(smtp)
    }

    /// The dialogue so far.
    pub fn transcript(&mut self) -> Vec<Line> {
        self.client.take_transcript()
    }

    /// `getreply()`: a reply's code (`-1` when not a number) and its lines joined by `\n`.
    async fn getreply(&mut self) -> Result<(i32, Vec<u8>), PyError> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let code;
        loop {
            let line = self.client.read_line_raw(SMTP_MAXLINE).await.map_err(|e| {
                PyError::with_message(
                    "SMTPServerDisconnected",
                    &format!("Connection unexpectedly closed: {e}"),
                )
            })?;
            if line.is_empty() {
                return Err(PyError::with_message(
                    "SMTPServerDisconnected",
                    "Connection unexpectedly closed",
                ));
            }
            if line.len() > SMTP_MAXLINE {
                return Err(PyError::response(
                    "SMTPResponseException",
                    500,
                    b"Line too long.",
                ));
            }
            self.client.note_line(Line::server(
                String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']),
            ));
            let text = line.get(4..).unwrap_or_default();
            let trimmed =
                text.iter()
                    .position(|b| !b" \t\r\n".contains(b))
                    .map_or(&[][..], |start| {
                        let end = text
                            .iter()
                            .rposition(|b| !b" \t\r\n".contains(b))
                            .unwrap_or(start);
                        &text[start..=end]
                    });
            lines.push(trimmed.to_vec());
            match py_int(&line[..line.len().min(3)]) {
                None => {
                    code = -1;
                    break;
                }
                Some(c) if line.get(3) != Some(&b'-') => {
                    code = c;
                    break;
                }
                Some(_) => {}
            }
        }
        Ok((code, lines.join(&b"\n"[..])))
    }

    async fn putcmd(&mut self, command: &str) -> Result<(), PyError> {
        self.client.note_line(Line::client(command));
        self.client
            .write(format!("{command}\r\n").as_bytes())
            .await
            .map_err(write_error)
    }

    async fn docmd(&mut self, command: &str) -> Result<(i32, Vec<u8>), PyError> {
        self.putcmd(command).await?;
        self.getreply().await
    }

    /// `ehlo_or_helo_if_needed()`.
    async fn ehlo_or_helo(&mut self, name: &str) -> Result<(), PyError> {
        let (code, text) = self.docmd(&format!("ehlo {name}")).await?;
        if code == -1 && text.is_empty() {
            return Err(PyError::with_message(
                "SMTPServerDisconnected",
                "Server not connected",
            ));
        }
        if code == 250 {
            self.does_esmtp = true;
            let text = String::from_utf8_lossy(&text).into_owned();
            self.esmtp_features = text
                .split('\n')
                .skip(1)
                .filter_map(|line| {
                    let end = line
                        .char_indices()
                        .find(|(i, c)| !(c.is_ascii_alphanumeric() || (*i > 0 && *c == '-')))
                        .map_or(line.len(), |(i, _)| i);
                    (end > 0).then(|| line[..end].to_ascii_lowercase())
                })
                .collect();
        }
        if !(200..=299).contains(&code) {
            let (code, text) = self.docmd(&format!("helo {name}")).await?;
            if !(200..=299).contains(&code) {
                return Err(PyError::response("SMTPHeloError", code, &text));
            }
        }
        Ok(())
    }

    /// `_rset()`: RSET, a closed connection forgiven.
    async fn rset(&mut self) -> Result<(), PyError> {
        match self.docmd("rset").await {
            Err(e) if e.class == "SMTPServerDisconnected" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `sendmail(from_addr, to_addrs, msg)`, then `quit()` as `after` says.
    /// Returns whether the server closed the connection after QUIT (only
    /// known with [`AfterData::QuitThenAwaitClose`]).
    pub async fn sendmail(
        &mut self,
        from: &str,
        to: &[String],
        message: &[u8],
        after: AfterData,
    ) -> Result<bool, PyError> {
        self.ehlo_or_helo(&local_hostname()).await?;
        if !message.is_ascii() {
            return Err(PyError::new(
                "UnicodeEncodeError",
                "UnicodeEncodeError('ascii', ..., 'ordinal not in range(128)')",
            ));
        }
        let mut options = String::new();
        if self.does_esmtp && self.esmtp_features.iter().any(|f| f == "size") {
            options = format!(" size={}", message.len());
        }
        let (code, text) = self.docmd(&format!("mail FROM:<{from}>{options}")).await?;
        if code != 250 {
            if code != 421 {
                self.rset().await?;
            }
            return Err(PyError::new(
                "SMTPSenderRefused",
                format!(
                    "SMTPSenderRefused({code}, {}, {})",
                    py_bytes(&text),
                    py_str(from)
                ),
            ));
        }
        let mut refused = Vec::new();
        for rcpt in to {
            let (code, text) = self.docmd(&format!("rcpt TO:<{rcpt}>")).await?;
            if code != 250 && code != 251 {
                refused.push(format!("{}: ({code}, {})", py_str(rcpt), py_bytes(&text)));
            }
            if code == 421 {
                return Err(recipients_refused(&refused));
            }
        }
        if refused.len() == to.len() {
            self.rset().await?;
            return Err(recipients_refused(&refused));
        }
        let (code, text) = self.docmd("data").await?;
        if code != 354 {
            return Err(PyError::response("SMTPDataError", code, &text));
        }
        self.client
            .note_line(Line::client(format!("(message: {} octets)", message.len())));
        self.client
            .write(&quote_data(message))
            .await
            .map_err(|e| PyError::with_message("OSError", &e.to_string()))?;
        let (code, text) = self.getreply().await?;
        if code != 250 {
            if code != 421 {
                self.rset().await?;
            }
            return Err(PyError::response("SMTPDataError", code, &text));
        }
        match after {
            AfterData::WaitThenQuit(wait) => {
                tokio::time::sleep(wait).await;
                self.docmd("quit").await?;
                Ok(false)
            }
            AfterData::QuitThenAwaitClose(at_most) => {
                self.docmd("quit").await?;
                let closed = tokio::time::timeout(at_most, async {
                    loop {
                        match self.client.read_line_raw(SMTP_MAXLINE).await {
                            Ok(line) if !line.is_empty() => continue,
                            _ => return,
                        }
                    }
                })
                .await
                .is_ok();
                Ok(closed)
            }
        }
    }
}

fn recipients_refused(refused: &[String]) -> PyError {
    PyError::new(
        "SMTPRecipientsRefused",
        format!("SMTPRecipientsRefused({{{}}})", refused.join(", ")),
    )
}

/// One `poplib.POP3` connection.
pub struct Poplib {
    client: Pop3Client<TcpStream>,
    transcript: Vec<Line>,
}

impl Poplib {
    /// `POP3(host, port)`: connects and reads the welcome (`+…` or `error_proto`).
    pub async fn connect(addr: SocketAddr) -> Result<Poplib, PyError> {
        let stream = connect(addr).await?;
        let mut pop = Poplib {
            client: Pop3Client::new(stream, Duration::from_secs(3600)),
            transcript: Vec::new(),
        };
        pop.getresp().await?;
        Ok(pop)
    }

    /// The dialogue since the last call.
    pub fn transcript(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.transcript)
    }

    /// `_getline()`: one line without its end, as poplib strips it.
    async fn getline(&mut self) -> Result<Vec<u8>, PyError> {
        let line = self
            .client
            .read_line_raw(POP3_MAXLINE)
            .await
            .map_err(|e| PyError::with_message("OSError", &e.to_string()))?;
        if line.len() > POP3_MAXLINE {
            return Err(PyError::new("error_proto", "error_proto('line too long')"));
        }
        if line.is_empty() {
            return Err(PyError::new("error_proto", "error_proto(b'-ERR EOF')"));
        }
        Ok(if line.ends_with(b"\r\n") {
            line[..line.len() - 2].to_vec()
        } else if line.starts_with(b"\r") {
            line[1..line.len() - 1].to_vec()
        } else {
            line[..line.len() - 1].to_vec()
        })
    }

    /// `_getresp()`: a status line that must start with `+`.
    async fn getresp(&mut self) -> Result<Vec<u8>, PyError> {
        let line = self.getline().await?;
        self.transcript
            .push(Line::server(String::from_utf8_lossy(&line).into_owned()));
        if !line.starts_with(b"+") {
            return Err(PyError::new(
                "error_proto",
                format!("error_proto({})", py_bytes(&line)),
            ));
        }
        Ok(line)
    }

    async fn putcmd(&mut self, command: &str) -> Result<(), PyError> {
        let shown = match command.strip_prefix("PASS ") {
            Some(_) => "PASS ****".to_string(),
            None => command.to_string(),
        };
        self.transcript.push(Line::client(shown));
        self.client
            .write(format!("{command}\r\n").as_bytes())
            .await
            .map_err(write_error)
    }

    /// `_shortcmd()`: a command and its status line.
    pub async fn shortcmd(&mut self, command: &str) -> Result<Vec<u8>, PyError> {
        self.putcmd(command).await?;
        self.getresp().await
    }

    /// `_longcmd()`: a command, its status line and the dot-terminated lines after it.
    pub async fn longcmd(&mut self, command: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), PyError> {
        self.putcmd(command).await?;
        let resp = self.getresp().await?;
        let mut lines = Vec::new();
        let mut octets = 0;
        loop {
            let line = self.getline().await?;
            if line == b"." {
                break;
            }
            octets += line.len();
            lines.push(match line.strip_prefix(b".") {
                Some(rest) if rest.starts_with(b".") => rest.to_vec(),
                _ => line,
            });
        }
        self.transcript.push(Line::server(format!(
            "({} lines, {octets} octets)",
            lines.len()
        )));
        Ok((resp, lines))
    }

    /// `stat()`: `(count, size)` parsed as poplib parses them.
    pub async fn stat(&mut self) -> Result<(i64, i64), PyError> {
        let resp = self.shortcmd("STAT").await?;
        let parts: Vec<&[u8]> = resp
            .split(|b| b.is_ascii_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        let number = |i: usize| -> Result<i64, PyError> {
            let part = parts
                .get(i)
                .ok_or_else(|| PyError::with_message("IndexError", "list index out of range"))?;
            py_int(part).map(i64::from).ok_or_else(|| invalid_int(part))
        };
        Ok((number(1)?, number(2)?))
    }
}

/// `int(b'x')`'s error.
pub fn invalid_int(text: &[u8]) -> PyError {
    PyError::new(
        "ValueError",
        format!(
            "ValueError(\"invalid literal for int() with base 10: {}\")",
            py_bytes(text)
        ),
    )
}

/// `int()` of bytes, as Python parses it.
pub fn parse_int(text: &[u8]) -> Result<i64, PyError> {
    py_int(text).map(i64::from).ok_or_else(|| invalid_int(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_mimetexts() {
        let m = mime_text("usr1@mail.sustech.edu.cn", "Test Subject", "Test Body");
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "Content-Type: text/plain; charset=\"utf-8\"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\nSubject: Test Subject\r\nFrom: usr1@mail.sustech.edu.cn\r\n\r\nVGVzdCBCb2R5\r\n"
        );
        let long = mime_text("a@b", "x", &"y".repeat(100));
        let text = String::from_utf8(long).unwrap();
        assert!(text.contains("\r\n\r\neXl5"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("eXl5")).count(), 2);
        assert_eq!(
            header("Subject", "Tëst"),
            "Subject: =?utf-8?b?VMOrc3Q=?=\r\n"
        );
    }

    #[test]
    fn data_is_quoted_as_smtplib_quotes_it() {
        assert_eq!(quote_data(b".a\r\nb\r\n"), b"..a\r\nb\r\n.\r\n");
        assert_eq!(quote_data(b"a"), b"a\r\n.\r\n");
    }

    #[test]
    fn reply_codes_parse_as_pythons_int() {
        assert_eq!(py_int(b"250"), Some(250));
        assert_eq!(py_int(b" 25"), Some(25));
        assert_eq!(py_int(b"2_5"), Some(25));
        assert_eq!(py_int(b"OK "), None);
        assert_eq!(py_int(b"2__5"), None);
    }
}

//! 8-bit to 7-bit conversion for a next server without `8BITMIME`
//! (RFC 6152 §3): every part whose body has 8-bit octets and is labelled
//! `7bit`, `8bit`, `binary` or not at all is re-encoded, quoted-printable
//! for `text/*` and base64 for the rest, with its `Content-Transfer-Encoding`
//! set to match. Everything else is copied octet for octet, so parts that
//! need nothing stay as they were. `multipart/*` and `message/rfc822` are
//! walked into (they may not be encoded themselves, RFC 2045 §6.4), and
//! keep or get `7bit`. A header with 8-bit octets cannot be converted:
//! that message is refused, and the caller bounces it.
//!
//! The message is read twice from its file, a line (at most [`PIECE`]
//! octets) at a time: once to find which parts need converting (a part's
//! header comes before its body, which decides it), once to write the copy
//! into a file. Memory stays bounded whatever the message's size.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::store::{EightBit, MessageFile};

/// The most of one line held at once; a longer line goes by in pieces.
const PIECE: u64 = 64 * 1024;

/// The largest header block of one part that is looked at.
const MAX_HEADER: usize = 1024 * 1024;

/// Why a message cannot be converted to 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unconvertible {
    /// A header field has 8-bit octets: RFC 6152 converts bodies only
    /// (such headers need `SMTPUTF8`, RFC 6532).
    #[error("a header has 8-bit octets (8-bit header), which RFC 6152 does not allow to convert")]
    Header,
    /// 8-bit octets outside every part (a multipart preamble or epilogue).
    #[error("8-bit octets stand outside every MIME part")]
    OutsideParts,
    /// A part says it is already encoded (quoted-printable, base64) yet has 8-bit octets.
    #[error("a part labelled as encoded has 8-bit octets")]
    Mislabelled,
    /// A part's header block is longer than this converter reads.
    #[error("a part's header block is longer than {MAX_HEADER} octets")]
    HugeHeader,
}

/// What stopped a conversion.
#[derive(Debug, thiserror::Error)]
pub enum DowngradeError {
    /// The message cannot be converted; it must bounce.
    #[error(transparent)]
    Unconvertible(#[from] Unconvertible),
    /// Reading the message or writing the copy failed; try again later.
    #[error("converting to 7-bit: {0}")]
    Io(#[from] io::Error),
}

/// A 7-bit copy of `message`, written to an unnamed file in `scratch` (it
/// disappears when the last reader is dropped).
pub fn seven_bit(message: &MessageFile, scratch: &Path) -> Result<MessageFile, DowngradeError> {
    let mut plan = Vec::new();
    walk(message.reader(), &mut Pass::Plan(&mut plan))?;
    std::fs::create_dir_all(scratch)?;
    let mut out = BufWriter::new(tempfile::tempfile_in(scratch)?);
    walk(
        message.reader(),
        &mut Pass::Write {
            plan: &plan,
            out: &mut out,
        },
    )?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(MessageFile::whole(file, EightBit::default())?)
}

/// How a leaf part's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Keep,
    QuotedPrintable,
    Base64,
}

enum Pass<'a> {
    /// Finding each leaf part's encoding, in order.
    Plan(&'a mut Vec<Encoding>),
    /// Writing the copy.
    Write {
        plan: &'a [Encoding],
        out: &'a mut dyn Write,
    },
}

/// One enclosing multipart.
struct Frame {
    boundary: Vec<u8>,
    digest: bool,
}

enum Mode {
    /// Reading an entity's header block.
    Headers {
        block: Vec<u8>,
        top: bool,
        in_digest: bool,
    },
    /// A preamble or epilogue: copied, must be 7-bit.
    Outside,
    /// A leaf part's body.
    Leaf(Leaf),
}

struct Leaf {
    /// What the part says it is (`None`: nothing, `7bit`, `8bit`, `binary`).
    plain_label: bool,
    text: bool,
    eight_bit: bool,
    encoder: Encoder,
}

fn walk<R: Read>(message: R, pass: &mut Pass<'_>) -> Result<(), DowngradeError> {
    let mut reader = BufReader::with_capacity(PIECE as usize, message);
    let mut stack: Vec<Frame> = Vec::new();
    let mut mode = Mode::Headers {
        block: Vec::new(),
        top: true,
        in_digest: false,
    };
    let mut leaves = 0usize;
    let mut piece = Vec::new();
    let mut at_line_start = true;
    loop {
        piece.clear();
        let n = (&mut reader).take(PIECE).read_until(b'\n', &mut piece)?;
        if n == 0 {
            break;
        }
        let starts_line = at_line_start;
        at_line_start = piece.ends_with(b"\n");
        let delimiter = if starts_line {
            delimiter_of(&piece, &stack)
        } else {
            None
        };
        if let Some((depth, closing)) = delimiter {
            end_mode(mode, pass, &mut leaves, true)?;
            let digest = stack[depth].digest;
            if closing {
                stack.truncate(depth);
                mode = Mode::Outside;
            } else {
                stack.truncate(depth + 1);
                mode = Mode::Headers {
                    block: Vec::new(),
                    top: false,
                    in_digest: digest,
                };
            }
            write(pass, &piece)?;
            continue;
        }
        mode = match mode {
            Mode::Headers {
                mut block,
                top,
                in_digest,
            } => {
                block.extend_from_slice(&piece);
                if block.len() > MAX_HEADER {
                    return Err(Unconvertible::HugeHeader.into());
                }
                if !(starts_line && matches!(&piece[..], b"\r\n" | b"\n")) {
                    Mode::Headers {
                        block,
                        top,
                        in_digest,
                    }
                } else {
                    begin_body(&block, top, in_digest, pass, &mut stack, leaves)?
                }
            }
            Mode::Outside => {
                if !piece.is_ascii() {
                    return Err(Unconvertible::OutsideParts.into());
                }
                write(pass, &piece)?;
                Mode::Outside
            }
            Mode::Leaf(mut leaf) => {
                leaf.eight_bit |= !piece.is_ascii();
                if let Pass::Write { out, .. } = pass {
                    leaf.encoder.feed(&piece, out)?;
                }
                Mode::Leaf(leaf)
            }
        };
    }
    end_mode(mode, pass, &mut leaves, false)
}

/// Whether `line` is a delimiter of an enclosing multipart: which one
/// (innermost first) and whether it closes it (`--boundary--`).
fn delimiter_of(line: &[u8], stack: &[Frame]) -> Option<(usize, bool)> {
    let rest = line.strip_prefix(b"--")?;
    stack.iter().enumerate().rev().find_map(|(depth, frame)| {
        let after = rest.strip_prefix(&frame.boundary[..])?;
        let (closing, after) = match after.strip_prefix(b"--") {
            Some(after) => (true, after),
            None => (false, after),
        };
        // RFC 2046 §5.1.1: only transport padding may follow.
        after
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .then_some((depth, closing))
    })
}

/// The header block of an entity is complete: writes it (changed when its
/// body is to be encoded) and says how its body is read.
fn begin_body(
    block: &[u8],
    top: bool,
    in_digest: bool,
    pass: &mut Pass<'_>,
    stack: &mut Vec<Frame>,
    leaves: usize,
) -> Result<Mode, DowngradeError> {
    if !block.is_ascii() {
        return Err(Unconvertible::Header.into());
    }
    let fields = Fields::of(block);
    let (ctype, boundary) = fields
        .get("content-type")
        .map(content_type)
        .unwrap_or_else(|| {
            let default = if in_digest {
                "message/rfc822"
            } else {
                "text/plain"
            };
            (default.to_string(), None)
        });
    let label = fields
        .get("content-transfer-encoding")
        .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
    let plain_label = matches!(label.as_deref(), None | Some("7bit" | "8bit" | "binary"));
    let container =
        ctype == "message/rfc822" || (ctype.starts_with("multipart/") && boundary.is_some());
    let encoding = match pass {
        Pass::Plan(_) => Encoding::Keep,
        Pass::Write { plan, .. } if !container => plan[leaves],
        Pass::Write { .. } => Encoding::Keep,
    };
    if let Pass::Write { out, .. } = pass {
        let wanted = match encoding {
            Encoding::QuotedPrintable => Some("quoted-printable"),
            Encoding::Base64 => Some("base64"),
            // What a container holds is 7-bit once converted.
            Encoding::Keep if container && matches!(label.as_deref(), Some("8bit" | "binary")) => {
                Some("7bit")
            }
            Encoding::Keep => None,
        };
        match wanted {
            None => out.write_all(block)?,
            Some(cte) => {
                let (fields_part, blank) = block.split_at(fields.end);
                fields.write_without(fields_part, "content-transfer-encoding", out)?;
                if top && fields.get("mime-version").is_none() {
                    out.write_all(b"MIME-Version: 1.0\r\n")?;
                }
                write!(out, "Content-Transfer-Encoding: {cte}\r\n")?;
                out.write_all(blank)?;
            }
        }
    }
    if ctype == "message/rfc822" {
        return Ok(Mode::Headers {
            block: Vec::new(),
            top: false,
            in_digest: false,
        });
    }
    if let (true, Some(boundary)) = (ctype.starts_with("multipart/"), boundary) {
        stack.push(Frame {
            boundary,
            digest: ctype == "multipart/digest",
        });
        return Ok(Mode::Outside);
    }
    Ok(Mode::Leaf(Leaf {
        plain_label,
        text: ctype.starts_with("text/"),
        eight_bit: false,
        encoder: Encoder::new(encoding),
    }))
}

/// Ends what was being read, at a delimiter (`at_boundary`) or at the end.
fn end_mode(
    mode: Mode,
    pass: &mut Pass<'_>,
    leaves: &mut usize,
    at_boundary: bool,
) -> Result<(), DowngradeError> {
    match mode {
        Mode::Headers { block, .. } => {
            if !block.is_ascii() {
                return Err(Unconvertible::Header.into());
            }
            write(pass, &block)?
        }
        Mode::Outside => {}
        Mode::Leaf(leaf) => {
            match pass {
                Pass::Plan(plan) => {
                    plan.push(match (leaf.eight_bit, leaf.plain_label, leaf.text) {
                        (false, _, _) => Encoding::Keep,
                        (true, false, _) => return Err(Unconvertible::Mislabelled.into()),
                        (true, true, true) => Encoding::QuotedPrintable,
                        (true, true, false) => Encoding::Base64,
                    })
                }
                Pass::Write { out, .. } => leaf.encoder.finish(at_boundary, out)?,
            }
            *leaves += 1;
        }
    }
    Ok(())
}

fn write(pass: &mut Pass<'_>, bytes: &[u8]) -> io::Result<()> {
    match pass {
        Pass::Plan(_) => Ok(()),
        Pass::Write { out, .. } => out.write_all(bytes),
    }
}

/// The fields of a header block, unfolded for reading.
struct Fields {
    /// `(lower-case name, value, where the field starts and ends)`.
    fields: Vec<(String, Vec<u8>, std::ops::Range<usize>)>,
    /// Where the fields end (the blank line, if any, follows).
    end: usize,
}

impl Fields {
    fn of(block: &[u8]) -> Fields {
        let mut fields: Vec<(String, Vec<u8>, std::ops::Range<usize>)> = Vec::new();
        let mut at = 0;
        let mut end = block.len();
        for line in block.split_inclusive(|&b| b == b'\n') {
            let range = at..at + line.len();
            at += line.len();
            if matches!(line, b"\r\n" | b"\n") {
                end = range.start;
                break;
            }
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            match (line.first(), fields.last_mut()) {
                (Some(b' ' | b'\t'), Some((_, value, whole))) => {
                    value.extend_from_slice(content);
                    whole.end = range.end;
                }
                _ => {
                    let (name, value) = match content.iter().position(|&b| b == b':') {
                        Some(colon) => (&content[..colon], &content[colon + 1..]),
                        None => (content, &b""[..]),
                    };
                    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
                    fields.push((name, value.to_vec(), range));
                }
            }
        }
        Fields { fields, end }
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| &v[..])
    }

    /// Writes the fields in `block` except every `name` field, as they were.
    fn write_without(&self, block: &[u8], name: &str, out: &mut dyn Write) -> io::Result<()> {
        let mut at = 0;
        for (_, _, range) in self.fields.iter().filter(|(n, _, _)| n == name) {
            out.write_all(&block[at..range.start])?;
            at = range.end;
        }
        out.write_all(&block[at..])
    }
}

/// A `Content-Type` value: its lower-case `type/subtype` and its `boundary`.
fn content_type(value: &[u8]) -> (String, Option<Vec<u8>>) {
    let text = String::from_utf8_lossy(value);
    let mut parts = split_params(&text).into_iter();
    let ctype = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let boundary = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
            .unwrap_or_else(|| value.to_string());
        (!value.is_empty()).then(|| value.into_bytes())
    });
    (ctype, boundary)
}

/// Splits at the `;` outside quoted strings.
fn split_params(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// Writes a leaf body: as it came, or encoded a piece at a time.
struct Encoder {
    encoding: Encoding,
    /// Quoted-printable: the output column; a blank that ended a piece in
    /// the middle of a line (encoded only if the line ends right after).
    column: usize,
    held_blank: Option<u8>,
    /// Base64: octets waiting for a whole output line, and the line end of
    /// the last piece (part of the body unless a delimiter follows).
    carry: Vec<u8>,
    held_eol: Vec<u8>,
}

/// Octets per base64 line of 76 characters.
const B64_LINE: usize = 57;

impl Encoder {
    fn new(encoding: Encoding) -> Encoder {
        Encoder {
            encoding,
            column: 0,
            held_blank: None,
            carry: Vec::with_capacity(B64_LINE),
            held_eol: Vec::new(),
        }
    }

    fn feed(&mut self, piece: &[u8], out: &mut dyn Write) -> io::Result<()> {
        match self.encoding {
            Encoding::Keep => out.write_all(piece),
            Encoding::QuotedPrintable => self.quoted_printable(piece, out),
            Encoding::Base64 => {
                let eol = if piece.ends_with(b"\r\n") {
                    2
                } else {
                    usize::from(piece.ends_with(b"\n"))
                };
                let held = std::mem::take(&mut self.held_eol);
                self.base64(&held, out)?;
                let (content, eol) = piece.split_at(piece.len() - eol);
                self.base64(content, out)?;
                self.held_eol = eol.to_vec();
                Ok(())
            }
        }
    }

    fn finish(mut self, at_boundary: bool, out: &mut dyn Write) -> io::Result<()> {
        match self.encoding {
            Encoding::Keep => Ok(()),
            Encoding::QuotedPrintable => {
                if let Some(blank) = self.held_blank.take() {
                    // The body ends here, so the blank ended its last line.
                    self.token(&hex(blank), out)?;
                }
                Ok(())
            }
            Encoding::Base64 => {
                if !at_boundary {
                    let held = std::mem::take(&mut self.held_eol);
                    self.base64(&held, out)?;
                }
                if !self.carry.is_empty() {
                    out.write_all(B64.encode(&self.carry).as_bytes())?;
                    out.write_all(b"\r\n")?;
                }
                Ok(())
            }
        }
    }

    fn base64(&mut self, mut bytes: &[u8], out: &mut dyn Write) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (B64_LINE - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() == B64_LINE {
                out.write_all(B64.encode(&self.carry).as_bytes())?;
                out.write_all(b"\r\n")?;
                self.carry.clear();
            }
        }
        Ok(())
    }

    /// RFC 2045 §6.7: lines of at most 76 characters, soft breaks `=`,
    /// blanks before a line end encoded, hard line ends kept as they were.
    fn quoted_printable(&mut self, piece: &[u8], out: &mut dyn Write) -> io::Result<()> {
        let eol = if piece.ends_with(b"\r\n") {
            2
        } else {
            usize::from(piece.ends_with(b"\n"))
        };
        let (content, eol) = piece.split_at(piece.len() - eol);
        if let Some(blank) = self.held_blank.take() {
            if content.is_empty() && !eol.is_empty() {
                self.token(&hex(blank), out)?;
            } else {
                self.token(&[blank], out)?;
            }
        }
        for (i, &b) in content.iter().enumerate() {
            let last = i + 1 == content.len();
            match b {
                b' ' | b'\t' if last && eol.is_empty() => self.held_blank = Some(b),
                b' ' | b'\t' if last => self.token(&hex(b), out)?,
                33..=126 if b != b'=' => self.token(&[b], out)?,
                b' ' | b'\t' => self.token(&[b], out)?,
                _ => self.token(&hex(b), out)?,
            }
        }
        if !eol.is_empty() {
            out.write_all(eol)?;
            self.column = 0;
        }
        Ok(())
    }

    /// One encoded character, after a soft line break when the line is full
    /// (75 leaves room for the `=` of the break).
    fn token(&mut self, token: &[u8], out: &mut dyn Write) -> io::Result<()> {
        if self.column + token.len() > 75 {
            out.write_all(b"=\r\n")?;
            self.column = 0;
        }
        out.write_all(token)?;
        self.column += token.len();
        Ok(())
    }
}

/// `=XX`, the quoted-printable form of an octet.
fn hex(b: u8) -> [u8; 3] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    [
        b'=',
        DIGITS[usize::from(b >> 4)],
        DIGITS[usize::from(b & 15)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn convert(message: &[u8]) -> Result<Vec<u8>, DowngradeError> {
        let dir = tempfile::tempdir().unwrap();
        let mut file = tempfile::tempfile_in(dir.path()).unwrap();
        file.write_all(message).unwrap();
        let original = MessageFile::whole(file, EightBit::default()).unwrap();
        let copy = seven_bit(&original, dir.path())?;
        let mut out = Vec::new();
        copy.reader().read_to_end(&mut out).unwrap();
        assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
        assert!(
            out.split(|&b| b == b'\n').all(|l| l.len() <= 78),
            "a line longer than 76 characters"
        );
        Ok(out)
    }

    #[test]
    fn a_single_part_text_becomes_quoted_printable_and_decodes_back() {
        let text = "Grüße aus Shenzhen: 中文 ünïcödé\r\nA line with a trailing blank \r\n= signs =3D and tabs\t\r\n.dot first\r\n".to_string()
            + &"é".repeat(300)
            + "\r\nend";
        let message = format!(
            "From: a@x.test\r\nSubject: plain\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        );
        let out = convert(message.as_bytes()).unwrap();
        let out_text = String::from_utf8(out.clone()).unwrap();
        assert!(
            out_text.starts_with("From: a@x.test\r\nSubject: plain\r\nContent-Type: text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
            "{out_text}"
        );
        assert!(!out_text.contains("8bit"));
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.body_text(0).unwrap(), text);
    }

    #[test]
    fn a_line_longer_than_a_piece_is_encoded_whole() {
        let text = format!("{} \r\n{}", "ü".repeat(PIECE as usize), "x ".repeat(40_000));
        let message = format!("Subject: long\r\n\r\n{text}");
        let out = convert(message.as_bytes()).unwrap();
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.body_text(0).unwrap(), text);
    }

    #[test]
    fn only_the_8_bit_parts_of_a_multipart_change() {
        let attachment: Vec<u8> = (0..=255u8)
            .cycle()
            .take(5000)
            .map(|b| if b == b'\n' || b == b'\r' { b'.' } else { b })
            .collect::<Vec<u8>>()
            .chunks(70)
            .flat_map(|line| [line, b"\r\n"].concat())
            .collect();
        let ascii_part = "Content-Type: text/plain\r\n\r\nplain ascii part\r\n";
        let mut message = "From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b=1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n--b=1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nünïcödé text\r\n--b=1\r\n".as_bytes().to_vec();
        message.extend_from_slice(ascii_part.as_bytes());
        message.extend_from_slice(b"--b=1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"blob.bin\"\r\nContent-Transfer-Encoding: binary\r\n\r\n");
        message.extend_from_slice(&attachment);
        message.extend_from_slice(b"\r\n--b=1--\r\nepilogue\r\n");
        let out = convert(&message).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!("--b=1\r\n{ascii_part}--b=1\r\n")),
            "unchanged part: {text}"
        );
        assert!(text.contains("boundary=\"b=1\"\r\nContent-Transfer-Encoding: 7bit\r\n"));
        assert!(text.starts_with("From: a@x.test\r\nMIME-Version: 1.0\r\n"));
        assert_eq!(text.matches("MIME-Version").count(), 1);
        assert!(text.ends_with("\r\n--b=1--\r\nepilogue\r\n"));
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.body_text(0).unwrap(), "ünïcödé text");
        assert_eq!(parsed.body_text(1).unwrap(), "plain ascii part");
        let blob = parsed.attachment(0).unwrap();
        assert_eq!(blob.attachment_name(), Some("blob.bin"));
        assert_eq!(blob.contents(), &attachment[..]);
        assert_eq!(blob.content_transfer_encoding(), Some("base64"), "{text}");
    }

    #[test]
    fn a_forwarded_message_is_walked_into() {
        let message = "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nnaïve\r\n--in--\r\n\r\n--out--\r\n";
        let out = convert(message.as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--in\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n--in--\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"),
            "{text}"
        );
    }

    #[test]
    fn headers_and_mislabelled_parts_cannot_be_converted() {
        let refused = |message: &str| match convert(message.as_bytes()) {
            Err(DowngradeError::Unconvertible(why)) => why,
            other => panic!("{other:?}"),
        };
        let header = refused("Subject: Καλημέρα\r\n\r\nbody\r\n");
        assert_eq!(header, Unconvertible::Header);
        assert!(header.to_string().contains("8-bit header"), "{header}");
        assert_eq!(
            refused("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Ünï: 1\r\n\r\nbody\r\n--b--\r\n"),
            Unconvertible::Header
        );
        assert_eq!(
            refused("Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\nünï\r\n"),
            Unconvertible::Mislabelled
        );
        assert_eq!(
            refused("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\nünï\r\n--b\r\n\r\nbody\r\n--b--\r\n"),
            Unconvertible::OutsideParts
        );
    }
}

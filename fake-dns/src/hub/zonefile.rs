//! The hub's zones on disk, in RFC 1035 master-file format (BIND can load
//! each zone): a `$ORIGIN` line opens each zone, then one record per line
//! with its absolute name, TTL and class.

use std::io::Write;
use std::path::Path;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::txt::Parser;

use super::update::Registry;
use super::FileError;

/// A zone file that cannot be read or written.
pub type ZoneFileError = FileError;

/// The registry as master-file text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::from("; mailnet hub: registered zones. Written by `mailnet hub --zone-file`;\n; edit while the hub is stopped.\n");
    for apex in registry.zones() {
        out.push_str(&format!("\n$ORIGIN {apex}\n"));
        for record in registry.zone.records_of(&LowerName::new(&apex)) {
            out.push_str(&line(record));
            out.push('\n');
        }
    }
    out
}

/// One record in master-file syntax. hickory prints TXT data unquoted,
/// which would not read back, so TXT strings are quoted here.
fn line(record: &hickory_proto::rr::Record) -> String {
    match &record.data {
        hickory_proto::rr::RData::TXT(txt) => {
            let strings: Vec<String> = txt
                .txt_data
                .iter()
                .map(|s| {
                    let mut quoted = String::from("\"");
                    for &b in s.iter() {
                        match b {
                            b'"' | b'\\' => {
                                quoted.push('\\');
                                quoted.push(b as char);
                            }
                            0x20..=0x7e => quoted.push(b as char),
                            _ => quoted.push_str(&format!("\\{b:03}")),
                        }
                    }
                    quoted.push('"');
                    quoted
                })
                .collect();
            format!(
                "{} {} {} TXT {}",
                record.name,
                record.ttl,
                record.dns_class,
                strings.join(" ")
            )
        }
        _ => record.to_string(),
    }
}

/// Writes the registry to `path` atomically (a temporary file renamed over it).
pub fn write(path: &Path, registry: &Registry) -> Result<(), ZoneFileError> {
    let io = |source| ZoneFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(render(registry).as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Reads a zone file into `registry`; a missing file is an empty hub.
pub fn read(path: &Path, registry: &mut Registry) -> Result<usize, ZoneFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(ZoneFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(&text, registry).map_err(|(line, column, what)| ZoneFileError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        what,
    })
}

/// Parses zone-file text into `registry`; the records read, or (line, column, what).
pub fn parse(text: &str, registry: &mut Registry) -> Result<usize, (usize, usize, String)> {
    let mut origin: Option<Name> = None;
    let mut count = 0;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.split(';').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let column = indent + 1;
        let mut words = line.split_whitespace();
        if let Some(directive) = words.next().filter(|w| w.starts_with('$')) {
            if !directive.eq_ignore_ascii_case("$ORIGIN") {
                return Err((
                    line_no,
                    column,
                    format!("`{directive}` is not supported here (only $ORIGIN)"),
                ));
            }
            let Some(apex) = words.next() else {
                return Err((
                    line_no,
                    column + directive.len(),
                    "$ORIGIN needs a zone name".into(),
                ));
            };
            let mut apex = Name::from_ascii(apex).map_err(|e| {
                (
                    line_no,
                    line.find(apex).unwrap_or(0) + 1,
                    format!("`{apex}`: {e}"),
                )
            })?;
            apex.set_fqdn(true);
            origin = Some(apex);
            continue;
        }
        let Some(apex) = &origin else {
            return Err((
                line_no,
                column,
                "a record before any `$ORIGIN zone.` line".into(),
            ));
        };
        if indent > 0 {
            return Err((
                line_no,
                1,
                "each record starts with its name in the first column".into(),
            ));
        }
        let parsed = Parser::new(format!("{line}\n"), None, Some(apex.clone()))
            .parse()
            .map_err(|e| (line_no, column, e.to_string()))?;
        for (_, set) in parsed.1 {
            for record in set.records_without_rrsigs() {
                if !registry.restore(apex, record.clone()) {
                    return Err((
                        line_no,
                        column,
                        format!("{} is outside zone {apex}", record.name),
                    ));
                }
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Answer;
    use hickory_proto::rr::rdata::{A, MX, SRV, TXT};
    use hickory_proto::rr::{RData, Record, RecordType};

    #[test]
    fn zones_survive_a_write_and_a_read() {
        let mut hub = Registry::new(60);
        let apex = Name::from_ascii("alice.test.").unwrap();
        let n = |s: &str| Name::from_ascii(s).unwrap();
        hub.apply(
            &apex,
            &[],
            &[
                Record::from_rdata(
                    n("alice.test."),
                    60,
                    RData::MX(MX::new(10, n("mx.alice.test."))),
                ),
                Record::from_rdata(
                    n("mx.alice.test."),
                    60,
                    RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, 2))),
                ),
                Record::from_rdata(
                    n("_submission._tcp.alice.test."),
                    60,
                    RData::SRV(SRV::new(0, 0, 2525, n("smtp.alice.test."))),
                ),
                Record::from_rdata(
                    n("alice.test."),
                    60,
                    RData::TXT(TXT::new(vec![
                        "mailnet mx=mx.alice.test smtp=2525 pop3=2110".into(),
                    ])),
                ),
            ],
            true,
        )
        .unwrap();
        let text = render(&hub);
        let mut back = Registry::new(60);
        assert_eq!(parse(&text, &mut back).unwrap(), 5, "{text}");
        assert_eq!(render(&back), text);
        assert!(
            matches!(back.zone.lookup_str("_submission._tcp.alice.test", RecordType::SRV), Answer::Records(r) if r.len() == 1)
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let mut hub = Registry::new(60);
        let error = parse(
            "$ORIGIN alice.test.\nalice.test. 60 IN MX ten mx.alice.test.\n",
            &mut hub,
        )
        .unwrap_err();
        assert_eq!((error.0, error.1), (2, 1), "{error:?}");
        let error = parse("alice.test. 60 IN A 192.0.2.1\n", &mut hub).unwrap_err();
        assert_eq!(error.0, 1);
        assert!(error.2.contains("$ORIGIN"), "{error:?}");
        let error = parse(
            "$ORIGIN alice.test.\nbob.test. 60 IN A 192.0.2.1\n",
            &mut hub,
        )
        .unwrap_err();
        assert!(error.2.contains("outside zone alice.test."), "{error:?}");
        let error = parse("$INCLUDE /etc/passwd\n", &mut hub).unwrap_err();
        assert!(error.2.contains("not supported"), "{error:?}");
    }
}

//! The delivery journal: one append-only file per server where a small
//! message is written before its `250`, with no file created for it.
//!
//! Creating a file per message costs more than the whole SMTP dialogue on
//! ext4 (inode allocation and a directory entry each time), so ingest
//! appends each message here in one write instead. The Maildir stays the
//! store everyone reads: each record is turned into its `new/` file with
//! the name (and so the POP3 `UIDL`) chosen when it was appended. That
//! happens in the background once ingest has paused for a moment, and at
//! once, before the answer, whenever anything lists a mailbox
//! ([`super::Mailstore::messages`]), so no reader ever misses a message
//! that was acknowledged.
//!
//! The file starts with a header holding how far records have been placed
//! (`done`); records follow, each a line `M <size> <name> <folder>` and
//! then `size` octets of message. The journal is cut back to its header
//! whenever everything in it is placed. After a crash, records past `done`
//! are placed again (one already placed is kept: same name, same bytes) and
//! a record cut short by the crash, which was never acknowledged, is
//! dropped.

use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// `mailnet-journal 1 done=` then 16 hex digits and a newline.
const MAGIC: &[u8] = b"mailnet-journal 1 done=";
/// Octets before the first record.
pub const HEADER_LEN: u64 = MAGIC.len() as u64 + 17;
/// The longest record line read back (a name is ~60 octets, a folder 120).
const MAX_LINE: usize = 1024;

/// One message in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The mailbox folder it belongs to.
    pub folder: String,
    /// Its Maildir file name.
    pub name: String,
    /// Where its octets start in the journal.
    pub offset: u64,
    /// How many there are.
    pub size: u64,
    /// Where the next record starts.
    pub next: u64,
}

/// The appending end: records go after `end`.
#[derive(Debug)]
pub struct Tail {
    /// Open for appending; `None` until the first record (or after an error).
    file: Option<File>,
    /// Where the next record goes.
    pub end: u64,
}

/// The reading end: records before `done` are placed.
#[derive(Debug)]
pub struct Head {
    /// Open for reading and for the header; `None` until there is a journal.
    file: Option<File>,
    /// Records before this offset are in their Maildirs.
    pub done: u64,
}

/// Opens the journal at `path` as a previous run left it: `(tail, head)`.
/// A record cut short by a crash is dropped; a journal that is not one
/// (a foreign file) is moved aside to `<path>.corrupt`, never deleted.
pub fn open(path: &Path) -> io::Result<(Tail, Head)> {
    let file = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((
                Tail {
                    file: None,
                    end: HEADER_LEN,
                },
                Head {
                    file: None,
                    done: HEADER_LEN,
                },
            ))
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // `None` when shorter than a header: killed while the header was first
    // written, nothing after it yet.
    let done = match read_done(&file, len)? {
        Some(done) => done.clamp(HEADER_LEN, len),
        None if len <= HEADER_LEN => HEADER_LEN,
        None => {
            let aside = path.with_extension("corrupt");
            fs::rename(path, &aside)?;
            tracing::error!(
                "{}: not a delivery journal; moved to {}",
                path.display(),
                aside.display()
            );
            return open(path);
        }
    };
    let head = Head {
        file: Some(file),
        done,
    };
    // Walk to the last whole record; whatever follows was never acknowledged.
    let mut end = done;
    while let Some(record) = read_record(&head, end, len)? {
        end = record.next;
    }
    let file = head.file.as_ref().expect("opened above");
    if end != len {
        file.set_len(end)?;
    }
    write_header(file, done)?;
    let tail = Tail {
        file: Some(append_handle(path)?),
        end,
    };
    Ok((tail, head))
}

/// `done` from the header of the journal `file`, `len` octets long;
/// `None` when it has no header or not one of ours.
fn read_done(file: &File, len: u64) -> io::Result<Option<u64>> {
    if len < HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    let parsed = header
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_suffix(b"\n"))
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| u64::from_str_radix(digits, 16).ok());
    Ok(parsed)
}

fn write_header(file: &File, done: u64) -> io::Result<()> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(format!("{done:016x}\n").as_bytes());
    file.write_all_at(&header, 0)
}

fn append_handle(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new().append(true).open(path)
}

/// Appends one record: `parts` are the message's octets, written with its
/// record line in one system call where the kernel takes them all. On an
/// error the journal is cut back to where it was, so no half record stays.
pub fn append(
    path: &Path,
    tail: &mut Tail,
    folder: &str,
    name: &str,
    parts: &[&[u8]],
) -> io::Result<()> {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let mut line = String::with_capacity(name.len() + folder.len() + 24);
    line.push_str("M ");
    crate::text::push_decimal(&mut line, size as u64, 0);
    line.push(' ');
    line.push_str(name);
    line.push(' ');
    line.push_str(folder);
    line.push('\n');
    if tail.file.is_none() {
        let file = create(path)?;
        tail.end = tail.end.max(HEADER_LEN);
        // After a failed cut (below) the file may still hold half a record
        // past `end`: it goes now, before anything is appended after it.
        file.set_len(tail.end)?;
        tail.file = Some(file);
    }
    let file = tail.file.as_mut().expect("opened above");
    let mut slices = Vec::with_capacity(parts.len() + 1);
    slices.push(IoSlice::new(line.as_bytes()));
    slices.extend(parts.iter().map(|p| IoSlice::new(p)));
    match write_all_slices(file, &mut slices) {
        Ok(()) => {
            tail.end += (line.len() + size) as u64;
            Ok(())
        }
        Err(e) => {
            let cut = file.set_len(tail.end);
            if cut.is_err() {
                // Half a record may stay: the next append opens the file
                // again and cuts it first.
                tail.file = None;
            }
            Err(e)
        }
    }
}

/// The journal file, made with its header if it is not there.
fn create(path: &Path) -> io::Result<File> {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => write_header(&file, HEADER_LEN)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            return create(path);
        }
        Err(e) => return Err(e),
    }
    append_handle(path)
}

fn write_all_slices(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The record at `at`, if a whole one is there before `end`.
pub fn read_record(head: &Head, at: u64, end: u64) -> io::Result<Option<Record>> {
    let Some(file) = &head.file else {
        return Ok(None);
    };
    if at >= end {
        return Ok(None);
    }
    let mut buf = vec![0u8; MAX_LINE.min((end - at) as usize)];
    let n = read_some_at(file, &mut buf, at)?;
    let Some(nl) = memchr::memchr(b'\n', &buf[..n]) else {
        return Ok(None);
    };
    let Some((size, name, folder)) = parse_line(&buf[..nl]) else {
        return Ok(None);
    };
    let offset = at + nl as u64 + 1;
    let next = offset + size;
    if next > end {
        return Ok(None);
    }
    Ok(Some(Record {
        folder: folder.to_string(),
        name: name.to_string(),
        offset,
        size,
        next,
    }))
}

fn read_some_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `M <size> <name> <folder>`; a name or folder that could leave the
/// mail root (a tampered journal) is not a record.
fn parse_line(line: &[u8]) -> Option<(u64, &str, &str)> {
    let line = std::str::from_utf8(line).ok()?.strip_prefix("M ")?;
    let mut fields = line.splitn(3, ' ');
    let size = fields.next()?.parse().ok()?;
    let name = fields.next()?;
    let folder = fields.next()?;
    let safe =
        |s: &str| !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0', ' ', '\n']);
    (safe(name) && safe(folder)).then_some((size, name, folder))
}

/// Reads a record's octets.
pub fn read_body(head: &Head, record: &Record) -> io::Result<Vec<u8>> {
    let file = head
        .file
        .as_ref()
        .ok_or_else(|| io::Error::other("no journal open"))?;
    let mut body = vec![0u8; record.size as usize];
    file.read_exact_at(&mut body, record.offset)?;
    Ok(body)
}

impl Head {
    /// Opens the reading end once the appending end has made the file.
    pub fn ensure_open(&mut self, path: &Path) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(fs::OpenOptions::new().read(true).write(true).open(path)?);
        }
        Ok(())
    }

    /// Records everything before `done` as placed.
    pub fn commit(&mut self, done: u64) -> io::Result<()> {
        if let Some(file) = &self.file {
            write_header(file, done)?;
        }
        self.done = done;
        Ok(())
    }

    /// Everything is placed and nothing is being appended (the caller holds
    /// `tail`): cuts the journal back to its header. The file is cut first,
    /// so a crash between the two steps leaves `done` past the end, which
    /// [`open`] reads as "all placed".
    pub fn reset(&mut self, tail: &mut Tail) -> io::Result<()> {
        if let Some(file) = &self.file {
            file.set_len(HEADER_LEN)?;
            write_header(file, HEADER_LEN)?;
        }
        self.done = HEADER_LEN;
        tail.end = HEADER_LEN;
        Ok(())
    }
}

/// A message still in a journal, read by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journalled {
    /// Its mailbox folder.
    pub folder: String,
    /// The Maildir file name it will have.
    pub name: String,
    /// Its octets.
    pub bytes: Vec<u8>,
}

/// The messages waiting in the journal of the store rooted at `root`,
/// oldest first, without changing anything: for readers in another process
/// (`mailnet inspect`) while a server runs or after it was killed. Some
/// may already be in their Maildir (placed, not yet committed): compare
/// names.
pub fn pending(root: &Path) -> io::Result<Vec<Journalled>> {
    let path = path_for(root);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let Some(done) = read_done(&file, len)? else {
        return Ok(Vec::new());
    };
    let head = Head {
        file: Some(file),
        done,
    };
    let mut out = Vec::new();
    let mut at = done.max(HEADER_LEN);
    while let Some(record) = read_record(&head, at, len)? {
        at = record.next;
        let bytes = read_body(&head, &record)?;
        out.push(Journalled {
            folder: record.folder,
            name: record.name,
            bytes,
        });
    }
    Ok(out)
}

/// Where the journal of the store rooted at `root` lives: inside it, under
/// a name no mailbox folder can have (folders never start with a dot).
pub fn path_for(root: &Path) -> PathBuf {
    root.join(".deliveries")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(Record, Vec<u8>)> {
        let (tail, head) = open(path).unwrap();
        let mut out = Vec::new();
        let mut at = head.done;
        while let Some(r) = read_record(&head, at, tail.end).unwrap() {
            at = r.next;
            let body = read_body(&head, &r).unwrap();
            out.push((r, body));
        }
        out
    }

    #[test]
    fn records_read_back_as_appended_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        let (mut tail, _) = open(&path).unwrap();
        append(
            &path,
            &mut tail,
            "usr1@gmail.com",
            "1,S=5",
            &[b"ab", b"cde"],
        )
        .unwrap();
        append(&path, &mut tail, "bob@x", "2,S=0", &[]).unwrap();
        let got = records(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.folder, "usr1@gmail.com");
        assert_eq!(got[0].0.name, "1,S=5");
        assert_eq!(got[0].1, b"abcde");
        assert_eq!(got[1].1, b"");
        assert_eq!(got[1].0.next, fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn a_record_cut_by_a_crash_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        let (mut tail, _) = open(&path).unwrap();
        append(&path, &mut tail, "a", "1", &[b"whole"]).unwrap();
        let whole = tail.end;
        append(&path, &mut tail, "a", "2", &[b"cut short"]).unwrap();
        // Every length a crash could leave the second record at.
        for cut in whole..tail.end {
            let copy = dir.path().join(format!("copy{cut}"));
            fs::copy(&path, &copy).unwrap();
            File::options()
                .write(true)
                .open(&copy)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let got = records(&copy);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert_eq!(got[0].1, b"whole");
            assert_eq!(fs::metadata(&copy).unwrap().len(), whole, "tail dropped");
        }
    }

    #[test]
    fn half_a_record_left_by_a_failed_cut_goes_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        let (mut tail, _) = open(&path).unwrap();
        append(&path, &mut tail, "a", "1", &[b"one"]).unwrap();
        // A write that failed halfway, and a cut that failed after it.
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"M 100 2 a\nhalf").unwrap();
        tail.file = None;
        append(&path, &mut tail, "a", "3", &[b"three"]).unwrap();
        let got: Vec<Vec<u8>> = records(&path).into_iter().map(|(_, body)| body).collect();
        assert_eq!(got, [b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn done_survives_a_reopen_and_reset_empties_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        let (mut tail, mut head) = open(&path).unwrap();
        append(&path, &mut tail, "a", "1", &[b"one"]).unwrap();
        append(&path, &mut tail, "a", "2", &[b"two"]).unwrap();
        head.ensure_open(&path).unwrap();
        let first = read_record(&head, head.done, tail.end).unwrap().unwrap();
        head.commit(first.next).unwrap();
        let got = records(&path);
        assert_eq!(got.len(), 1, "only the record not yet placed");
        assert_eq!(got[0].1, b"two");
        head.reset(&mut tail).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), HEADER_LEN);
        assert!(records(&path).is_empty());
        // A crash between cutting the file and writing the header.
        append(&path, &mut tail, "a", "3", &[b"three"]).unwrap();
        head.commit(tail.end).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(HEADER_LEN)
            .unwrap();
        let (tail, head) = open(&path).unwrap();
        assert_eq!((head.done, tail.end), (HEADER_LEN, HEADER_LEN));
    }

    #[test]
    fn a_tampered_record_cannot_name_a_folder_outside_the_root() {
        for line in [
            &b"M 1 x ../etc"[..],
            b"M 1 ../x a",
            b"M 1 x .hidden",
            b"M 1 x a/b",
            b"M x 1 a",
            b"X 1 a b",
        ] {
            assert_eq!(parse_line(line), None, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(parse_line(b"M 12 n f"), Some((12, "n", "f")));
    }

    #[test]
    fn pending_reads_what_is_not_placed_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(pending(dir.path()).unwrap().is_empty(), "no journal yet");
        let path = path_for(dir.path());
        let (mut tail, mut head) = open(&path).unwrap();
        append(&path, &mut tail, "a", "1", &[b"one"]).unwrap();
        append(&path, &mut tail, "b", "2", &[b"tw", b"o"]).unwrap();
        head.ensure_open(&path).unwrap();
        let first = read_record(&head, head.done, tail.end).unwrap().unwrap();
        head.commit(first.next).unwrap();
        let before = fs::read(&path).unwrap();
        let got = pending(dir.path()).unwrap();
        assert_eq!(
            got,
            [Journalled {
                folder: "b".into(),
                name: "2".into(),
                bytes: b"two".to_vec()
            }]
        );
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_foreign_file_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path());
        fs::write(&path, vec![b'x'; 100]).unwrap();
        let (tail, _) = open(&path).unwrap();
        assert_eq!(tail.end, HEADER_LEN);
        assert_eq!(fs::read(path.with_extension("corrupt")).unwrap().len(), 100);
    }
}

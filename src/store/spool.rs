//! A message being received, held until it is complete.
//!
//! SMTP hands the message body out in parts. The first [`IN_MEMORY`] octets
//! are kept in memory; a message that grows past that is moved to a spool
//! file and every later part is appended there, so no session ever holds
//! more than [`IN_MEMORY`] octets of a message. Most mail is small: it is
//! written once, straight into its mailbox, with no spool file at all (a
//! file created, written and unlinked per message cost as much as the SMTP
//! dialogue on ext4). The spool file has no name (`O_TMPFILE` where the
//! filesystem has it): it vanishes when the [`Spool`] is dropped or the
//! process dies, whether the message was stored, refused or the client
//! vanished.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Octets of a message kept in memory before it moves to a spool file.
pub const IN_MEMORY: usize = 64 * 1024;

/// One message being received.
#[derive(Debug)]
pub struct Spool {
    /// Where the spool file goes if the message outgrows memory.
    dir: PathBuf,
    /// The message so far, while it fits in [`IN_MEMORY`].
    memory: Vec<u8>,
    /// The spool file, once the message outgrew memory.
    file: Option<File>,
    size: u64,
    /// The first write that failed: later parts are dropped and the delivery
    /// fails with it, so the client gets `451` rather than a cut message.
    failed: Option<io::Error>,
}

impl Spool {
    /// An empty message whose spool file, if it needs one, goes in `dir`
    /// (created if missing). Touches no disk until the message outgrows
    /// memory.
    pub fn create(dir: &Path) -> io::Result<Spool> {
        Ok(Spool {
            dir: dir.to_path_buf(),
            memory: Vec::new(),
            file: None,
            size: 0,
            failed: None,
        })
    }

    /// Appends a part of the message.
    pub fn append(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let written = match &mut self.file {
            None if self.memory.len() + bytes.len() <= IN_MEMORY => {
                self.memory.extend_from_slice(bytes);
                Ok(())
            }
            None => self.spill().and_then(|file| file.write_all(bytes)),
            Some(file) => file.write_all(bytes),
        };
        match written {
            Ok(()) => self.size += bytes.len() as u64,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Moves what is in memory to a new spool file and returns the file.
    fn spill(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let mut file = match tempfile::tempfile_in(&self.dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&self.dir)?;
                    tempfile::tempfile_in(&self.dir)?
                }
                other => other?,
            };
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("just created"))
    }

    /// Octets written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message when it is small enough to have stayed in memory
    /// (`None`: read it with [`Spool::file`]); the first write error if
    /// one happened.
    pub fn in_memory(&mut self) -> io::Result<Option<&[u8]>> {
        self.check()?;
        Ok(self.file.is_none().then_some(&self.memory[..]))
    }

    /// The message as a file, rewound (moved to one first if it was still
    /// in memory): for writers that copy file to file.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.check()?;
        let file = self.spill()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    fn check(&mut self) -> io::Result<()> {
        match self.failed.take() {
            Some(e) => {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
            None => Ok(()),
        }
    }
}

/// Removes spool files a previous run left (it was killed mid-message: no
/// client was ever told the message was accepted, so nothing is lost).
/// Spool files have no name now; this clears what older versions left.
pub fn clean(dir: &Path) -> io::Result<usize> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(spool: &mut Spool) -> Vec<u8> {
        if let Some(bytes) = spool.in_memory().unwrap() {
            return bytes.to_vec();
        }
        let mut back = Vec::new();
        spool.file().unwrap().read_to_end(&mut back).unwrap();
        back
    }

    #[test]
    fn a_small_message_stays_in_memory_and_never_touches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::create(&spool_dir).unwrap();
        spool.append(b"Subject: a\r\n");
        spool.append(b"\r\nbody\r\n");
        assert_eq!(spool.size(), 20);
        assert!(spool.in_memory().unwrap().is_some());
        assert_eq!(read(&mut spool), b"Subject: a\r\n\r\nbody\r\n");
        assert!(!spool_dir.exists(), "no spool file, not even its folder");
        // Asked for a file, it gets one, holding the same bytes.
        let mut back = Vec::new();
        spool.file().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, b"Subject: a\r\n\r\nbody\r\n");
    }

    #[test]
    fn a_large_message_moves_to_an_unnamed_file_that_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::create(&spool_dir).unwrap();
        let line = [b'x'; 1000];
        let mut expected = Vec::new();
        for _ in 0..(IN_MEMORY / 1000 + 10) {
            spool.append(&line);
            expected.extend_from_slice(&line);
        }
        assert_eq!(spool.size(), expected.len() as u64);
        assert!(spool.memory.capacity() == 0, "memory freed once spilled");
        assert!(spool.in_memory().unwrap().is_none());
        assert_eq!(read(&mut spool), expected);
        assert_eq!(read(&mut spool), expected, "rewound on every read");
        // The file is open but has no name, so nothing is left to clean.
        assert_eq!(fs::read_dir(&spool_dir).unwrap().count(), 0);
    }

    #[test]
    fn clean_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("spool.x"), b"half a message").unwrap();
        assert_eq!(clean(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(clean(&dir.path().join("missing")).unwrap(), 0);
    }
}

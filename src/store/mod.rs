//! The mailbox store: one Maildir per user under a server's data directory.
//!
//! SMTP delivery writes here, POP3 reads and deletes here, and the grader and
//! `mailnet inspect` look here. One module owns the layout, so the rules (names
//! that cannot escape their folder, write-then-rename, stable unique ids) hold
//! for every reader and writer.

mod journal;
mod lock;
mod maildir;
mod name;
mod queue;
mod spool;

pub use journal::{pending as journalled, Journalled};
pub use lock::{DataDirLock, LockError};
pub use maildir::{Delivered, MailboxLock, Mailstore, StoreError, StoredMessage};
pub use name::mailbox_folder;
pub use queue::{
    Body, EightBit, Held, MessageFile, MessageReader, Outgoing, Queue, QueueError, QueuedMessage,
};
pub use spool::{clean as clean_spool, Spool};

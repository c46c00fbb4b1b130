//! Mail for other domains: the durable outbound queue.

mod queue;

pub use queue::{Queue, QueuedMessage};

mod cancel;
mod concurrent;
mod fake;
mod harness;
mod no_shared_fs;
mod readers;
mod reconcile;

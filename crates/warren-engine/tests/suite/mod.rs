mod cancel;
mod concurrent;
mod fake;
mod harness;
mod readers;
mod reconcile;

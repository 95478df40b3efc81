mod bad_input;
mod harness;
mod isolation;
mod lifecycle;
mod run;
mod runtime;
mod snapshots;
mod warm;

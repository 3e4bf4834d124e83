//! Integration tests of the Git edge, against real repositories with real commits, over
//! `file://` and over `git://` (a `git daemon` on loopback).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod bad_input;
mod helm;
mod hostile;
mod lines;
mod local;
mod oneshot;
mod props;
mod remote;
mod selection;
mod support;

//! The gateway's use cases: domain rules applied to stored state, one transaction each.
//! Called by the HTTP handlers and the command line alike.

pub mod activity;
pub mod evc;
pub mod gsp;
pub mod provisioning;
pub mod taxpayer;

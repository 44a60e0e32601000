//! gsp-gateway end to end: each test starts its own gateway on its own database and speaks HTTP to it.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly where its setup does"
)]
//! Every test runs on SQLite; its PostgreSQL twin runs with `TEST_POSTGRES_URL` set and `--ignored`.

#[macro_use]
mod helpers;

mod browser;
mod contract;
mod contract_audit;
mod faults;
mod foundation;
mod gateway;
mod gsp;
mod gstn_cert;
mod gstn_dialect;
mod gstn_evc;
mod metrics;
mod taxpayer;

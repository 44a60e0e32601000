//! Repositories: one module a table (or a closely tied pair), sync functions over `&mut DbConn`.

pub mod access;
pub mod audit;
pub mod gsp_clients;
pub mod keys;
pub mod otp;
pub mod refresh_tokens;
pub mod sessions;
pub mod taxpayers;

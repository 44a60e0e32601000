//! The rules of gsp-gateway, as plain Rust.
//!
//! Types here parse rather than validate: a [`Gstin`] or an [`AccessDuration`] that exists is valid.
//! Every rule that depends on time takes `now` as an argument; nothing here reads the clock,
//! touches a database or speaks HTTP.

mod access;
mod duration;
mod error;
mod gstin;
mod otp;
mod password;
pub mod secret;
mod session;
mod username;

pub use access::{AccessStatus, ApiAccess};
pub use duration::AccessDuration;
pub use error::DomainError;
pub use gstin::{Gstin, Pan, StateCode};
pub use otp::{OTP_ATTEMPTS, OTP_LIFETIME_MINUTES, OtpChallenge, OtpCode, OtpVerdict};
pub use password::{PasswordHash, PasswordPolicy};
pub use session::{SessionState, SessionStatus, authorize};
pub use username::Username;

//! Pure policy rules between the case rooms and the channels: no I/O, no clocks, no database.
//! The gateway gathers the facts (who sent what, when, to whom) and asks these functions what
//! to do; every rule is a plain function of its inputs, so every rule is unit-testable.

pub mod channel;
pub mod commands;
pub mod emergency;
pub mod holidays;
pub mod hours;
pub mod inbound;
pub mod media;
pub mod outbound;
pub mod privacy;
pub mod sms;
pub mod templates;

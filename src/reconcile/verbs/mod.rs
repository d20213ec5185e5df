//! The verbs of the reconciler, one file each: what each `plan` action does to the host and to
//! the unit's record.

pub mod hold;
pub mod observe_exit;
pub mod recreate;
pub mod rejoin;
pub mod remove;
pub mod secrets;
pub mod start;
pub mod stop;
pub mod unhealthy;
pub mod wait;

#[cfg(test)]
mod tests;

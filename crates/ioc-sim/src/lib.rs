//! Simulator of a Da Nang day for the IOC event processor: emergency calls,
//! incident reports, and a fleet of ambulances, fire engines, police and
//! rescue units that ping their positions, answer dispatches, drive to the
//! scene, work and come back.
//!
//! The core ([`Simulator`]) is pure and deterministic: it owns no clock and
//! does no I/O. Time goes in through [`Simulator::advance`], the processor's
//! decisions through [`Simulator::observe`], and contract messages come out
//! as [`Outgoing`] JSON payloads. It also plays the dispatcher for incidents
//! the processor only recommends units for (priorities 2-4), after
//! [`SimConfig::dispatch_delay_s`], so a demo city does not leave them open. [`runner::run`] is the thin async adapter
//! that wires it to Kafka in wall-clock time (optionally sped up).
//!
//! Units only ever stand or drive on land zones (never the offshore Hoàng
//! Sa); see the `land` module for how routes are kept on land without a
//! road network.

mod config;
mod land;
mod motion;
pub mod runner;
mod sim;
mod traffic;

pub use crate::config::{SimConfig, SimConfigError, MIN_PING_INTERVAL_S};
pub use crate::sim::{Simulator, PENDING_ASSIGN_MS, SIM_DISPATCHER, SIM_ISSUER};

use ioc_model::InputKind;

/// One message for an input topic: which topic ([`ioc_model::Topics::input`]),
/// its Kafka key, and the JSON bytes of the contract message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: InputKind,
    pub key: String,
    pub payload: Vec<u8>,
}

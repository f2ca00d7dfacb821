//! The ports skulk uses when a plan or an inventory names none.

use std::ops::RangeInclusive;

/// Where rank 0 serves the OpenAI-compatible API by default: the Python
/// Skulk's API port, so clients of a Python Skulk cluster find skulk's.
pub const DEFAULT_API_PORT: u16 = 52415;

/// The SSH port when the inventory gives none (RFC 4253 section 4.1).
pub const DEFAULT_SSH_PORT: u16 = 22;

/// Where ring ports are derived: the IANA dynamic range (RFC 6335), as the
/// Python Skulk's `random_ephemeral_port` picks them.
pub const RING_PORTS: RangeInclusive<u16> = 49152..=65535;

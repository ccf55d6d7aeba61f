//! topotap probes crate.

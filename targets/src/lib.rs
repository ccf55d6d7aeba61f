//! topotap targets crate.

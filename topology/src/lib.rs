//! topotap topology crate.

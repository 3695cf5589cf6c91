//! mizzen's command-line companion (issue 11): `mizzen status`, `mizzen plan`,
//! `mizzen upgrade` and `mizzen rollback`. Everything goes through the public
//! `sailoperator.io/v1` API, so a user can mix it with `kubectl` at any point and the
//! operator stays the only writer of child objects.
//!
//! [`plan`] is pure: from the versions that run and the catalog, the ordered steps of an
//! upgrade and the rule each intermediate state is checked against.

pub mod commands;
pub mod effects;
pub mod mesh;
pub mod output;
pub mod plan;
pub mod render;
pub mod status;
pub mod upgrade;

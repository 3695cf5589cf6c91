//! mizzen's controllers and the machinery they share: server-side apply of rendered objects
//! with an inventory label, pruning of what the render no longer produces, and status.

pub mod apply;

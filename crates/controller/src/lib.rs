//! mizzen-controller

//! mizzen-render

//! mizzen-testcluster

//! client (skeleton; being written)

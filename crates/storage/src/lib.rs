//! storage (skeleton; being written)

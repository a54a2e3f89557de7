//! testkit (skeleton; being written)

//! engine (skeleton; being written)

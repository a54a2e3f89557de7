//! tracker (skeleton; being written)

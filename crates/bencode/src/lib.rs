//! bencode (skeleton; being written)

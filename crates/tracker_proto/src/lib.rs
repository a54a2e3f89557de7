//! tracker_proto (skeleton; being written)

//! Resume records (being written).

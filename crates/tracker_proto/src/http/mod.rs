//! HTTP trackers (BEP 3, BEP 7, BEP 23, BEP 48): both sides.
//!
//! - Client side ([`client`]): [`announce_url`], [`scrape_url`], [`scrape_request_url`],
//!   [`parse_announce_response`], [`parse_scrape_response`].
//! - Server side ([`query`], [`encode`]): [`parse_announce_query`], [`parse_scrape_query`],
//!   [`encode_announce_response`], [`encode_announce_response_dict`], [`encode_failure`],
//!   [`encode_scrape_response`].
//! - [`percent`]: percent-encoding of binary values in query strings.

pub mod client;
pub mod encode;
pub mod percent;
pub mod query;

pub use client::{
    announce_url, parse_announce_response, parse_scrape_response, scrape_request_url, scrape_url,
};
pub use encode::{
    encode_announce_response, encode_announce_response_dict, encode_failure, encode_scrape_response,
};
pub use query::{parse_announce_query, parse_scrape_query, AnnounceQuery};

#[cfg(test)]
mod tests;

//! Tunables of an [`Endpoint`](crate::Endpoint); the defaults follow BEP 29 and libtorrent.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// Largest datagram sent (header, extensions and payload). Payload per packet is this
    /// less the 20-byte header. Fixed: no path-MTU discovery yet.
    pub max_packet_size: usize,
    /// Bytes of received data held for the application (read buffer plus out-of-order
    /// packets); what is free of it is advertised as `wnd_size`.
    pub recv_buffer: usize,
    /// Bytes `write` accepts before the data is acknowledged.
    pub send_buffer: usize,
    /// LEDBAT target queuing delay (BEP 29: 100 ms).
    pub target_delay: Duration,
    /// Upper bound of the congestion window in bytes.
    pub max_cwnd: u64,
    /// Retransmission timeout before the first RTT sample (BEP 29: 1 s).
    pub initial_rto: Duration,
    /// Smallest retransmission timeout (BEP 29: 500 ms).
    pub min_rto: Duration,
    /// Largest retransmission timeout after backoff.
    pub max_rto: Duration,
    /// Consecutive timeouts without a word from the peer before giving up.
    pub max_timeouts: u32,
    /// SYN retransmissions before a connect fails.
    pub syn_retries: u32,
    /// An accepted connection that hears nothing after the SYN closes after this.
    pub syn_recv_timeout: Duration,
    /// Longest an acknowledgement of in-order data waits to be combined with the next one.
    pub delayed_ack: Duration,
    /// Accepted connections still waiting for the initiator's first packet, at most.
    pub max_pending_syns: usize,
    /// Connections per endpoint, at most.
    pub max_connections: usize,
    /// RESETs sent for packets of unknown connections, per second at most.
    pub resets_per_second: u32,
    /// Packets in flight per connection, at most (besides the byte windows).
    pub max_packets_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet_size: 1400,
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            target_delay: Duration::from_millis(100),
            max_cwnd: 4 << 20,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(500),
            max_rto: Duration::from_secs(30),
            max_timeouts: 6,
            syn_retries: 3,
            syn_recv_timeout: Duration::from_secs(10),
            delayed_ack: Duration::from_millis(50),
            max_pending_syns: 64,
            max_connections: 1024,
            resets_per_second: 50,
            max_packets_in_flight: 4096,
        }
    }
}

impl Config {
    /// Payload bytes per full packet.
    pub fn mss(&self) -> usize {
        self.max_packet_size
            .saturating_sub(crate::packet::HEADER_LEN)
            .max(64)
    }
}

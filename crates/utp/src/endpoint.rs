//! Many uTP connections over one UDP socket: demultiplexing by (address, connection id),
//! accepting SYNs within bounds, RESETs for strangers (rate-bounded), timers and the
//! round-robin of outgoing datagrams.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::Config;
use crate::conn::{Conn, ReadOutcome};
use crate::packet::{Packet, PacketType};
use crate::{CloseReason, Counters, Error, Event, Handle};

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub data: Vec<u8>,
}

/// Counters for tests and diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams that were not uTP packets.
    pub garbage: u64,
    /// Packets for no known connection.
    pub unknown: u64,
    /// RESETs sent to strangers.
    pub resets_sent: u64,
    /// SYNs refused (pending or connection limit).
    pub syns_refused: u64,
}

pub struct Endpoint {
    cfg: Config,
    epoch: Instant,
    rng: StdRng,
    next_handle: u64,
    conns: HashMap<Handle, Conn>,
    /// (peer address, our receive connection id) -> connection.
    by_id: HashMap<(SocketAddr, u16), Handle>,
    /// Round-robin order of connections for sending.
    order: VecDeque<Handle>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    reset_tokens: f64,
    reset_refill: Instant,
    stats: Stats,
    /// Counters of connections already forgotten.
    retired: Counters,
}

impl Endpoint {
    /// An endpoint; `seed` feeds its random connection ids and sequence numbers (pass a
    /// random one; tests pass fixed ones).
    pub fn new(cfg: Config, now: Instant, seed: u64) -> Endpoint {
        let tokens = f64::from(cfg.resets_per_second);
        Endpoint {
            cfg,
            epoch: now,
            rng: StdRng::seed_from_u64(seed),
            next_handle: 1,
            conns: HashMap::new(),
            by_id: HashMap::new(),
            order: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            reset_tokens: tokens,
            reset_refill: now,
            stats: Stats::default(),
            retired: Counters::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counters summed over every connection this endpoint had.
    pub fn counters(&self) -> Counters {
        let mut total = self.retired;
        for c in self.conns.values() {
            total.add(&c.counters);
        }
        total
    }

    /// Bytes buffered over all connections (send queues, packets in flight, receive and
    /// reorder buffers).
    pub fn buffered_bytes(&self) -> usize {
        self.conns.values().map(|c| c.buffered_bytes()).sum()
    }

    /// Live connections (closed ones are forgotten once their last packet is out).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn now_us(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    fn new_handle(&mut self) -> Handle {
        let h = Handle(self.next_handle);
        self.next_handle += 1;
        h
    }

    /// Opens a connection to `addr`; `Event::Connected` or `Event::Closed` follows.
    pub fn connect(&mut self, now: Instant, addr: SocketAddr) -> Result<Handle, Error> {
        if self.conns.len() >= self.cfg.max_connections {
            return Err(Error::TooManyConnections);
        }
        // Our receive id r (and r + 1 for sending) must be free towards this address, also
        // as the receive id an accepted SYN from there would take.
        let recv_id = loop {
            let r: u16 = self.rng.random();
            if !self.by_id.contains_key(&(addr, r)) {
                break r;
            }
        };
        let seq: u16 = self.rng.random();
        let h = self.new_handle();
        let conn = Conn::connect(h, addr, recv_id, seq, &self.cfg, now);
        self.by_id.insert((addr, recv_id), h);
        self.conns.insert(h, conn);
        self.order.push_back(h);
        Ok(h)
    }

    /// Queues bytes on a connection; returns how many were taken (0 when the send buffer
    /// is full: `Event::Writable` follows when room frees). After `shutdown`: an error.
    pub fn write(&mut self, h: Handle, data: &[u8]) -> Result<usize, Error> {
        let c = self.conns.get_mut(&h).ok_or(Error::UnknownConnection)?;
        if let Some(r) = c.close_reason {
            return Err(Error::Closed(r));
        }
        if c.is_shut_down() {
            return Err(Error::ShutDown);
        }
        Ok(c.write(data))
    }

    /// Reads received bytes: `Ok(0)` at the end of the peer's stream (its FIN),
    /// `Err(WouldBlock)` when nothing is there yet (`Event::Readable` follows).
    pub fn read(&mut self, h: Handle, buf: &mut [u8]) -> Result<usize, Error> {
        let c = self.conns.get_mut(&h).ok_or(Error::UnknownConnection)?;
        match c.read(buf, &mut self.events) {
            ReadOutcome::Data(n) => Ok(n),
            ReadOutcome::Eof => Ok(0),
            ReadOutcome::WouldBlock => match c.close_reason {
                Some(CloseReason::Finished) => Ok(0),
                Some(r) => Err(Error::Closed(r)),
                None => Err(Error::WouldBlock),
            },
        }
    }

    /// Bytes ready to read on a connection.
    pub fn readable_bytes(&self, h: Handle) -> usize {
        self.conns.get(&h).map_or(0, |c| c.readable_bytes())
    }

    /// Ends our direction (a FIN after the queued data); reading goes on until the peer's
    /// FIN. The connection closes (`Event::Closed(Finished)`) when both FINs are through.
    pub fn shutdown(&mut self, h: Handle) -> Result<(), Error> {
        let c = self.conns.get_mut(&h).ok_or(Error::UnknownConnection)?;
        c.shutdown();
        Ok(())
    }

    /// Drops a connection at once, with a RESET to the peer.
    pub fn abort(&mut self, h: Handle) {
        if let Some(c) = self.conns.get_mut(&h) {
            c.abort(&mut self.events);
        }
    }

    /// Congestion window and smoothed RTT of a connection (diagnostics).
    pub fn congestion(&self, h: Handle) -> Option<(u64, Option<Duration>)> {
        self.conns.get(&h).map(|c| (c.cwnd(), c.rtt()))
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// One received datagram. Garbage is counted and ignored; it never panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok((pkt, at)) = Packet::decode(data) else {
            self.stats.garbage += 1;
            return;
        };
        let payload = &data[at..];
        let now_us = self.now_us(now);
        if pkt.ty == PacketType::Syn {
            self.handle_syn(now, now_us, from, &pkt);
            return;
        }
        let mut h = self.by_id.get(&(from, pkt.connection_id)).copied();
        if h.is_none() && pkt.ty == PacketType::Reset {
            // A RESET may carry our send id (answering a packet we sent).
            for cand in [
                pkt.connection_id.wrapping_sub(1),
                pkt.connection_id.wrapping_add(1),
            ] {
                if let Some(&c) = self.by_id.get(&(from, cand)) {
                    if self
                        .conns
                        .get(&c)
                        .is_some_and(|c| c.send_id == pkt.connection_id)
                    {
                        h = Some(c);
                    }
                }
            }
        }
        match h.and_then(|h| self.conns.get_mut(&h)) {
            Some(c) => c.handle_packet(now, now_us, &pkt, payload, &mut self.events),
            None => {
                self.stats.unknown += 1;
                if matches!(pkt.ty, PacketType::Data | PacketType::Fin) {
                    self.reset_stranger(now, now_us, from, &pkt);
                }
            }
        }
    }

    fn handle_syn(&mut self, now: Instant, now_us: u32, from: SocketAddr, syn: &Packet) {
        let recv_id = syn.connection_id.wrapping_add(1);
        if let Some(&h) = self.by_id.get(&(from, recv_id)) {
            if let Some(c) = self.conns.get_mut(&h) {
                c.handle_packet(now, now_us, syn, &[], &mut self.events);
            }
            return;
        }
        let pending = self.conns.values().filter(|c| c.is_pending_syn()).count();
        if pending >= self.cfg.max_pending_syns || self.conns.len() >= self.cfg.max_connections {
            self.stats.syns_refused += 1;
            self.reset_stranger(now, now_us, from, syn);
            return;
        }
        let seq: u16 = self.rng.random();
        let h = self.new_handle();
        let conn = Conn::accept(h, from, syn, seq, &self.cfg, now, now_us);
        self.by_id.insert((from, recv_id), h);
        self.conns.insert(h, conn);
        self.order.push_back(h);
        self.events.push_back(Event::Incoming {
            conn: h,
            addr: from,
        });
    }

    fn reset_stranger(&mut self, now: Instant, now_us: u32, to: SocketAddr, pkt: &Packet) {
        let elapsed = now
            .saturating_duration_since(self.reset_refill)
            .as_secs_f64();
        self.reset_refill = now;
        let max = f64::from(self.cfg.resets_per_second);
        self.reset_tokens = (self.reset_tokens + elapsed * max).min(max);
        if self.reset_tokens < 1.0 {
            return;
        }
        self.reset_tokens -= 1.0;
        self.stats.resets_sent += 1;
        let reset = Packet {
            ty: PacketType::Reset,
            connection_id: pkt.connection_id,
            timestamp_us: now_us,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: self.rng.random(),
            ack_nr: pkt.seq_nr,
            sack: None,
        };
        let mut data = Vec::with_capacity(20);
        reset.encode(&mut data);
        // Endpoint-level packets wait in a bounded queue; a flood drops the excess.
        if self.out.len() < 256 {
            self.out.push_back(Transmit { dest: to, data });
        }
    }

    /// The next datagram to send, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.out.pop_front() {
            return Some(t);
        }
        let now_us = self.now_us(now);
        let mut buf = Vec::new();
        for _ in 0..self.order.len() {
            let h = self.order.pop_front()?;
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            let sent = c.poll_transmit(now, now_us, &mut buf);
            let dest = c.addr;
            if c.is_closed() && c.drained(now) {
                let key = (c.addr, c.recv_id);
                self.retired.add(&c.counters);
                self.conns.remove(&h);
                self.by_id.remove(&key);
            } else {
                self.order.push_back(h);
            }
            if sent {
                return Some(Transmit { dest, data: buf });
            }
        }
        None
    }

    /// When `handle_timeout` should next be called (`None`: no timer, or something to send
    /// now, which `poll_transmit` gives).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.next_timeout()).min()
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            if c.next_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now, &mut self.events);
            }
        }
        // Forget closed connections whose lingering ended.
        let done: Vec<Handle> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_closed() && c.drained(now))
            .map(|(h, _)| *h)
            .collect();
        for h in done {
            if let Some(c) = self.conns.remove(&h) {
                self.retired.add(&c.counters);
                self.by_id.remove(&(c.addr, c.recv_id));
            }
        }
    }
}

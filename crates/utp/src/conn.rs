//! One uTP connection: the state machine, the send side (packets in flight, retransmission,
//! RTT/RTO, LEDBAT) and the receive side (reorder buffer, selective ACKs, delayed ACKs,
//! FIN). Driven by the [`Endpoint`](crate::Endpoint), which owns the socket side.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::ledbat::Ledbat;
use crate::packet::{Packet, PacketType, MAX_SACK_BYTES};
use crate::seq;
use crate::{CloseReason, Counters, Event, Handle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// We sent a SYN and wait for the answer.
    SynSent,
    /// We answered a SYN and have not heard from the initiator since.
    SynRecv,
    Connected,
    /// Done; the endpoint drops it once its last packets are out.
    Closed,
}

#[derive(Debug)]
struct Sent {
    seq: u16,
    ty: PacketType,
    payload: Bytes,
    sent_at: Option<Instant>,
    transmissions: u32,
    /// Reported received by a selective ACK.
    sacked: bool,
    /// Counted in `bytes_in_flight`.
    in_flight: bool,
    /// Waits to be sent (again).
    need_send: bool,
    /// Already retransmitted by fast retransmit (once per packet).
    fast_resent: bool,
}

/// What `read` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    Data(usize),
    Eof,
    WouldBlock,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) handle: Handle,
    pub(crate) addr: SocketAddr,
    pub(crate) state: State,
    pub(crate) recv_id: u16,
    pub(crate) send_id: u16,
    /// Sequence number of the peer's SYN (accepting side), to recognise a repeated SYN.
    pub(crate) peer_syn_seq: Option<u16>,
    mss: usize,
    recv_cap: usize,
    send_cap: usize,
    max_in_flight_pkts: usize,
    min_rto: Duration,
    max_rto: Duration,
    max_timeouts: u32,
    syn_retries: u32,
    delayed_ack: Duration,

    // Send side.
    seq_nr: u16,
    send_buf: BytesMut,
    inflight: VecDeque<Sent>,
    bytes_in_flight: u64,
    /// Payload bytes in `inflight` (sent or not, acknowledged selectively or not).
    inflight_payload: usize,
    peer_wnd: u64,
    cc: Ledbat,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    rto_at: Option<Instant>,
    timeouts: u32,
    dup_acks: u32,
    close_requested: bool,
    fin_seq: Option<u16>,
    fin_acked: bool,
    probe_at: Option<Instant>,
    probe_now: bool,
    writable_wanted: bool,
    deadline: Option<Instant>,

    // Receive side.
    ack_nr: u16,
    read_buf: BytesMut,
    /// `reorder[i]` holds the packet with sequence number `ack_nr + 2 + i`.
    reorder: VecDeque<Option<(PacketType, Bytes)>>,
    reorder_bytes: usize,
    eof_seq: Option<u16>,
    eof_reached: bool,
    readable_signalled: bool,
    ack_now: bool,
    ack_at: Option<Instant>,
    unacked_pkts: u32,
    reply_micro: u32,
    last_adv_wnd: u64,
    send_reset: bool,
    syn_ack_pending: bool,
    /// Our first sequence number (the accepting side's answer to a SYN carries it).
    isn: u16,
    /// A finished connection stays until then to ACK a repeated FIN (its ACK was lost).
    linger_until: Option<Instant>,

    pub(crate) close_reason: Option<CloseReason>,
    pub(crate) counters: Counters,
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        handle: Handle,
        addr: SocketAddr,
        state: State,
        recv_id: u16,
        send_id: u16,
        seq_nr: u16,
        cfg: &Config,
        now: Instant,
    ) -> Conn {
        let mss = cfg.mss();
        Conn {
            handle,
            addr,
            state,
            recv_id,
            send_id,
            peer_syn_seq: None,
            mss,
            recv_cap: cfg.recv_buffer.max(mss),
            send_cap: cfg.send_buffer.max(1),
            max_in_flight_pkts: cfg.max_packets_in_flight.clamp(1, 16384),
            min_rto: cfg.min_rto,
            max_rto: cfg.max_rto.max(cfg.min_rto),
            max_timeouts: cfg.max_timeouts,
            syn_retries: cfg.syn_retries,
            delayed_ack: cfg.delayed_ack,
            seq_nr,
            send_buf: BytesMut::new(),
            inflight: VecDeque::new(),
            bytes_in_flight: 0,
            inflight_payload: 0,
            peer_wnd: mss as u64,
            cc: Ledbat::new(mss as u32, cfg.target_delay, cfg.max_cwnd),
            srtt: None,
            rttvar: Duration::ZERO,
            rto: cfg
                .initial_rto
                .clamp(cfg.min_rto, cfg.max_rto.max(cfg.min_rto)),
            rto_at: None,
            timeouts: 0,
            dup_acks: 0,
            close_requested: false,
            fin_seq: None,
            fin_acked: false,
            probe_at: None,
            probe_now: false,
            writable_wanted: false,
            deadline: if state == State::SynRecv {
                Some(now + cfg.syn_recv_timeout)
            } else {
                None
            },
            ack_nr: 0,
            read_buf: BytesMut::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            eof_seq: None,
            eof_reached: false,
            readable_signalled: false,
            ack_now: false,
            ack_at: None,
            unacked_pkts: 0,
            reply_micro: 0,
            last_adv_wnd: 0,
            send_reset: false,
            syn_ack_pending: false,
            isn: seq_nr,
            linger_until: None,
            close_reason: None,
            counters: Counters::default(),
        }
    }

    /// The dialling side: a SYN waits in the send queue.
    pub(crate) fn connect(
        handle: Handle,
        addr: SocketAddr,
        recv_id: u16,
        seq_nr: u16,
        cfg: &Config,
        now: Instant,
    ) -> Conn {
        let mut c = Conn::new(
            handle,
            addr,
            State::SynSent,
            recv_id,
            recv_id.wrapping_add(1),
            seq_nr,
            cfg,
            now,
        );
        c.push_packet(PacketType::Syn, Bytes::new());
        c
    }

    /// The accepting side of a SYN: answers with a STATE at once.
    pub(crate) fn accept(
        handle: Handle,
        addr: SocketAddr,
        syn: &Packet,
        seq_nr: u16,
        cfg: &Config,
        now: Instant,
        now_us: u32,
    ) -> Conn {
        let send_id = syn.connection_id;
        let mut c = Conn::new(
            handle,
            addr,
            State::SynRecv,
            send_id.wrapping_add(1),
            send_id,
            seq_nr,
            cfg,
            now,
        );
        c.peer_syn_seq = Some(syn.seq_nr);
        c.ack_nr = syn.seq_nr;
        c.peer_wnd = u64::from(syn.wnd_size);
        c.reply_micro = now_us.wrapping_sub(syn.timestamp_us);
        c.syn_ack_pending = true;
        c
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Nothing left to send and no lingering: the endpoint may forget a closed connection.
    pub(crate) fn drained(&self, now: Instant) -> bool {
        !self.ack_now
            && !self.send_reset
            && !self.syn_ack_pending
            && match self.linger_until {
                Some(t) => t <= now,
                // A finished connection starts lingering at its next poll_transmit.
                None => self.close_reason != Some(CloseReason::Finished),
            }
    }

    pub(crate) fn is_pending_syn(&self) -> bool {
        self.state == State::SynRecv
    }

    fn close(&mut self, reason: CloseReason, events: &mut VecDeque<Event>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.close_reason = Some(reason);
        // Nothing more goes out (check_done keeps the last ACK of a finished connection).
        self.ack_now = false;
        self.syn_ack_pending = false;
        self.rto_at = None;
        self.ack_at = None;
        self.probe_at = None;
        self.deadline = None;
        self.inflight.clear();
        self.bytes_in_flight = 0;
        self.inflight_payload = 0;
        self.send_buf.clear();
        self.reorder.clear();
        self.reorder_bytes = 0;
        events.push_back(Event::Closed {
            conn: self.handle,
            reason,
        });
    }

    // ----- application side -----

    /// Queues bytes to send; returns how many fit in the send buffer.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        if self.close_requested || self.state == State::Closed {
            return 0;
        }
        let queued = self.send_buf.len() + self.inflight_payload;
        let n = self.send_cap.saturating_sub(queued).min(data.len());
        self.send_buf.extend_from_slice(&data[..n]);
        if n < data.len() {
            self.writable_wanted = true;
        }
        n
    }

    pub(crate) fn read(&mut self, out: &mut [u8], events: &mut VecDeque<Event>) -> ReadOutcome {
        if self.read_buf.is_empty() {
            self.readable_signalled = false;
            if self.eof_reached {
                self.check_done(events);
                return ReadOutcome::Eof;
            }
            return ReadOutcome::WouldBlock;
        }
        let n = out.len().min(self.read_buf.len());
        out[..n].copy_from_slice(&self.read_buf[..n]);
        self.read_buf.advance(n);
        if self.read_buf.is_empty() {
            self.readable_signalled = false;
        }
        // Tell a peer that was held back by a small window that it opened again.
        if self.last_adv_wnd < self.mss as u64
            && self.adv_wnd() >= self.mss as u64
            && self.state != State::Closed
        {
            self.ack_now = true;
        }
        ReadOutcome::Data(n)
    }

    /// Finish our direction once the send buffer is out (FIN); reading goes on.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.close_requested
    }

    pub(crate) fn shutdown(&mut self) {
        self.close_requested = true;
    }

    /// Abort: a RESET to the peer, closed at once.
    pub(crate) fn abort(&mut self, events: &mut VecDeque<Event>) {
        if self.state != State::Closed && self.state != State::SynSent {
            self.send_reset = true;
        }
        self.close(CloseReason::Aborted, events);
    }

    /// Bytes held for this connection (send and receive sides), for memory bounds.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.send_buf.len() + self.inflight_payload + self.read_buf.len() + self.reorder_bytes
    }

    pub(crate) fn readable_bytes(&self) -> usize {
        self.read_buf.len()
    }

    pub(crate) fn cwnd(&self) -> u64 {
        self.cc.cwnd()
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.srtt
    }

    // ----- helpers -----

    fn adv_wnd(&self) -> u64 {
        self.recv_cap
            .saturating_sub(self.read_buf.len() + self.reorder_bytes) as u64
    }

    fn push_packet(&mut self, ty: PacketType, payload: Bytes) {
        let seq = self.seq_nr;
        self.seq_nr = self.seq_nr.wrapping_add(1);
        self.inflight_payload += payload.len();
        self.inflight.push_back(Sent {
            seq,
            ty,
            payload,
            sent_at: None,
            transmissions: 0,
            sacked: false,
            in_flight: false,
            need_send: true,
            fast_resent: false,
        });
        if ty == PacketType::Fin {
            self.fin_seq = Some(seq);
        }
    }

    fn sack_mask(&self) -> Option<Vec<u8>> {
        let last = self
            .reorder
            .iter()
            .take(MAX_SACK_BYTES * 8)
            .rposition(|p| p.is_some())?;
        let bytes = (last / 8 + 1).div_ceil(4) * 4;
        let mut mask = vec![0u8; bytes];
        for (i, p) in self.reorder.iter().take(bytes * 8).enumerate() {
            if p.is_some() {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        Some(mask)
    }

    fn header(&self, ty: PacketType, seq_nr: u16, now_us: u32) -> Packet {
        Packet {
            ty,
            connection_id: if ty == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: now_us,
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.adv_wnd().min(u64::from(u32::MAX)) as u32,
            seq_nr,
            ack_nr: self.ack_nr,
            sack: None,
        }
    }

    fn update_rtt(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
        self.rto =
            (self.srtt.unwrap_or(sample) + self.rttvar * 4).clamp(self.min_rto, self.max_rto);
    }

    fn unsent_window_ok(&self, len: usize) -> bool {
        let wnd = self.cc.cwnd().min(self.peer_wnd);
        self.bytes_in_flight + len as u64 <= wnd || (self.bytes_in_flight == 0 && self.peer_wnd > 0)
    }

    fn arm_rto(&mut self, now: Instant) {
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto);
        }
    }

    // ----- transmit -----

    /// The next datagram this connection wants to send, appended to `out`.
    pub(crate) fn poll_transmit(&mut self, now: Instant, now_us: u32, out: &mut Vec<u8>) -> bool {
        if self.send_reset {
            self.send_reset = false;
            let mut h = self.header(PacketType::Reset, self.seq_nr, now_us);
            h.wnd_size = 0;
            h.encode(out);
            return true;
        }
        if self.state == State::Closed {
            if self.close_reason == Some(CloseReason::Finished) && self.linger_until.is_none() {
                self.linger_until = Some(
                    now + (self.rto * 3).clamp(Duration::from_secs(1), Duration::from_secs(10)),
                );
            }
            // Only the last ACK of a finished connection (for the peer's FIN) goes out.
            if std::mem::take(&mut self.ack_now) {
                self.header(PacketType::State, self.seq_nr, now_us)
                    .encode(out);
                return true;
            }
            return false;
        }
        if self.state == State::SynRecv && std::mem::take(&mut self.syn_ack_pending) {
            // The answer to the SYN goes before anything else: its seq_nr tells the
            // initiator where our stream starts (also when it is repeated after our
            // first packets went out).
            let h = self.header(PacketType::State, self.isn, now_us);
            self.last_adv_wnd = u64::from(h.wnd_size);
            h.encode(out);
            return true;
        }
        if self.send_one(now, now_us, out) {
            return true;
        }
        let ack_due = self.ack_now || self.ack_at.is_some_and(|t| t <= now);
        if ack_due && self.state != State::SynSent {
            self.ack_now = false;
            self.ack_at = None;
            self.unacked_pkts = 0;
            let mut h = self.header(PacketType::State, self.seq_nr, now_us);
            h.sack = self.sack_mask();
            self.last_adv_wnd = u64::from(h.wnd_size);
            h.encode(out);
            return true;
        }
        false
    }

    /// A packet from the send queue: a retransmission first, then new data, then FIN.
    fn send_one(&mut self, now: Instant, now_us: u32, out: &mut Vec<u8>) -> bool {
        let probe = std::mem::take(&mut self.probe_now);
        // Retransmissions (and the first sending of SYN/FIN), oldest first.
        let idx = self.inflight.iter().position(|p| p.need_send && !p.sacked);
        let idx = match idx {
            Some(i) => Some(i),
            None => {
                if self.state == State::SynSent || self.send_buf.is_empty() {
                    if self.close_requested
                        && self.send_buf.is_empty()
                        && self.fin_seq.is_none()
                        && self.state != State::SynSent
                    {
                        self.push_packet(PacketType::Fin, Bytes::new());
                        Some(self.inflight.len() - 1)
                    } else {
                        None
                    }
                } else if self.inflight.len() < self.max_in_flight_pkts {
                    let mut len = self.mss.min(self.send_buf.len());
                    if self.bytes_in_flight == 0
                        && self.peer_wnd > 0
                        && (self.peer_wnd as usize) < len
                    {
                        // A small window and nothing in flight: a packet that fits it.
                        len = self.peer_wnd as usize;
                    }
                    if self.unsent_window_ok(len) || probe {
                        let payload = self.send_buf.split_to(len).freeze();
                        self.push_packet(PacketType::Data, payload);
                        Some(self.inflight.len() - 1)
                    } else {
                        if self.peer_wnd == 0
                            && self.bytes_in_flight == 0
                            && self.probe_at.is_none()
                        {
                            self.probe_at = Some(now + self.rto);
                        }
                        None
                    }
                } else {
                    None
                }
            }
        };
        let Some(i) = idx else { return false };
        let len = self.inflight[i].payload.len();
        if self.inflight[i].ty == PacketType::Data && !self.unsent_window_ok(len) && !probe {
            if self.peer_wnd == 0 && self.bytes_in_flight == 0 && self.probe_at.is_none() {
                self.probe_at = Some(now + self.rto);
            }
            return false;
        }
        let mut h = self.header(self.inflight[i].ty, self.inflight[i].seq, now_us);
        let sack = self.sack_mask();
        if sack.as_ref().is_some_and(|s| {
            h.encoded_len() + 2 + s.len() + len <= self.mss + crate::packet::HEADER_LEN
        }) {
            h.sack = sack;
        }
        self.last_adv_wnd = u64::from(h.wnd_size);
        h.encode(out);
        let p = &mut self.inflight[i];
        out.extend_from_slice(&p.payload);
        p.need_send = false;
        p.transmissions += 1;
        self.counters.packets_sent += 1;
        if p.transmissions > 1 {
            self.counters.retransmits += 1;
        }
        if probe {
            self.counters.zero_window_probes += 1;
        }
        p.sent_at = Some(now);
        if !p.in_flight {
            p.in_flight = true;
            self.bytes_in_flight += p.payload.len() as u64;
        }
        // Data carries our ACK: no separate STATE needed for what it acknowledges.
        if p.ty != PacketType::Syn {
            self.ack_now = false;
            self.ack_at = None;
            self.unacked_pkts = 0;
        }
        self.probe_at = None;
        self.arm_rto(now);
        true
    }

    // ----- timers -----

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        if self.ack_now || self.send_reset || self.syn_ack_pending {
            // Due at once; the endpoint's poll_transmit picks it up.
            return None;
        }
        if self.state == State::Closed {
            return self.linger_until;
        }
        [self.rto_at, self.ack_at, self.probe_at, self.deadline]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, events: &mut VecDeque<Event>) {
        if self.state == State::Closed {
            return;
        }
        if self.deadline.is_some_and(|t| t <= now) {
            self.close(CloseReason::TimedOut, events);
            return;
        }
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
            self.ack_now = true;
        }
        if self.probe_at.is_some_and(|t| t <= now) {
            self.probe_at = None;
            self.probe_now = true;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.rto_at = None;
            self.timeouts += 1;
            self.counters.timeouts += 1;
            let limit = if self.state == State::SynSent {
                self.syn_retries
            } else {
                self.max_timeouts
            };
            if self.timeouts > limit {
                let reason = if self.state == State::SynSent {
                    CloseReason::ConnectTimedOut
                } else {
                    CloseReason::TimedOut
                };
                self.close(reason, events);
                return;
            }
            let mut any = false;
            for p in self.inflight.iter_mut() {
                if p.transmissions > 0 && !p.sacked {
                    any = true;
                    p.need_send = true;
                    if p.in_flight {
                        p.in_flight = false;
                        self.bytes_in_flight -= p.payload.len() as u64;
                    }
                }
            }
            self.rto = (self.rto * 2).min(self.max_rto);
            if any {
                self.cc.on_timeout(now);
            }
        }
    }

    // ----- receive -----

    /// A packet for this connection (already matched by address and connection id).
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        now_us: u32,
        pkt: &Packet,
        payload: &[u8],
        events: &mut VecDeque<Event>,
    ) {
        if self.state == State::Closed {
            // Lingering after both FINs: the peer repeats its FIN when our ACK was lost.
            if self.close_reason == Some(CloseReason::Finished) && pkt.ty == PacketType::Fin {
                self.ack_now = true;
            }
            return;
        }
        match pkt.ty {
            PacketType::Reset => {
                let reason = if self.state == State::SynSent {
                    CloseReason::Refused
                } else {
                    CloseReason::Reset
                };
                self.close(reason, events);
                return;
            }
            PacketType::Syn => {
                // A repeated SYN (our STATE was lost): answer again.
                if self.peer_syn_seq == Some(pkt.seq_nr) && self.state == State::SynRecv {
                    self.syn_ack_pending = true;
                }
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            // Only the STATE answering our SYN opens the connection: its seq_nr is where
            // the peer's stream starts (a DATA packet's might be a later one).
            let syn_seq = self.seq_nr.wrapping_sub(1);
            if pkt.ack_nr != syn_seq || pkt.ty != PacketType::State {
                return;
            }
            self.ack_nr = pkt.seq_nr.wrapping_sub(1);
            self.state = State::Connected;
            self.timeouts = 0;
            events.push_back(Event::Connected { conn: self.handle });
        } else {
            // Sanity of the ACK field: it may not acknowledge what we never sent.
            let last_sent = self.seq_nr.wrapping_sub(1);
            if seq::lt(last_sent, pkt.ack_nr) {
                return;
            }
            // Data from far behind (more than 4096 packets): a replay or garbage.
            let dist = pkt.seq_nr.wrapping_sub(self.ack_nr);
            if pkt.ty != PacketType::State && dist > 0x8000 && dist < 0xF000 {
                return;
            }
            if self.state == State::SynRecv {
                self.state = State::Connected;
                self.deadline = None;
            }
        }
        self.reply_micro = now_us.wrapping_sub(pkt.timestamp_us);
        self.timeouts = 0;
        self.peer_wnd = u64::from(pkt.wnd_size);
        if self.peer_wnd > 0 {
            self.probe_at = None;
        }
        self.process_ack(now, pkt, events);
        if self.state == State::Closed {
            return;
        }
        match pkt.ty {
            PacketType::Data | PacketType::Fin => self.process_data(now, pkt, payload, events),
            _ => {}
        }
        self.check_done(events);
    }

    fn process_ack(&mut self, now: Instant, pkt: &Packet, events: &mut VecDeque<Event>) {
        let base = self.seq_nr.wrapping_sub(self.inflight.len() as u16);
        let before = base.wrapping_sub(1);
        let flight_before = self.bytes_in_flight;
        let mut acked_bytes = 0u64;
        let mut loss = false;
        let mut newest_rtt: Option<Duration> = None;
        let acked = if seq::lt(pkt.ack_nr, before) {
            0
        } else {
            pkt.ack_nr.wrapping_sub(before) as usize
        };
        let acked = acked.min(self.inflight.len());
        for _ in 0..acked {
            let p = self.inflight.pop_front().expect("counted");
            self.inflight_payload -= p.payload.len();
            if p.in_flight {
                self.bytes_in_flight -= p.payload.len() as u64;
            }
            if !p.sacked {
                acked_bytes += p.payload.len() as u64;
            }
            if p.transmissions == 1 {
                if let Some(at) = p.sent_at {
                    newest_rtt = Some(now.saturating_duration_since(at));
                }
            }
            if p.ty == PacketType::Fin {
                self.fin_acked = true;
            }
        }
        if acked > 0 {
            self.dup_acks = 0;
            self.timeouts = 0;
        } else if pkt.ty == PacketType::State
            && pkt.ack_nr == before
            && self.inflight.front().is_some_and(|p| p.transmissions > 0)
        {
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                let p = self.inflight.front_mut().expect("checked");
                if !p.sacked && !p.need_send {
                    p.need_send = true;
                    p.fast_resent = true;
                    if p.in_flight {
                        p.in_flight = false;
                        self.bytes_in_flight -= p.payload.len() as u64;
                    }
                    loss = true;
                    self.counters.fast_retransmits += 1;
                }
            }
        }
        // Selective ACK: mark, then resend holes with three or more packets received after.
        if pkt.sack.is_some() && !self.inflight.is_empty() {
            let new_base = self.seq_nr.wrapping_sub(self.inflight.len() as u16);
            let mut highest = None;
            for s in pkt.sacked() {
                let i = s.wrapping_sub(new_base) as usize;
                if i >= self.inflight.len() {
                    continue;
                }
                let p = &mut self.inflight[i];
                if p.transmissions == 0 {
                    continue; // cannot be received before it was sent
                }
                if !p.sacked {
                    p.sacked = true;
                    p.need_send = false;
                    acked_bytes += p.payload.len() as u64;
                    if p.in_flight {
                        p.in_flight = false;
                        self.bytes_in_flight -= p.payload.len() as u64;
                    }
                    if p.transmissions == 1 {
                        if let Some(at) = p.sent_at {
                            newest_rtt = Some(now.saturating_duration_since(at));
                        }
                    }
                }
                highest = Some(highest.map_or(i, |h: usize| h.max(i)));
            }
            if let Some(h) = highest {
                let mut after = 0;
                for i in (0..h).rev() {
                    let p = &mut self.inflight[i];
                    if p.sacked {
                        after += 1;
                    } else if after >= 3 && !p.fast_resent && !p.need_send && p.transmissions > 0 {
                        p.need_send = true;
                        p.fast_resent = true;
                        if p.in_flight {
                            p.in_flight = false;
                            self.bytes_in_flight -= p.payload.len() as u64;
                        }
                        loss = true;
                        self.counters.sack_retransmits += 1;
                    }
                }
            }
        }
        if let Some(rtt) = newest_rtt {
            self.update_rtt(rtt);
        }
        if acked_bytes > 0 {
            self.cc.on_delay_sample(now, pkt.timestamp_diff_us);
            self.cc.on_ack(acked_bytes, flight_before);
        }
        if loss {
            self.cc.on_loss(now, self.srtt.unwrap_or(self.rto));
        }
        if acked > 0 {
            // Fresh timer for what is still out; the backoff ends with progress.
            if let Some(srtt) = self.srtt {
                self.rto = (srtt + self.rttvar * 4).clamp(self.min_rto, self.max_rto);
            }
            self.rto_at = None;
            if self
                .inflight
                .iter()
                .any(|p| p.transmissions > 0 && !p.sacked)
            {
                self.arm_rto(now);
            }
            if self.writable_wanted {
                self.writable_wanted = false;
                events.push_back(Event::Writable { conn: self.handle });
            }
        }
    }

    fn deliver(&mut self, ty: PacketType, payload: &[u8]) {
        if ty == PacketType::Fin {
            self.eof_reached = true;
        } else {
            self.read_buf.extend_from_slice(payload);
        }
    }

    fn process_data(
        &mut self,
        now: Instant,
        pkt: &Packet,
        payload: &[u8],
        events: &mut VecDeque<Event>,
    ) {
        let seq_nr = pkt.seq_nr;
        if pkt.ty == PacketType::Fin && self.eof_seq.is_none() && seq::lt(self.ack_nr, seq_nr) {
            self.eof_seq = Some(seq_nr);
        }
        if let Some(eof) = self.eof_seq {
            if seq::lt(eof, seq_nr) {
                return; // past the end of the stream
            }
        }
        let expected = self.ack_nr.wrapping_add(1);
        if seq_nr == expected {
            if self.read_buf.len() + payload.len() > self.recv_cap {
                // No room (a peer ignoring our window, or a probe): drop, tell our window.
                self.ack_now = true;
                self.counters.dropped_no_room += 1;
                return;
            }
            self.ack_nr = seq_nr;
            self.deliver(pkt.ty, payload);
            while let Some(Some((ty, data))) = self.reorder.pop_front() {
                self.ack_nr = self.ack_nr.wrapping_add(1);
                self.reorder_bytes -= data.len();
                self.deliver(ty, &data);
            }
            self.unacked_pkts += 1;
            if self.unacked_pkts >= 2 || !self.reorder.is_empty() || self.eof_reached {
                self.ack_now = true;
            } else if self.ack_at.is_none() {
                self.ack_at = Some(now + self.delayed_ack);
            }
        } else if seq::lt(expected, seq_nr) {
            // Out of order: keep it if it fits the window we could advertise.
            let i = seq_nr.wrapping_sub(expected) as usize - 1;
            let max_slots = (self.recv_cap / self.mss.max(1)).clamp(8, 4096);
            if i < max_slots
                && self.read_buf.len() + self.reorder_bytes + payload.len() <= self.recv_cap
            {
                if self.reorder.len() <= i {
                    self.reorder.resize(i + 1, None);
                }
                if self.reorder[i].is_none() {
                    self.counters.out_of_order += 1;
                    self.reorder_bytes += payload.len();
                    self.reorder[i] = Some((pkt.ty, Bytes::copy_from_slice(payload)));
                }
            }
            self.ack_now = true;
        } else {
            // Already have it: our ACK was lost, say it again.
            self.ack_now = true;
            self.counters.duplicates += 1;
        }
        let readable = !self.read_buf.is_empty() || self.eof_reached;
        if readable && !self.readable_signalled {
            self.readable_signalled = true;
            events.push_back(Event::Readable { conn: self.handle });
        }
    }

    fn check_done(&mut self, events: &mut VecDeque<Event>) {
        if self.fin_acked
            && self.eof_reached
            && self.read_buf.is_empty()
            && self.state == State::Connected
        {
            // Both directions finished; the last ACK still goes out (drained() waits).
            let ack = self.ack_now;
            self.close(CloseReason::Finished, events);
            self.ack_now = ack;
        }
    }
}

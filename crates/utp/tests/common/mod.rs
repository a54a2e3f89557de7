//! An in-memory network for two endpoints: per direction a link with propagation delay,
//! random loss, reordering (extra delay for some packets), duplication and a
//! bandwidth-limited tail-drop queue; virtual time, so nothing here depends on the
//! machine's speed.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use utp::{CloseReason, Config, Endpoint, Event, Handle};

#[derive(Clone, Debug)]
pub struct LinkCfg {
    pub delay: Duration,
    pub loss: f64,
    /// Share of packets held back by up to `reorder_delay` more.
    pub reorder: f64,
    pub reorder_delay: Duration,
    pub duplicate: f64,
    /// Bottleneck rate in bytes per second (0: unlimited).
    pub rate: u64,
    /// Bottleneck queue in bytes; more is dropped.
    pub queue: u64,
}

impl Default for LinkCfg {
    fn default() -> Self {
        LinkCfg {
            delay: Duration::from_millis(10),
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
            rate: 0,
            queue: u64::MAX,
        }
    }
}

pub struct Link {
    pub cfg: LinkCfg,
    rng: StdRng,
    busy_until: Option<Instant>,
    /// (arrival time, order, bytes)
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    /// Queuing delay at the bottleneck of every packet, with the time it was sent.
    pub queuing: Vec<(Instant, Duration)>,
    pub dropped_queue: u64,
    pub sent: u64,
    /// The last datagram handed to the link (to learn ids and numbers for spoofing).
    pub last_sent: Option<Vec<u8>>,
    /// The last 64 datagrams handed to the link.
    pub history: std::collections::VecDeque<Vec<u8>>,
    /// Other traffic through the bottleneck: 1000-byte packets at this many bytes per
    /// second from `cross_next` on (not delivered anywhere; they only take their turn).
    pub cross_rate: u64,
    pub cross_next: Option<Instant>,
    /// Queuing delay of every cross-traffic packet, with the time it was sent.
    pub cross_queuing: Vec<(Instant, Duration)>,
    pub cross_dropped: u64,
}

impl Link {
    pub fn new(cfg: LinkCfg, seed: u64) -> Link {
        Link {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            busy_until: None,
            queue: BinaryHeap::new(),
            order: 0,
            queuing: Vec::new(),
            dropped_queue: 0,
            sent: 0,
            last_sent: None,
            history: std::collections::VecDeque::new(),
            cross_rate: 0,
            cross_next: None,
            cross_queuing: Vec::new(),
            cross_dropped: 0,
        }
    }

    /// Puts the cross-traffic packets due by `now` into the bottleneck queue.
    pub fn run_cross(&mut self, now: Instant) {
        const SIZE: u64 = 1000;
        while let Some(t) = self
            .cross_next
            .filter(|t| *t <= now && self.cross_rate > 0 && self.cfg.rate > 0)
        {
            let start = self.busy_until.map_or(t, |b| b.max(t));
            let backlog = (start - t).as_secs_f64() * self.cfg.rate as f64;
            if backlog + SIZE as f64 > self.cfg.queue as f64 {
                self.cross_dropped += 1;
            } else {
                self.cross_queuing.push((t, start - t));
                self.busy_until =
                    Some(start + Duration::from_secs_f64(SIZE as f64 / self.cfg.rate as f64));
            }
            self.cross_next =
                Some(t + Duration::from_secs_f64(SIZE as f64 / self.cross_rate as f64));
        }
    }

    pub fn send(&mut self, now: Instant, data: Vec<u8>) {
        self.run_cross(now);
        self.sent += 1;
        self.last_sent = Some(data.clone());
        if self.history.len() == 64 {
            self.history.pop_front();
        }
        self.history.push_back(data.clone());
        if self.rng.random_bool(self.cfg.loss) {
            return;
        }
        let mut depart = now;
        if self.cfg.rate > 0 {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let waiting = start - now;
            let backlog = waiting.as_secs_f64() * self.cfg.rate as f64;
            if backlog + data.len() as f64 > self.cfg.queue as f64 {
                self.dropped_queue += 1;
                return;
            }
            self.queuing.push((now, waiting));
            depart = start + Duration::from_secs_f64(data.len() as f64 / self.cfg.rate as f64);
            self.busy_until = Some(depart);
        }
        let mut arrive = depart + self.cfg.delay;
        if self.rng.random_bool(self.cfg.reorder) {
            arrive += self.cfg.reorder_delay.mul_f64(self.rng.random::<f64>());
        }
        if self.rng.random_bool(self.cfg.duplicate) {
            self.order += 1;
            self.queue.push(Reverse((
                arrive + Duration::from_millis(1),
                self.order,
                data.clone(),
            )));
        }
        self.order += 1;
        self.queue.push(Reverse((arrive, self.order, data)));
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? <= now {
            self.queue.pop().map(|Reverse((_, _, d))| d)
        } else {
            None
        }
    }
}

/// The byte at `offset` of stream `salt` (deterministic, not periodic in any short span).
pub fn byte_at(salt: u64, offset: u64) -> u8 {
    let mut x =
        offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    (x >> 32) as u8
}

/// One side's application: sends `to_send` bytes of stream `send_salt`, checks every
/// received byte against stream `recv_salt`, shuts down once all is written, and records
/// how it ended.
#[derive(Debug)]
pub struct App {
    pub to_send: u64,
    pub written: u64,
    pub send_salt: u64,
    pub recv_salt: u64,
    pub received: u64,
    pub eof: bool,
    pub shut: bool,
    pub closed: Option<CloseReason>,
    pub connected: bool,
    /// Read at most this many bytes per step (None: all).
    pub read_limit: Option<usize>,
    /// Read nothing while the simulated time is in this span.
    pub read_pause: Option<(Duration, Duration)>,
    /// Check every received byte (off only where spoofed data is let in on purpose).
    pub verify: bool,
}

impl App {
    pub fn new(to_send: u64, send_salt: u64, recv_salt: u64) -> App {
        App {
            to_send,
            written: 0,
            send_salt,
            recv_salt,
            received: 0,
            eof: false,
            shut: false,
            closed: None,
            connected: false,
            read_limit: None,
            read_pause: None,
            verify: true,
        }
    }

    fn pump(&mut self, ep: &mut Endpoint, h: Handle, elapsed: Duration) {
        if self.closed.is_some() {
            return;
        }
        // Write what fits.
        while self.written < self.to_send {
            let n = (self.to_send - self.written).min(64 * 1024) as usize;
            let chunk: Vec<u8> = (0..n as u64)
                .map(|i| byte_at(self.send_salt, self.written + i))
                .collect();
            match ep.write(h, &chunk) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.written += k as u64,
            }
        }
        if self.written == self.to_send && !self.shut && self.connected {
            self.shut = true;
            ep.shutdown(h).unwrap();
            assert_eq!(ep.write(h, b"late"), Err(utp::Error::ShutDown));
        }
        // Read and check.
        let mut buf = vec![0u8; 32 * 1024];
        let mut budget = self.read_limit.unwrap_or(usize::MAX);
        if self
            .read_pause
            .is_some_and(|(from, to)| elapsed >= from && elapsed < to)
        {
            budget = 0;
        }
        while budget > 0 {
            let want = buf.len().min(budget);
            match ep.read(h, &mut buf[..want]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    for (i, b) in buf[..n].iter().enumerate().filter(|_| self.verify) {
                        let want = byte_at(self.recv_salt, self.received + i as u64);
                        assert_eq!(
                            *b,
                            want,
                            "byte {} of stream {} differs",
                            self.received + i as u64,
                            self.recv_salt
                        );
                    }
                    self.received += n as u64;
                    budget -= n;
                }
                Err(_) => break,
            }
        }
    }
}

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub a: Endpoint,
    pub b: Endpoint,
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub ab: Link,
    pub ba: Link,
    pub apps: HashMap<(bool, Handle), App>,
    /// Apps for connections the B side accepts, made from this.
    pub accept_app: Option<Box<dyn FnMut() -> App>>,
    pub steps: u64,
    /// Datagrams addressed to neither endpoint (answers to spoofed strangers).
    pub elsewhere: u64,
}

impl Sim {
    pub fn new(cfg: Config, ab: LinkCfg, ba: LinkCfg, seed: u64) -> Sim {
        let now = Instant::now();
        Sim {
            now,
            start: now,
            a: Endpoint::new(cfg.clone(), now, seed),
            b: Endpoint::new(cfg, now, seed.wrapping_add(1)),
            a_addr: "127.0.0.1:6881".parse().unwrap(),
            b_addr: "127.0.0.1:6882".parse().unwrap(),
            ab: Link::new(ab, seed.wrapping_add(2)),
            ba: Link::new(ba, seed.wrapping_add(3)),
            apps: HashMap::new(),
            accept_app: None,
            steps: 0,
            elsewhere: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Dials from A with `app`, B answering with `accept_app`.
    pub fn dial(&mut self, app: App) -> Handle {
        let h = self.a.connect(self.now, self.b_addr).unwrap();
        self.apps.insert((true, h), app);
        h
    }

    /// Hands the endpoints' events to the apps (`step` does it too, before moving time).
    pub fn events(&mut self) {
        for side in [true, false] {
            loop {
                let ev = if side {
                    self.a.poll_event()
                } else {
                    self.b.poll_event()
                };
                let Some(ev) = ev else { break };
                match ev {
                    Event::Incoming { conn, .. } => {
                        let mut app = (self.accept_app.as_mut().expect("an accept app"))();
                        app.connected = true;
                        self.apps.insert((side, conn), app);
                    }
                    Event::Connected { conn } => {
                        if let Some(app) = self.apps.get_mut(&(side, conn)) {
                            app.connected = true;
                        }
                    }
                    Event::Closed { conn, reason } => {
                        if let Some(app) = self.apps.get_mut(&(side, conn)) {
                            // Take what was delivered before the close.
                            let ep = if side { &mut self.a } else { &mut self.b };
                            app.pump(ep, conn, Duration::MAX);
                            app.closed = Some(reason);
                        }
                    }
                    Event::Readable { .. } | Event::Writable { .. } => {}
                }
            }
        }
    }

    fn pump_apps(&mut self) {
        let elapsed = self.elapsed();
        let keys: Vec<_> = self.apps.keys().copied().collect();
        for (side, h) in keys {
            let app = self.apps.get_mut(&(side, h)).unwrap();
            let ep = if side { &mut self.a } else { &mut self.b };
            app.pump(ep, h, elapsed);
        }
    }

    /// One step: applications, transmits, then time moves to the next event.
    /// Returns false when nothing at all is scheduled.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        self.events();
        self.pump_apps();
        self.events();
        while let Some(t) = self.a.poll_transmit(self.now) {
            if t.dest == self.b_addr {
                self.ab.send(self.now, t.data);
            } else {
                self.elsewhere += 1;
            }
        }
        while let Some(t) = self.b.poll_transmit(self.now) {
            if t.dest == self.a_addr {
                self.ba.send(self.now, t.data);
            } else {
                self.elsewhere += 1;
            }
        }
        let next = [
            self.ab.next_arrival(),
            self.ba.next_arrival(),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
            self.ab.cross_next.filter(|_| self.ab.cross_rate > 0),
        ]
        .into_iter()
        .flatten()
        .min();
        // Slow readers come back every 10 ms at least.
        let tick = self
            .apps
            .values()
            .any(|a| a.read_limit.is_some() && a.closed.is_none());
        let next = match (next, tick) {
            (Some(n), true) => n.min(self.now + Duration::from_millis(10)),
            (None, true) => self.now + Duration::from_millis(10),
            (Some(n), false) => n,
            (None, false) => return false,
        };
        self.now = self.now.max(next);
        self.ab.run_cross(self.now);
        while let Some(d) = self.ab.pop_due(self.now) {
            self.b.handle_datagram(self.now, self.a_addr, &d);
        }
        while let Some(d) = self.ba.pop_due(self.now) {
            self.a.handle_datagram(self.now, self.b_addr, &d);
        }
        if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
            self.a.handle_timeout(self.now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
            self.b.handle_timeout(self.now);
        }
        true
    }

    /// Runs until every app is closed, or `limit` of virtual time passed.
    pub fn run(&mut self, limit: Duration) {
        while self.elapsed() < limit {
            let all_closed =
                !self.apps.is_empty() && self.apps.values().all(|a| a.closed.is_some());
            if all_closed && self.a.connection_count() == 0 && self.b.connection_count() == 0 {
                return;
            }
            if !self.step() {
                return; // nothing scheduled: finished or stuck; the test looks at the apps
            }
            assert!(self.steps < 50_000_000, "simulation does not progress");
        }
    }
}

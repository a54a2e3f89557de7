//! The UDP receive/answer loop, batched with `recvmmsg`/`sendmmsg` on Linux.
//!
//! Under load one `recvmmsg` returns up to [`BATCH`] datagrams (`MSG_WAITFORONE`: block for
//! the first, take whatever else is queued), the handler answers each into its own reused
//! buffer, and one `sendmmsg` sends every answer back to the address it came from: two system
//! calls per batch instead of two per packet. Elsewhere a plain `recv_from`/`send_to` loop.
//!
//! Both loops return when `stop` is set; the socket's read timeout bounds how long that takes.
//! [`Handler::idle`] is called when a read times out (to publish counters).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What the loops call.
pub trait Handler {
    /// Answers one datagram by appending to `out` (left empty: no answer).
    fn packet(&mut self, pkt: &[u8], src: SocketAddr, out: &mut Vec<u8>);
    /// A read timed out: nothing arrived for a while.
    fn idle(&mut self);
}

/// Most datagrams per batch.
pub const BATCH: usize = 32;
/// Receive buffer per datagram (BEP 15 requests are at most a few hundred bytes).
pub const RECV_BUF: usize = 2048;

/// Whether a datagram's head says it is a scrape (action 2).
pub fn is_scrape(b: &[u8]) -> bool {
    b.len() >= 16 && b[8..12] == tracker_proto::udp::ACTION_SCRAPE.to_be_bytes()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Portable loop: one `recv_from` and at most one `send_to` per datagram.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub fn serve_simple(socket: &UdpSocket, stop: &AtomicBool, h: &mut impl Handler) {
    let mut buf = [0u8; RECV_BUF];
    let mut out = Vec::with_capacity(RECV_BUF);
    while !stop.load(Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, src)) => {
                out.clear();
                h.packet(&buf[..n], src, &mut out);
                if !out.is_empty() {
                    let _ = socket.send_to(&out, src);
                }
            }
            Err(e) if is_timeout(&e) => h.idle(),
            // ICMP errors from earlier sends (ECONNREFUSED) and the like: keep serving.
            Err(_) => {}
        }
    }
}

#[cfg(target_os = "linux")]
pub use linux::serve_batched;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    fn to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match ss.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage,
                // which is larger and suitably aligned for it.
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
                let a =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// The batched loop (see the module doc).
    pub fn serve_batched(socket: &UdpSocket, stop: &AtomicBool, h: &mut impl Handler) {
        let fd = socket.as_raw_fd();
        let mut bufs = vec![[0u8; RECV_BUF]; BATCH];
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(RECV_BUF)).collect();
        // SAFETY (zeroed): plain C structs for which all-zero bytes are a valid value.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut name_lens = [0 as libc::socklen_t; BATCH];
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut send_iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        let mut send_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];

        while !stop.load(Relaxed) {
            iovs.clear();
            for b in bufs.iter_mut() {
                iovs.push(libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: RECV_BUF,
                });
            }
            for i in 0..BATCH {
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                msgs[i].msg_len = 0;
            }
            // SAFETY: `msgs` holds BATCH initialised headers whose name and iovec pointers
            // point into `names`, `iovs` and `bufs`, all alive and unaliased for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                if is_timeout(&std::io::Error::last_os_error()) {
                    h.idle();
                }
                continue;
            }
            let n = (n as usize).min(BATCH);
            for i in 0..n {
                outs[i].clear();
                name_lens[i] = msgs[i].msg_hdr.msg_namelen;
                let len = (msgs[i].msg_len as usize).min(RECV_BUF);
                // A truncated datagram (larger than RECV_BUF) is no valid request, except a
                // scrape of more hashes than fit: BEP 15 answers the first ones.
                if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 && !is_scrape(&bufs[i][..len]) {
                    continue;
                }
                if let Some(src) = to_std(&names[i]) {
                    h.packet(&bufs[i][..len], src, &mut outs[i]);
                }
            }
            send_iovs.clear();
            for out in outs.iter().take(n) {
                send_iovs.push(libc::iovec {
                    iov_base: out.as_ptr() as *mut libc::c_void,
                    iov_len: out.len(),
                });
            }
            let mut k = 0;
            for i in 0..n {
                if outs[i].is_empty() {
                    continue;
                }
                let h = &mut send_msgs[k].msg_hdr;
                h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = name_lens[i];
                h.msg_iov = &mut send_iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                k += 1;
            }
            let mut sent = 0;
            while sent < k {
                // SAFETY: headers `sent..k` are initialised and point into `names`,
                // `send_iovs` and `outs`, which are not touched during the call.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        send_msgs[sent..].as_mut_ptr(),
                        (k - sent) as libc::c_uint,
                        0,
                    )
                };
                if r <= 0 {
                    // The first remaining message failed (e.g. an unreachable address):
                    // skip it, send the rest.
                    sent += 1;
                } else {
                    sent += r as usize;
                }
            }
        }
    }
}

//! Live capture shell: AF_PACKET capture threads (pnet_datalink), interface discovery,
//! network-namespace entry and capability handling.
//!
//! One thread per interface reads frames from a pnet AF_PACKET channel whose socket podwire
//! creates itself (so it keeps the descriptor for `PACKET_STATISTICS` and `SO_RCVBUFFORCE`),
//! stamps each frame with the wall clock when it is received (ns since the Unix epoch),
//! applies the capture filter, and queues frames in batches on one bounded channel to the
//! engine thread with `try_send`: a slow consumer never blocks a capture thread, and every
//! frame that did not fit is counted as a queue drop. Guarantees:
//! - frames of one interface are queued in receive order with non-decreasing timestamps;
//! - the interface's [`Control::Opened`] is sent before any of its batches;
//! - every frame the socket returned is counted exactly once as queued, filtered out or
//!   dropped; frames that filled the whole read buffer are counted as truncated;
//! - `--netns` is entered with `setns(2)` on capture and discovery threads only, never on the
//!   thread that writes output;
//! - after its socket is open a capture thread drops all its capabilities (best effort:
//!   capabilities are per thread on Linux, see `docs/capture.md`).

#![allow(clippy::disallowed_methods)] // a shell: threads, clocks, sockets and /proc

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::filter::Filter;
use crate::frame::{IfaceId, RawFrame, linktype};

/// Frames per batch before it is queued.
const BATCH_FRAMES: usize = 256;
/// Payload bytes per batch before it is queued.
const BATCH_BYTES: usize = 256 * 1024;
/// A batch older than this (capture time) is queued even if not full.
pub const FLUSH_NS: u64 = 20_000_000;
/// How long a capture thread blocks in one read before checking its stop flags.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// How often a capture thread publishes its counters.
const PUBLISH_NS: u64 = 250_000_000;

/// An interface as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    /// ARPHRD_* hardware type.
    pub hatype: u16,
    pub up: bool,
    pub loopback: bool,
}

/// Lists the interfaces of the calling thread's network namespace (`getifaddrs`).
pub fn list_interfaces() -> io::Result<Vec<LinkInfo>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<LinkInfo> = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: cursor is a valid node of the list returned by getifaddrs.
        let ifa = unsafe { &*cursor };
        cursor = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of at least its family's size.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_PACKET {
            continue;
        }
        // SAFETY: AF_PACKET entries carry a sockaddr_ll.
        let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        if out.iter().any(|l| l.name == name) {
            continue;
        }
        out.push(LinkInfo {
            name,
            index: ll.sll_ifindex as u32,
            hatype: ll.sll_hatype,
            up: ifa.ifa_flags & libc::IFF_UP as u32 != 0,
            loopback: ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0,
        });
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort_by_key(|l| l.index);
    Ok(out)
}

/// The pcap link type of frames an AF_PACKET SOCK_RAW socket returns for a hardware type.
pub fn linktype_for_hatype(hatype: u16) -> Option<u32> {
    match hatype {
        // ARPHRD_ETHER, ARPHRD_LOOPBACK (Ethernet header with zero MACs)
        1 | 772 => Some(linktype::ETHERNET),
        // ARPHRD_NONE (WireGuard, tun), ARPHRD_TUNNEL (ipip: tunl0), ARPHRD_TUNNEL6,
        // ARPHRD_SIT, ARPHRD_RAWIP: no link header, the frame starts with the IP header.
        0xFFFE | 768 | 769 | 776 | 519 => Some(linktype::RAW),
        _ => None,
    }
}

/// What an interface most likely is on a Kubernetes node, by name.
pub fn interface_kind(name: &str) -> &'static str {
    const POD: &[&str] = &[
        "veth", "cali", "lxc", "vxl-", "gke", "eni", "azv", "enp0s0v",
    ];
    const BRIDGE: &[&str] = &["cni", "cbr", "docker", "kube-bridge", "br-", "weave"];
    const OVERLAY: &[&str] = &[
        "flannel",
        "vxlan",
        "tunl",
        "cilium_",
        "genev",
        "wg",
        "antrea",
        "kube-ipvs",
        "nodelocaldns",
        "ovn",
        "genev_sys",
    ];
    if name == "lo" {
        "loopback"
    } else if POD.iter().any(|p| name.starts_with(p)) {
        "pod"
    } else if BRIDGE.iter().any(|p| name.starts_with(p)) {
        "bridge"
    } else if OVERLAY.iter().any(|p| name.starts_with(p)) {
        "overlay"
    } else {
        "node"
    }
}

/// A network namespace opened from a path (`/var/run/netns/NAME`, `/proc/PID/ns/net`).
#[derive(Debug)]
pub struct Netns {
    file: File,
    pub path: PathBuf,
}

impl Netns {
    pub fn open(path: &Path) -> io::Result<Netns> {
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Moves the calling thread (only) into this network namespace.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns on a valid descriptor; affects only the calling thread for CLONE_NEWNET.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("entering network namespace {}: {e}", self.path.display()),
            ));
        }
        Ok(())
    }
}

/// Runs `f` on a short-lived thread inside `netns` (or in the current namespace).
pub fn in_netns<T: Send + 'static>(
    netns: Option<Arc<Netns>>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let handle = std::thread::Builder::new()
        .name("podwire-netns".into())
        .spawn(move || {
            if let Some(ns) = netns {
                ns.enter()?;
            }
            f()
        })?;
    handle
        .join()
        .map_err(|_| io::Error::other("namespace helper thread panicked"))?
}

/// Capabilities the calling thread lacks among `needed`.
pub fn missing_capabilities(needed: &[caps::Capability]) -> Vec<caps::Capability> {
    needed
        .iter()
        .copied()
        .filter(|c| !caps::has_cap(None, caps::CapSet::Effective, *c).unwrap_or(false))
        .collect()
}

/// Drops the calling thread's capabilities except `keep` (effective, permitted, inheritable).
/// Returns a description of what happened (best effort: never fails the capture).
pub fn drop_thread_capabilities(keep: &[caps::Capability]) -> Result<(), String> {
    let keep: caps::CapsHashSet = keep.iter().copied().collect();
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
    ] {
        let current = caps::read(None, set).map_err(|e| e.to_string())?;
        let wanted: caps::CapsHashSet = current.intersection(&keep).copied().collect();
        if wanted != current {
            caps::set(None, set, &wanted).map_err(|e| format!("capset {set:?}: {e}"))?;
        }
    }
    Ok(())
}

/// Counters of one capture thread, published a few times a second.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames the socket returned.
    pub received: AtomicU64,
    pub bytes: AtomicU64,
    /// Frames the capture filter rejected.
    pub filtered: AtomicU64,
    /// Frames queued to the engine thread.
    pub queued: AtomicU64,
    /// Frames dropped because the queue to the engine thread was full.
    pub queue_drops: AtomicU64,
    /// Frames that filled the whole read buffer (possibly cut).
    pub truncated: AtomicU64,
    /// Kernel counters from PACKET_STATISTICS (cumulative).
    pub kernel_packets: AtomicU64,
    pub kernel_drops: AtomicU64,
    /// Read errors other than time-outs.
    pub errors: AtomicU64,
    /// CPU time of the capture thread (user + system), in microseconds.
    pub cpu_us: AtomicU64,
    /// True once the kernel answered PACKET_STATISTICS.
    pub kernel_stats: AtomicBool,
}

/// Plain copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CounterValues {
    pub received: u64,
    pub bytes: u64,
    pub filtered: u64,
    pub queued: u64,
    pub queue_drops: u64,
    pub truncated: u64,
    /// `None` when the kernel's PACKET_STATISTICS could not be read.
    pub kernel_packets: Option<u64>,
    pub kernel_drops: Option<u64>,
    pub errors: u64,
    /// CPU time of the capture thread (user + system), in microseconds.
    pub cpu_us: u64,
}

impl Counters {
    pub fn load(&self) -> CounterValues {
        let kernel = self.kernel_stats.load(Ordering::Relaxed);
        CounterValues {
            received: self.received.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            queue_drops: self.queue_drops.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            kernel_packets: kernel.then(|| self.kernel_packets.load(Ordering::Relaxed)),
            kernel_drops: kernel.then(|| self.kernel_drops.load(Ordering::Relaxed)),
            errors: self.errors.load(Ordering::Relaxed),
            cpu_us: self.cpu_us.load(Ordering::Relaxed),
        }
    }
}

/// Where one frame lies in a batch.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub start: u32,
    pub len: u32,
}

/// Frames of one interface, in receive order, sharing one byte buffer.
#[derive(Debug, Default)]
pub struct Batch {
    pub iface: IfaceId,
    pub link: u32,
    pub frames: Vec<FrameMeta>,
    pub data: Vec<u8>,
}

impl Batch {
    fn with_capacity() -> Batch {
        Batch {
            frames: Vec::with_capacity(BATCH_FRAMES),
            data: Vec::with_capacity(BATCH_BYTES + 2048),
            ..Batch::default()
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.data.clear();
    }

    fn push(&mut self, ts_ns: u64, orig_len: u32, bytes: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.frames.push(FrameMeta {
            ts_ns,
            orig_len,
            start,
            len: bytes.len() as u32,
        });
    }

    /// Frame `i` as the engine's input type.
    pub fn frame(&self, i: usize) -> Option<RawFrame<'_>> {
        let m = self.frames.get(i)?;
        let data = self
            .data
            .get(m.start as usize..(m.start as usize + m.len as usize))?;
        Some(RawFrame {
            ts_ns: m.ts_ns,
            iface: self.iface,
            link: self.link,
            orig_len: m.orig_len,
            data,
        })
    }
}

/// Messages from capture and discovery threads to the engine thread (never dropped).
#[derive(Debug)]
pub enum Control {
    /// The socket is open; sent before any batch of this interface.
    Opened {
        id: IfaceId,
        name: String,
        ifindex: u32,
        link: u32,
        counters: Arc<Counters>,
        /// Where the engine thread returns emptied batches for reuse.
        recycle: SyncSender<Batch>,
        /// Outcome of dropping the capture thread's capabilities.
        caps_dropped: Result<(), String>,
        rcvbuf: Option<usize>,
    },
    /// The interface could not be opened.
    Failed {
        id: IfaceId,
        name: String,
        error: String,
        permission: bool,
    },
    /// The capture thread ended (interface removed, stopped, or read errors).
    Closed {
        id: IfaceId,
        name: String,
        reason: String,
    },
    /// Interface discovery failed once (it retries).
    DiscoveryError(String),
}

/// Settings shared by every capture thread.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// pnet read buffer: the largest frame captured whole.
    pub read_buffer: usize,
    /// Socket receive buffer requested with SO_RCVBUFFORCE / SO_RCVBUF.
    pub socket_buffer: usize,
    pub promiscuous: bool,
    pub filter: Option<Arc<Filter>>,
    /// Keep these capabilities after the socket is open (discovery needs them).
    pub keep_caps: Vec<caps::Capability>,
}

/// What every capture thread needs to talk to the rest.
#[derive(Clone)]
pub struct CaptureContext {
    pub config: Arc<CaptureConfig>,
    pub netns: Option<Arc<Netns>>,
    pub data: SyncSender<Batch>,
    pub control: Sender<Control>,
    /// Set to stop every thread.
    pub stop: Arc<AtomicBool>,
}

/// A running capture thread.
pub struct CaptureHandle {
    pub id: IfaceId,
    pub name: String,
    pub ifindex: u32,
    pub stop: Arc<AtomicBool>,
    pub thread: JoinHandle<()>,
}

/// Starts capturing on interface `name` (looked up inside the context's namespace).
pub fn spawn_capture(
    id: IfaceId,
    name: &str,
    expected_ifindex: Option<u32>,
    ctx: &CaptureContext,
) -> io::Result<CaptureHandle> {
    let own_stop = Arc::new(AtomicBool::new(false));
    let thread_ctx = ctx.clone();
    let thread_name = name.to_string();
    let thread_stop = own_stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("podwire-cap-{name}"))
        .spawn(move || capture_thread(id, thread_name, thread_ctx, thread_stop))?;
    Ok(CaptureHandle {
        id,
        name: name.to_string(),
        ifindex: expected_ifindex.unwrap_or(0),
        stop: own_stop,
        thread,
    })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Attaches a classic BPF program that drops PACKET_OUTGOING frames: on loopback every packet
/// is seen leaving and arriving on the same device (libpcap drops the outgoing copy too;
/// pnet does not return the packet type, so the kernel does it for us).
fn drop_outgoing(fd: i32) -> io::Result<()> {
    const SKF_AD_PKTTYPE: u32 = 0xFFFF_F000 + 4; // SKF_AD_OFF + SKF_AD_PKTTYPE
    const PACKET_OUTGOING: u32 = 4;
    let mut program = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: SKF_AD_PKTTYPE,
        }, // ld pkttype
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: PACKET_OUTGOING,
        }, // jeq outgoing
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ret 0 (drop)
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: u32::MAX,
        }, // ret all
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: SO_ATTACH_FILTER copies the program; `prog` points to live memory.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the AF_PACKET socket podwire hands to pnet, with a large receive buffer.
fn open_socket(size: usize) -> io::Result<(i32, Option<usize>)> {
    // Protocol 0: the socket receives nothing until pnet binds it to the interface with
    // ETH_P_ALL, so no frame of another interface slips in before the bind.
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let value = size.min(i32::MAX as usize) as libc::c_int;
    let set = |opt| {
        // SAFETY: setsockopt with a c_int value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        let _ = set(libc::SO_RCVBUF);
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    } == 0;
    Ok((fd, ok.then_some(got.max(0) as usize)))
}

/// CPU time (user + system) of the calling thread, in microseconds.
pub fn thread_cpu_us() -> u64 {
    // SAFETY: getrusage fills a zeroed rusage struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Reads and resets the kernel's PACKET_STATISTICS (packets seen incl. drops, drops).
fn kernel_stats(fd: i32) -> Option<(u64, u64)> {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt into a tpacket_stats of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((u64::from(st.tp_packets), u64::from(st.tp_drops)))
}

/// The IP packet's own length plus the link header, for frames that filled the buffer.
fn ip_wire_len(link: u32, data: &[u8]) -> u32 {
    let mut off = 0usize;
    if link == linktype::ETHERNET {
        off = 12;
        loop {
            let Some(t) = data.get(off..off + 2) else {
                return 0;
            };
            match u16::from_be_bytes([t[0], t[1]]) {
                0x8100 | 0x88a8 => off += 4,
                _ => break,
            }
        }
        off += 2;
    }
    let Some(&first) = data.get(off) else {
        return 0;
    };
    let field = |at: usize| {
        data.get(off + at..off + at + 2)
            .map_or(0, |b| u32::from(u16::from_be_bytes([b[0], b[1]])))
    };
    match first >> 4 {
        4 => off as u32 + field(2),
        6 => off as u32 + 40 + field(4),
        _ => 0,
    }
}

struct Local {
    received: u64,
    bytes: u64,
    filtered: u64,
    queued: u64,
    queue_drops: u64,
    truncated: u64,
    kernel_packets: u64,
    kernel_drops: u64,
    errors: u64,
}

fn capture_thread(id: IfaceId, name: String, ctx: CaptureContext, own_stop: Arc<AtomicBool>) {
    let fail = |error: String, permission: bool| {
        let _ = ctx.control.send(Control::Failed {
            id,
            name: name.clone(),
            error,
            permission,
        });
    };
    if let Some(ns) = &ctx.netns
        && let Err(e) = ns.enter()
    {
        fail(e.to_string(), e.kind() == io::ErrorKind::PermissionDenied);
        return;
    }
    let info = match list_interfaces() {
        Ok(list) => list.into_iter().find(|l| l.name == name),
        Err(e) => {
            fail(format!("listing interfaces: {e}"), false);
            return;
        }
    };
    let Some(info) = info else {
        fail("no such interface".into(), false);
        return;
    };
    let Some(link) = linktype_for_hatype(info.hatype) else {
        fail(
            format!(
                "unsupported hardware type ARPHRD {} (podwire reads Ethernet-like and raw-IP interfaces)",
                info.hatype
            ),
            false,
        );
        return;
    };
    let (fd, rcvbuf) = match open_socket(ctx.config.socket_buffer) {
        Ok(x) => x,
        Err(e) => {
            let permission = e.raw_os_error() == Some(libc::EPERM);
            fail(format!("opening an AF_PACKET socket: {e}"), permission);
            return;
        }
    };
    if info.loopback
        && let Err(e) = drop_outgoing(fd)
    {
        // SAFETY: fd is ours and not yet handed to pnet.
        unsafe { libc::close(fd) };
        fail(format!("attaching the loopback filter: {e}"), false);
        return;
    }
    let iface = pnet_datalink::NetworkInterface {
        name: name.clone(),
        description: String::new(),
        index: info.index,
        mac: None,
        ips: Vec::new(),
        flags: 0,
    };
    let config = pnet_datalink::Config {
        read_buffer_size: ctx.config.read_buffer,
        write_buffer_size: 64,
        read_timeout: Some(READ_TIMEOUT),
        promiscuous: ctx.config.promiscuous,
        socket_fd: Some(fd),
        ..pnet_datalink::Config::default()
    };
    // pnet closes the descriptor itself when it fails.
    let mut rx = match pnet_datalink::channel(&iface, config) {
        Ok(pnet_datalink::Channel::Ethernet(_tx, rx)) => rx,
        Ok(_) => {
            fail("pnet returned an unknown channel type".into(), false);
            return;
        }
        Err(e) => {
            let permission = e.raw_os_error() == Some(libc::EPERM);
            fail(format!("binding the capture socket: {e}"), permission);
            return;
        }
    };
    let caps_dropped = drop_thread_capabilities(&ctx.config.keep_caps);
    let counters = Arc::new(Counters::default());
    let (recycle_tx, recycle_rx): (SyncSender<Batch>, Receiver<Batch>) = mpsc::sync_channel(64);
    if ctx
        .control
        .send(Control::Opened {
            id,
            name: name.clone(),
            ifindex: info.index,
            link,
            counters: counters.clone(),
            recycle: recycle_tx,
            caps_dropped,
            rcvbuf,
        })
        .is_err()
    {
        return;
    }

    let read_buffer = ctx.config.read_buffer;
    let filter = ctx.config.filter.clone();
    let new_batch = |recycle: &Receiver<Batch>| {
        let mut b = recycle
            .try_recv()
            .unwrap_or_else(|_| Batch::with_capacity());
        b.clear();
        b.iface = id;
        b.link = link;
        b
    };
    let mut batch = new_batch(&recycle_rx);
    let mut local = Local {
        received: 0,
        bytes: 0,
        filtered: 0,
        queued: 0,
        queue_drops: 0,
        truncated: 0,
        kernel_packets: 0,
        kernel_drops: 0,
        errors: 0,
    };
    let mut last_ts = 0u64;
    let mut last_publish = 0u64;
    let mut consecutive_errors = 0u32;
    let mut engine_gone = false;
    let reason;

    let send = |batch: &mut Batch, local: &mut Local, engine_gone: &mut bool| {
        if batch.frames.is_empty() {
            return;
        }
        let n = batch.frames.len() as u64;
        let full = std::mem::replace(batch, new_batch(&recycle_rx));
        match ctx.data.try_send(full) {
            Ok(()) => local.queued += n,
            Err(TrySendError::Full(mut back)) => {
                local.queue_drops += n;
                back.clear();
                *batch = back;
            }
            Err(TrySendError::Disconnected(_)) => *engine_gone = true,
        }
    };
    let publish = |local: &mut Local| {
        if let Some((packets, drops)) = kernel_stats(fd) {
            local.kernel_packets += packets;
            local.kernel_drops += drops;
            counters.kernel_stats.store(true, Ordering::Relaxed);
        }
        counters.received.store(local.received, Ordering::Relaxed);
        counters.bytes.store(local.bytes, Ordering::Relaxed);
        counters.filtered.store(local.filtered, Ordering::Relaxed);
        counters.queued.store(local.queued, Ordering::Relaxed);
        counters
            .queue_drops
            .store(local.queue_drops, Ordering::Relaxed);
        counters.truncated.store(local.truncated, Ordering::Relaxed);
        counters
            .kernel_packets
            .store(local.kernel_packets, Ordering::Relaxed);
        counters
            .kernel_drops
            .store(local.kernel_drops, Ordering::Relaxed);
        counters.errors.store(local.errors, Ordering::Relaxed);
        counters.cpu_us.store(thread_cpu_us(), Ordering::Relaxed);
    };

    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            reason = "capture stopped".to_string();
            break;
        }
        if own_stop.load(Ordering::Relaxed) {
            reason = "interface removed".to_string();
            break;
        }
        if engine_gone {
            reason = "engine thread ended".to_string();
            break;
        }
        let now = match rx.next() {
            Ok(frame) => {
                consecutive_errors = 0;
                let ts = now_ns().max(last_ts);
                last_ts = ts;
                local.received += 1;
                let mut orig_len = frame.len() as u32;
                if frame.len() >= read_buffer {
                    local.truncated += 1;
                    orig_len = orig_len.max(ip_wire_len(link, frame));
                }
                local.bytes += u64::from(orig_len);
                if filter.as_ref().is_some_and(|f| !f.matches(link, frame)) {
                    local.filtered += 1;
                } else {
                    batch.push(ts, orig_len, frame);
                }
                let first = batch.frames.first().map_or(ts, |f| f.ts_ns);
                if batch.frames.len() >= BATCH_FRAMES
                    || batch.data.len() >= BATCH_BYTES
                    || ts.saturating_sub(first) >= FLUSH_NS
                {
                    send(&mut batch, &mut local, &mut engine_gone);
                }
                ts
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                send(&mut batch, &mut local, &mut engine_gone);
                now_ns()
            }
            Err(e) => {
                local.errors += 1;
                consecutive_errors += 1;
                send(&mut batch, &mut local, &mut engine_gone);
                let still_there = list_interfaces()
                    .map(|l| l.iter().any(|x| x.name == name && x.index == info.index))
                    .unwrap_or(true);
                if !still_there {
                    reason = "interface removed".to_string();
                    break;
                }
                if consecutive_errors > 50 {
                    reason = format!("read errors: {e}");
                    break;
                }
                // An interface going down reports ENETDOWN; wait for it to come back.
                std::thread::sleep(Duration::from_millis(100));
                now_ns()
            }
        };
        if now.saturating_sub(last_publish) >= PUBLISH_NS {
            last_publish = now;
            publish(&mut local);
        }
    }
    send(&mut batch, &mut local, &mut engine_gone);
    publish(&mut local);
    let _ = ctx.control.send(Control::Closed { id, name, reason });
}

/// Which interfaces `--all` captures: everything but loopback.
pub fn selected_by_all(link: &LinkInfo) -> bool {
    !link.loopback && linktype_for_hatype(link.hatype).is_some()
}

/// Stable interface ids by name.
#[derive(Debug, Default)]
pub struct IfaceRegistry {
    ids: HashMap<String, IfaceId>,
}

impl IfaceRegistry {
    pub fn id(&mut self, name: &str) -> IfaceId {
        let next = self.ids.len() as IfaceId;
        *self.ids.entry(name.to_string()).or_insert(next)
    }
}

/// Follows interfaces that appear and disappear (`--all`): polls the namespace's interface
/// list every `interval`, starts a capture thread for each new interface and stops the thread
/// of each interface that vanished. Runs until the context's stop flag is set, then stops and
/// joins every capture thread it owns.
pub fn spawn_discovery(
    ctx: CaptureContext,
    mut registry: IfaceRegistry,
    mut active: Vec<CaptureHandle>,
    interval: Duration,
    keep_caps: Vec<caps::Capability>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("podwire-discovery".into())
        .spawn(move || {
            if let Some(ns) = &ctx.netns
                && let Err(e) = ns.enter()
            {
                let _ = ctx.control.send(Control::DiscoveryError(e.to_string()));
                join_all(active);
                return;
            }
            if let Err(e) = drop_thread_capabilities(&keep_caps) {
                let _ = ctx.control.send(Control::DiscoveryError(format!(
                    "could not drop capabilities: {e}"
                )));
            }
            let mut last_error: Option<String> = None;
            while !ctx.stop.load(Ordering::Relaxed) {
                match list_interfaces() {
                    Ok(links) => {
                        last_error = None;
                        // Threads of vanished interfaces (or recreated under a new index).
                        let mut keep = Vec::with_capacity(active.len());
                        for handle in active.drain(..) {
                            let present = links.iter().any(|l| {
                                l.name == handle.name
                                    && (handle.ifindex == 0 || l.index == handle.ifindex)
                            });
                            if present && !handle.thread.is_finished() {
                                keep.push(handle);
                            } else {
                                handle.stop.store(true, Ordering::Relaxed);
                                let _ = handle.thread.join();
                            }
                        }
                        active = keep;
                        for link in links.iter().filter(|l| selected_by_all(l)) {
                            if active.iter().any(|h| h.name == link.name) {
                                continue;
                            }
                            let id = registry.id(&link.name);
                            match spawn_capture(id, &link.name, Some(link.index), &ctx) {
                                Ok(h) => active.push(h),
                                Err(e) => {
                                    let _ = ctx.control.send(Control::DiscoveryError(format!(
                                        "starting a capture thread for {}: {e}",
                                        link.name
                                    )));
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let msg = format!("listing interfaces: {e}");
                        if last_error.as_deref() != Some(msg.as_str()) {
                            let _ = ctx.control.send(Control::DiscoveryError(msg.clone()));
                        }
                        last_error = Some(msg);
                    }
                }
                // Sleep in small steps so a stop is noticed quickly.
                let mut slept = Duration::ZERO;
                while slept < interval && !ctx.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    slept += Duration::from_millis(50);
                }
            }
            join_all(active);
        })
}

/// Stops and joins capture threads.
pub fn join_all(handles: Vec<CaptureHandle>) {
    for h in &handles {
        h.stop.store(true, Ordering::Relaxed);
    }
    for h in handles {
        let _ = h.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_link_types() {
        assert_eq!(interface_kind("veth1a2b"), "pod");
        assert_eq!(interface_kind("cali12345"), "pod");
        assert_eq!(interface_kind("lxc_health"), "pod");
        assert_eq!(interface_kind("cni0"), "bridge");
        assert_eq!(interface_kind("flannel.1"), "overlay");
        assert_eq!(interface_kind("vxlan.calico"), "overlay");
        assert_eq!(interface_kind("cilium_host"), "overlay");
        assert_eq!(interface_kind("eth0"), "node");
        assert_eq!(linktype_for_hatype(1), Some(linktype::ETHERNET));
        assert_eq!(linktype_for_hatype(768), Some(linktype::RAW));
        assert_eq!(linktype_for_hatype(0xFFFE), Some(linktype::RAW));
        assert_eq!(linktype_for_hatype(824), None);
    }

    #[test]
    fn wire_length_of_cut_frames() {
        let mut eth = vec![0u8; 14];
        eth[12] = 0x81;
        eth[13] = 0x00;
        eth.extend_from_slice(&[0, 1, 0x08, 0x00]); // VLAN tag, then IPv4
        eth.extend_from_slice(&[0x45, 0, 0xff, 0xdc]); // total length 65500
        assert_eq!(ip_wire_len(linktype::ETHERNET, &eth), 18 + 65500);
        let v6 = [0x60, 0, 0, 0, 0x12, 0x34];
        assert_eq!(ip_wire_len(linktype::RAW, &v6), 40 + 0x1234);
        assert_eq!(ip_wire_len(linktype::RAW, &[]), 0);
    }

    #[test]
    fn registry_ids_are_stable() {
        let mut r = IfaceRegistry::default();
        assert_eq!(r.id("a"), 0);
        assert_eq!(r.id("b"), 1);
        assert_eq!(r.id("a"), 0);
    }

    #[test]
    fn lists_this_namespace() {
        let links = list_interfaces().unwrap_or_default();
        assert!(links.iter().all(|l| !l.name.is_empty()));
    }
}

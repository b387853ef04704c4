//! The one input type of the pure core: a captured frame with its timestamp and link type.
//!
//! A `RawFrame` borrows its bytes from whoever read them (file reader or live socket), so the
//! hot path never copies packet data. Timestamps are nanoseconds since the Unix epoch as the
//! capture recorded them; the core never reads a clock.

/// Nanoseconds since the Unix epoch, taken from the capture (never from the wall clock).
pub type TimestampNs = u64;

/// Identifies the interface a frame was captured on (pcapng interface index, or a live
/// interface number). Capture files with one interface use 0 throughout.
pub type IfaceId = u32;

/// libpcap LINKTYPE_* numbers podwire knows by name.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const PPP: u32 = 9;
    pub const RAW_BSD12: u32 = 12;
    pub const RAW_BSD14: u32 = 14;
    pub const PPP_HDLC: u32 = 50;
    pub const PPP_ETHER: u32 = 51;
    pub const RAW: u32 = 101;
    pub const C_HDLC: u32 = 104;
    pub const IEEE802_11: u32 = 105;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IEEE802_11_RADIOTAP: u32 = 127;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;

    /// A short human name for a link type (libpcap's names, lowercase).
    pub fn name(link: u32) -> String {
        match link {
            NULL => "null".into(),
            ETHERNET => "ethernet".into(),
            PPP => "ppp".into(),
            RAW_BSD12 | RAW_BSD14 | RAW => "raw".into(),
            PPP_HDLC => "ppp_hdlc".into(),
            PPP_ETHER => "pppoe".into(),
            C_HDLC => "c_hdlc".into(),
            IEEE802_11 => "ieee802_11".into(),
            LOOP => "loop".into(),
            LINUX_SLL => "linux_sll".into(),
            IEEE802_11_RADIOTAP => "ieee802_11_radiotap".into(),
            IPV4 => "ipv4".into(),
            IPV6 => "ipv6".into(),
            LINUX_SLL2 => "linux_sll2".into(),
            other => format!("linktype_{other}"),
        }
    }
}

/// One captured frame as handed to the engine.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    pub ts_ns: TimestampNs,
    pub iface: IfaceId,
    /// LINKTYPE_* of the interface the frame came from.
    pub link: u32,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture truncated it).
    pub orig_len: u32,
    pub data: &'a [u8],
}

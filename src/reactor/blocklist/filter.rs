//! The classic BPF program that drops connection requests from the
//! blocked sources, and putting it on a socket (Linux only; elsewhere the
//! kernel has no such filter and nothing is blocked).

use super::Source;

/// An instruction: (code, jump if true, jump if false, constant).
pub type Insn = (u16, u8, u8, u32);

// linux/filter.h's classic BPF, as libc spells it for Linux.
const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const ST: u16 = 0x02; // BPF_ST: A into scratch word k
const LD_MEM: u16 = 0x60; // BPF_LD | BPF_W | BPF_MEM: scratch word k into A
/// Loads at this offset plus k read the network (IP) header; plain ones
/// read the segment from its TCP header, where a TCP socket's filter
/// starts (SKF_NET_OFF).
const NET: u32 = 0xfff0_0000;
const PASS: u32 = u32::MAX;
const DROP: u32 = 0;
/// TCP's flags byte, and SYN and ACK in it.
const TCP_FLAGS: u32 = 13;
const SYN: u32 = 0x02;
const SYN_ACK: u32 = 0x12;

/// Drops a connection request (SYN without ACK) from any of `sources`,
/// passes every other packet.
pub fn program(sources: &[Source]) -> Vec<Insn> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for source in sources {
        match *source {
            Source::V4(a) => v4.push(a),
            Source::V6Prefix(p) => v6.push(p),
        }
    }
    let mut p = vec![
        (LD_B_ABS, 0, 0, TCP_FLAGS),
        (AND_K, 0, 0, SYN_ACK),
        (JEQ_K, 1, 0, SYN),
        (RET_K, 0, 0, PASS),
        // The IP version, from the header's first nibble.
        (LD_B_ABS, 0, 0, NET),
        (RSH_K, 0, 0, 4),
        (JEQ_K, 1, 0, 4),
        // To the IPv6 part: past the load, two per IPv4 source, and
        // the IPv4 part's pass (a jump's k counts from the next one).
        (JA, 0, 0, 1 + 2 * v4.len() as u32 + 1),
        (LD_W_ABS, 0, 0, NET + 12), // IPv4 source address
    ];
    for a in v4 {
        p.push((JEQ_K, 0, 1, a));
        p.push((RET_K, 0, 0, DROP));
    }
    p.push((RET_K, 0, 0, PASS));
    // The IPv6 source address's first two words (bytes 8 to 15), read
    // from the packet once and kept in scratch words: a load from the
    // packet is several instructions once the kernel has translated
    // it, and the kernel charges the filter by its translated length.
    p.extend([
        (LD_W_ABS, 0, 0, NET + 8),
        (ST, 0, 0, 0),
        (LD_W_ABS, 0, 0, NET + 12),
        (ST, 0, 0, 1),
    ]);
    for prefix in v6 {
        p.push((LD_MEM, 0, 0, 0));
        p.push((JEQ_K, 0, 3, (prefix >> 32) as u32));
        p.push((LD_MEM, 0, 0, 1));
        p.push((JEQ_K, 0, 1, prefix as u32));
        p.push((RET_K, 0, 0, DROP));
    }
    p.push((RET_K, 0, 0, PASS));
    p
}

#[cfg(target_os = "linux")]
pub fn install(socket: &socket2::Socket, sources: &[Source]) -> std::io::Result<()> {
    if sources.is_empty() {
        return match socket.detach_filter() {
            // No filter on it: nothing to take off.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        };
    }
    let program: Vec<socket2::SockFilter> = program(sources)
        .into_iter()
        .map(|(code, jt, jf, k)| socket2::SockFilter::new(code, jt, jf, k))
        .collect();
    socket.attach_filter(&program)
}

#[cfg(not(target_os = "linux"))]
pub fn install(_: &socket2::Socket, sources: &[Source]) -> std::io::Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "socket filters are Linux's",
    ))
}

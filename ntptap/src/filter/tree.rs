//! A parsed filter expression: primitives, relations over arithmetic, and `and`/`or`/`not`
//! over them, as pcap-filter(7) defines them.

use std::net::IpAddr;

/// A protocol qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// None given.
    Default,
    /// `ether` (also `link`, `fddi`, `tr`, `wlan`).
    Ether,
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
    /// `arp`.
    Arp,
    /// `rarp`.
    Rarp,
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
    /// `sctp`.
    Sctp,
    /// `icmp`.
    Icmp,
    /// `icmp6`.
    Icmp6,
    /// `igmp`.
    Igmp,
    /// `igrp`.
    Igrp,
    /// `pim`.
    Pim,
    /// `vrrp`.
    Vrrp,
    /// `carp`.
    Carp,
    /// `esp`.
    Esp,
    /// `ah`.
    Ah,
}

impl Proto {
    /// The qualifier a word names.
    #[must_use]
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "ether" | "link" | "fddi" | "tr" | "wlan" => Self::Ether,
            "ip" => Self::Ip,
            "ip6" => Self::Ip6,
            "arp" => Self::Arp,
            "rarp" => Self::Rarp,
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "sctp" => Self::Sctp,
            "icmp" => Self::Icmp,
            "icmp6" => Self::Icmp6,
            "igmp" => Self::Igmp,
            "igrp" => Self::Igrp,
            "pim" => Self::Pim,
            "vrrp" => Self::Vrrp,
            "carp" => Self::Carp,
            "esp" => Self::Esp,
            "ah" => Self::Ah,
            _ => return None,
        })
    }

    /// The IP protocol number of a transport qualifier, and whether it is looked for over
    /// IPv4, IPv6 or both (libpcap's `gen_proto_abbrev`).
    #[must_use]
    pub fn ip_protocol(self) -> Option<(u8, bool, bool)> {
        Some(match self {
            Self::Tcp => (6, true, true),
            Self::Udp => (17, true, true),
            Self::Sctp => (132, true, true),
            Self::Icmp => (1, true, false),
            Self::Icmp6 => (58, false, true),
            Self::Igmp => (2, true, false),
            Self::Igrp => (9, true, false),
            Self::Pim => (103, true, true),
            Self::Vrrp | Self::Carp => (112, true, false),
            Self::Esp => (50, true, true),
            Self::Ah => (51, true, true),
            _ => return None,
        })
    }
}

/// A direction qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `src or dst` (the default).
    SrcOrDst,
    /// `src`.
    Src,
    /// `dst`.
    Dst,
    /// `src and dst`.
    SrcAndDst,
}

/// One test of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prim {
    /// `[ip|ip6|arp|rarp] [src|dst] host ADDR`.
    Host {
        /// The protocol qualifier.
        proto: Proto,
        /// The direction qualifier.
        dir: Dir,
        /// The address (the network's first, for `net`).
        addr: IpAddr,
    },
    /// `[ip|ip6|arp|rarp] [src|dst] net NET/LEN`.
    Net {
        /// The protocol qualifier.
        proto: Proto,
        /// The direction qualifier.
        dir: Dir,
        /// The address (the network's first, for `net`).
        addr: IpAddr,
        /// The network's prefix length.
        prefix: u8,
    },
    /// `[ip|ip6] [tcp|udp|sctp] [src|dst] port[range] LO[-HI]`.
    Port {
        /// The protocol qualifier.
        proto: Proto,
        /// The direction qualifier.
        dir: Dir,
        /// The lowest port.
        lo: u16,
        /// The highest port (`lo` for `port`).
        hi: u16,
    },
    /// `ether [src|dst] host MAC`.
    EtherHost {
        /// The direction qualifier.
        dir: Dir,
        /// The MAC address.
        mac: [u8; 6],
    },
    /// `ether proto N`.
    EtherProto(u16),
    /// `[ip|ip6] proto N` (`None`: both).
    IpProto {
        /// Over IPv4.
        v4: bool,
        /// Over IPv6.
        v6: bool,
        /// The protocol number.
        number: u8,
    },
    /// `ip`, `ip6`, `arp`, `rarp`, `tcp`, `udp`, ... alone.
    Proto(Proto),
    /// `[ether] broadcast`.
    Broadcast,
    /// `[ether] multicast`.
    Multicast,
    /// `ip multicast`.
    IpMulticast,
    /// `ip6 multicast`.
    Ip6Multicast,
}

/// An arithmetic expression (a relation's side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arith {
    /// A number.
    Num(u32),
    /// The frame's length on the wire.
    Len,
    /// `proto[offset:size]`.
    Load {
        /// The protocol qualifier.
        proto: Proto,
        /// Offset from the start of that protocol's header.
        offset: Box<Arith>,
        /// Bytes loaded: 1, 2 or 4.
        size: u8,
    },
    /// `left op right`.
    Binary(Box<Arith>, ArithOp, Box<Arith>),
    /// `-value`.
    Neg(Box<Arith>),
}

/// A binary arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `&` (in arithmetic); `and` (in expressions).
    And,
    /// `|` (in arithmetic); `or` (in expressions).
    Or,
    /// `^`.
    Xor,
    /// `<<`.
    Shl,
    /// `>>`.
    Shr,
}

/// A relation's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// A filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `&` (in arithmetic); `and` (in expressions).
    And(Box<Expr>, Box<Expr>),
    /// `|` (in arithmetic); `or` (in expressions).
    Or(Box<Expr>, Box<Expr>),
    /// `not` or `!`.
    Not(Box<Expr>),
    /// A primitive.
    Prim(Prim),
    /// A relation between two arithmetic expressions.
    Rel(Arith, RelOp, Arith),
}

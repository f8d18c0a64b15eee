//! pcap-filter(7) syntax to a tree ([`super::tree`]): primitives with libpcap's qualifier
//! inheritance (`host a or b` is `host a or host b`), `and`/`or`/`not` with `and` binding
//! tighter, and relations over arithmetic (`udp[8] & 7 = 4`). What ntptap does not evaluate
//! is refused here, naming the primitive.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail};

use super::{
    lex::{Token, lex},
    names::{mac, named_constant, parse_number, port, refuse_unsupported},
    tree::{Arith, ArithOp, Dir, Expr, Prim, Proto, RelOp},
};

/// A primitive's kind (`host`, `net`, `port`, `portrange`), or none given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Default,
    Host,
    Net,
    Port,
    PortRange,
}

/// The qualifiers a primitive's value is read with, inherited by a bare value after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Qualifiers {
    /// The protocol qualifier.
    proto: Proto,
    /// The direction qualifier.
    dir: Dir,
    kind: Kind,
}

/// Parse `text` (an empty expression is an error: the caller has none).
pub fn parse(text: &str) -> anyhow::Result<Expr> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        last: None,
    };
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        bail!("unexpected '{}' in the expression", t.text());
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The qualifiers of the last primitive, for a bare value after `and`/`or`.
    last: Option<Qualifiers>,
}

/// Keywords that are not values (a bare word that is one of these is not inherited).
const KEYWORDS: [&str; 16] = [
    "and",
    "or",
    "not",
    "src",
    "dst",
    "host",
    "net",
    "port",
    "portrange",
    "proto",
    "mask",
    "broadcast",
    "multicast",
    "greater",
    "less",
    "len",
];

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_word() == Some(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, what: &str) -> anyhow::Result<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            Some(t) => bail!("expected {what}, found '{}'", t.text()),
            None => bail!("expected {what} at the end of the expression"),
        }
    }

    fn or(&mut self) -> anyhow::Result<Expr> {
        let mut left = self.and()?;
        while self.eat_word("or") || self.eat_punct("||") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> anyhow::Result<Expr> {
        let mut left = self.not()?;
        while self.eat_word("and") || self.eat_punct("&&") {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> anyhow::Result<Expr> {
        if self.eat_word("not") || self.eat_punct("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if matches!(self.peek(), Some(Token::Punct("("))) {
            // A parenthesis opens either a group of primitives or an arithmetic expression
            // (`(ip[2:2] - 20) > 100`): try the group, and fall back to a relation.
            let save = (self.pos, self.last);
            self.pos += 1;
            if let Ok(inner) = self.or()
                && self.eat_punct(")")
                && !self.relation_follows()
            {
                return Ok(inner);
            }
            (self.pos, self.last) = save;
            return self.relation();
        }
        self.primitive()
    }

    fn relation_follows(&self) -> bool {
        is_operator(self.peek())
    }

    /// A primitive, or a relation starting with an accessor, `len` or a number.
    fn primitive(&mut self) -> anyhow::Result<Expr> {
        let Some(word) = self.peek_word().map(str::to_owned) else {
            match self.peek() {
                Some(t) => bail!("unexpected '{}' in the expression", t.text()),
                None => bail!("the expression ends where a primitive was expected"),
            }
        };
        refuse_unsupported(&word)?;
        // A relation: `len ...`, `NUMBER ...`, `proto[...] ...`.
        let accessor = Proto::from_word(&word).is_some()
            && matches!(self.tokens.get(self.pos + 1), Some(Token::Punct("[")));
        if word == "len" || accessor || parse_number(&word).is_some() && self.is_relation_ahead() {
            return self.relation();
        }
        match word.as_str() {
            "greater" | "less" => {
                self.pos += 1;
                let n = self.word("a length")?;
                let n = parse_number(&n).ok_or_else(|| anyhow!("{n:?} is not a length"))?;
                let op = if word == "greater" {
                    RelOp::Ge
                } else {
                    RelOp::Le
                };
                return Ok(Expr::Rel(Arith::Len, op, Arith::Num(n)));
            }
            "broadcast" => {
                self.pos += 1;
                return Ok(Expr::Prim(Prim::Broadcast));
            }
            "multicast" => {
                self.pos += 1;
                return Ok(Expr::Prim(Prim::Multicast));
            }
            _ => {}
        }
        let start = self.pos;
        let mut q = Qualifiers {
            proto: Proto::Default,
            dir: Dir::SrcOrDst,
            kind: Kind::Default,
        };
        let mut qualified = false;
        if let Some(proto) = self.peek_word().and_then(Proto::from_word) {
            self.pos += 1;
            q.proto = proto;
            qualified = true;
        }
        // `ip proto N`, `ether proto N`, `proto N`.
        if self.eat_word("proto") {
            return self.proto_number(q.proto);
        }
        // `ether broadcast`, `ip multicast`...
        if qualified && let Some(prim) = self.casting(q.proto)? {
            return Ok(Expr::Prim(prim));
        }
        if let Some(dir) = self.direction() {
            q.dir = dir;
            qualified = true;
        }
        q.kind = match self.peek_word() {
            Some("host") => Kind::Host,
            Some("net") => Kind::Net,
            Some("port") => Kind::Port,
            Some("portrange") => Kind::PortRange,
            _ => Kind::Default,
        };
        if q.kind != Kind::Default {
            self.pos += 1;
            qualified = true;
        }
        // A protocol alone (`udp`, `ip6`): no value follows.
        let value_follows =
            matches!(self.peek(), Some(Token::Word(w)) if !KEYWORDS.contains(&w.as_str()));
        if q.kind == Kind::Default && q.dir == Dir::SrcOrDst && q.proto != Proto::Default {
            if !value_follows || self.pos == start {
                return Ok(Expr::Prim(Prim::Proto(q.proto)));
            }
            // `ether 00:11:...`? libpcap wants `ether host`.
            return Ok(Expr::Prim(Prim::Proto(q.proto)));
        }
        if !qualified {
            // A bare value: the last primitive's qualifiers (libpcap's inheritance).
            let Some(last) = self.last else {
                let value = self.word("a primitive")?;
                bail!(
                    "'{}' is not a primitive ntptap evaluates: give host, net, port, a \
                     protocol (ip, ip6, udp, tcp, icmp, arp...) or a byte test",
                    crate::escape::terminal(&value)
                );
            };
            q = last;
        }
        let value = self.word("an address, network or port")?;
        let prim = self.value(q, &value)?;
        self.last = Some(q);
        Ok(Expr::Prim(prim))
    }

    /// `broadcast` or `multicast` after a protocol qualifier.
    fn casting(&mut self, proto: Proto) -> anyhow::Result<Option<Prim>> {
        let prim = match (proto, self.peek_word()) {
            (Proto::Ether, Some("broadcast")) => Prim::Broadcast,
            (Proto::Ether, Some("multicast")) => Prim::Multicast,
            (Proto::Ip, Some("multicast")) => Prim::IpMulticast,
            (Proto::Ip6, Some("multicast")) => Prim::Ip6Multicast,
            (Proto::Ip, Some("broadcast")) => bail!(
                "'ip broadcast' needs the interface's netmask, which ntptap does not look up: \
                 use 'ip dst 255.255.255.255' or 'ip dst X.Y.Z.255'"
            ),
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(prim))
    }

    /// `src`, `dst`, `src or dst`, `src and dst`, if one comes next.
    fn direction(&mut self) -> Option<Dir> {
        match self.peek_word() {
            Some("src") => {
                self.pos += 1;
                // `src or dst`, `src and dst`: only when `dst` follows.
                let joined = matches!(self.peek_word(), Some("or" | "and"))
                    && self.tokens.get(self.pos + 1) == Some(&Token::Word("dst".into()));
                if !joined {
                    return Some(Dir::Src);
                }
                let dir = if self.eat_word("or") {
                    Dir::SrcOrDst
                } else {
                    self.pos += 1;
                    Dir::SrcAndDst
                };
                self.pos += 1;
                Some(dir)
            }
            Some("dst") => {
                self.pos += 1;
                Some(Dir::Dst)
            }
            _ => None,
        }
    }

    fn is_relation_ahead(&self) -> bool {
        is_operator(self.tokens.get(self.pos + 1))
    }

    fn proto_number(&mut self, on: Proto) -> anyhow::Result<Expr> {
        let value = self.word("a protocol number")?;
        // A protocol's name is a keyword: libpcap wants it escaped (`ip proto \udp`).
        if Proto::from_word(&value).is_some() {
            bail!("proto {value}: {value} is a keyword here; write \\{value}, as tcpdump wants");
        }
        let name = value.trim_start_matches('\\');
        if on == Proto::Ether {
            let number = match name {
                "ip" => 0x0800,
                "ip6" => 0x86dd,
                "arp" => 0x0806,
                "rarp" => 0x8035,
                _ => parse_number(name)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| anyhow!("{value:?} is not an EtherType"))?,
            };
            if number <= 1500 {
                bail!(
                    "ether proto {number}: values up to 1500 are 802.3 lengths (LLC frames), \
                     which ntptap's expressions do not decode"
                );
            }
            return Ok(Expr::Prim(Prim::EtherProto(number)));
        }
        let number = match Proto::from_word(name).and_then(Proto::ip_protocol) {
            Some((n, _, _)) => n,
            None => parse_number(name)
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| anyhow!("{value:?} is not an IP protocol number"))?,
        };
        let (v4, v6) = match on {
            Proto::Default => (true, true),
            Proto::Ip => (true, false),
            Proto::Ip6 => (false, true),
            other => bail!("'{other:?} proto' is not a primitive; use ip proto or ip6 proto"),
        };
        Ok(Expr::Prim(Prim::IpProto { v4, v6, number }))
    }

    fn value(&mut self, q: Qualifiers, value: &str) -> anyhow::Result<Prim> {
        let Qualifiers { proto, dir, kind } = q;
        match kind {
            Kind::Port | Kind::PortRange => {
                if !matches!(
                    proto,
                    Proto::Default | Proto::Ip | Proto::Ip6 | Proto::Tcp | Proto::Udp | Proto::Sctp
                ) {
                    bail!("'{proto:?} port' is not a primitive: ports are tcp, udp or sctp");
                }
                let ((lo, lo_on), (hi, hi_on)) = if kind == Kind::PortRange {
                    let (lo, hi) = value
                        .split_once('-')
                        .ok_or_else(|| anyhow!("portrange {value:?}: give LOW-HIGH"))?;
                    (port(lo)?, port(hi)?)
                } else {
                    let p = port(value)?;
                    (p, p)
                };
                // A service name known over one transport only means that one, as libpcap
                // reads /etc/services (`port ntp` is `udp port 123`).
                let proto = match (proto, lo_on.or(hi_on)) {
                    (Proto::Default, Some(only)) => only,
                    (Proto::Tcp | Proto::Udp, Some(only)) if only != proto => bail!(
                        "port '{}' is {}",
                        crate::escape::terminal(value),
                        if only == Proto::Udp { "udp" } else { "tcp" }
                    ),
                    _ => proto,
                };
                let (lo, hi) = (lo.min(hi), lo.max(hi));
                Ok(Prim::Port { proto, dir, lo, hi })
            }
            Kind::Net => {
                let (addr, prefix) = self.network(value)?;
                check_proto_for_address(proto, addr)?;
                Ok(Prim::Net {
                    proto,
                    dir,
                    addr,
                    prefix,
                })
            }
            Kind::Host | Kind::Default => {
                if proto == Proto::Ether {
                    let mac = mac(value)?;
                    if dir == Dir::SrcAndDst || dir == Dir::SrcOrDst || kind == Kind::Host {
                        return Ok(Prim::EtherHost { dir, mac });
                    }
                    return Ok(Prim::EtherHost { dir, mac });
                }
                if kind == Kind::Default && !value.contains(['.', ':']) {
                    if let Some(n) = parse_number(value)
                        && u16::try_from(n).is_ok()
                    {
                        bail!(
                            "'{}' alone is not a primitive: did you mean port {n}?",
                            crate::escape::terminal(value)
                        );
                    }
                    bail!(
                        "'{}' is not a primitive ntptap evaluates",
                        crate::escape::terminal(value)
                    );
                }
                let addr: IpAddr = value.parse().map_err(|_| {
                    anyhow!(
                        "host {}: ntptap takes addresses, not names, in expressions (it \
                         resolves nothing)",
                        crate::escape::terminal(value)
                    )
                })?;
                check_proto_for_address(proto, addr)?;
                Ok(Prim::Host { proto, dir, addr })
            }
        }
    }

    /// `NET/LEN`, `NET mask MASK`, or a partial IPv4 network (`10`, `10.1`, `10.1.2`).
    fn network(&mut self, value: &str) -> anyhow::Result<(IpAddr, u8)> {
        if let Some((addr, len)) = value.split_once('/') {
            let addr: IpAddr = parse_net_address(addr)?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| anyhow!("net {value}: the prefix length must be 0 to {max}"))?;
            return check_network(addr, prefix, value);
        }
        if self.eat_word("mask") {
            let mask = self.word("a netmask")?;
            let mask: Ipv4Addr = mask
                .parse()
                .map_err(|_| anyhow!("mask {mask:?} is not an IPv4 netmask"))?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                bail!("mask {mask} is not contiguous");
            }
            let addr = parse_net_address(value)?;
            if !addr.is_ipv4() {
                bail!("mask is for IPv4 networks; give an IPv6 one as NET/LEN");
            }
            return check_network(addr, bits.leading_ones() as u8, value);
        }
        // 10 -> 10.0.0.0/8, 10.1 -> /16, 10.1.2 -> /24, 10.1.2.3 -> /32.
        if !value.contains(':') {
            let parts: Vec<&str> = value.split('.').collect();
            if parts.len() <= 4 {
                let mut octets = [0u8; 4];
                for (o, p) in octets.iter_mut().zip(&parts) {
                    *o = p
                        .parse()
                        .map_err(|_| anyhow!("net {value:?} is not a network"))?;
                }
                return Ok((IpAddr::V4(Ipv4Addr::from(octets)), 8 * parts.len() as u8));
            }
        }
        let addr: Ipv6Addr = value
            .parse()
            .map_err(|_| anyhow!("net {value:?} is not a network"))?;
        Ok((IpAddr::V6(addr), 128))
    }

    /// `arith relop arith`.
    fn relation(&mut self) -> anyhow::Result<Expr> {
        let left = self.arith(0)?;
        let op = match self.next() {
            Some(Token::Punct("=" | "==")) => RelOp::Eq,
            Some(Token::Punct("!=")) => RelOp::Ne,
            Some(Token::Punct("<")) => RelOp::Lt,
            Some(Token::Punct("<=")) => RelOp::Le,
            Some(Token::Punct(">")) => RelOp::Gt,
            Some(Token::Punct(">=")) => RelOp::Ge,
            Some(t) => bail!(
                "expected a comparison (=, !=, <, >...), found '{}'",
                t.text()
            ),
            None => bail!("the expression ends where a comparison was expected"),
        };
        let right = self.arith(0)?;
        Ok(Expr::Rel(left, op, right))
    }

    /// Precedence climbing, libpcap's levels: | ^ < & < << >> < + - < * / %.
    fn arith(&mut self, level: u8) -> anyhow::Result<Arith> {
        const LEVELS: [&[(&str, ArithOp)]; 4] = [
            &[("|", ArithOp::Or), ("^", ArithOp::Xor)],
            &[("&", ArithOp::And)],
            &[
                ("<<", ArithOp::Shl),
                (">>", ArithOp::Shr),
                ("+", ArithOp::Add),
                ("-", ArithOp::Sub),
            ],
            &[
                ("*", ArithOp::Mul),
                ("/", ArithOp::Div),
                ("%", ArithOp::Mod),
            ],
        ];
        let Some(ops) = LEVELS.get(usize::from(level)) else {
            return self.unary();
        };
        let mut left = self.arith(level + 1)?;
        loop {
            let op = match self.peek() {
                Some(Token::Punct(p)) => ops.iter().find(|(s, _)| s == p).map(|(_, op)| *op),
                _ => None,
            };
            let Some(op) = op else { break };
            self.pos += 1;
            let right = self.arith(level + 1)?;
            left = Arith::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> anyhow::Result<Arith> {
        if self.eat_punct("-") {
            return Ok(Arith::Neg(Box::new(self.unary()?)));
        }
        if self.eat_punct("(") {
            let inner = self.arith(0)?;
            if !self.eat_punct(")") {
                bail!("a ')' is missing in the arithmetic");
            }
            return Ok(inner);
        }
        let word = self.word("a number, len or proto[offset]")?;
        if word == "len" {
            return Ok(Arith::Len);
        }
        if let Some(proto) = Proto::from_word(&word)
            && self.eat_punct("[")
        {
            let offset = self.arith(0)?;
            let size = if self.eat_punct(":") {
                let s = self.word("a size (1, 2 or 4)")?;
                match s.as_str() {
                    "1" => 1,
                    "2" => 2,
                    "4" => 4,
                    _ => bail!("{word}[...:{s}]: the size is 1, 2 or 4"),
                }
            } else {
                1
            };
            if !self.eat_punct("]") {
                bail!("a ']' is missing after {word}[");
            }
            if matches!(proto, Proto::Rarp) {
                bail!("rarp[...] is not a byte test ntptap evaluates");
            }
            return Ok(Arith::Load {
                proto,
                offset: Box::new(offset),
                size,
            });
        }
        if let Some(n) = parse_number(&word).or_else(|| named_constant(&word)) {
            return Ok(Arith::Num(n));
        }
        bail!(
            "'{}' is not a number, len or an accessor such as ip[0]",
            crate::escape::terminal(&word)
        )
    }
}

/// A comparison or arithmetic operator: what tells a relation from a primitive.
fn is_operator(token: Option<&Token>) -> bool {
    matches!(
        token,
        Some(Token::Punct(
            "=" | "=="
                | "!="
                | "<"
                | "<="
                | ">"
                | ">="
                | "+"
                | "-"
                | "*"
                | "/"
                | "%"
                | "&"
                | "|"
                | "^"
                | "<<"
                | ">>"
        ))
    )
}

fn check_proto_for_address(proto: Proto, addr: IpAddr) -> anyhow::Result<()> {
    match (proto, addr) {
        (Proto::Default, _)
        | (Proto::Ip | Proto::Arp | Proto::Rarp, IpAddr::V4(_))
        | (Proto::Ip6, IpAddr::V6(_)) => Ok(()),
        (Proto::Ip | Proto::Arp | Proto::Rarp, IpAddr::V6(_)) => {
            bail!("{addr} is an IPv6 address: use ip6 host/net")
        }
        (Proto::Ip6, IpAddr::V4(_)) => bail!("{addr} is an IPv4 address: use ip host/net"),
        (other, _) => bail!(
            "'{other:?} host' and '{other:?} net' are not primitives: the transport protocols \
             have ports; give e.g. 'udp and host {addr}'"
        ),
    }
}

fn check_network(addr: IpAddr, prefix: u8, text: &str) -> anyhow::Result<(IpAddr, u8)> {
    let host_bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) & (u128::from(u32::MAX) >> prefix),
        IpAddr::V6(a) => u128::from(a) & u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0),
    };
    if host_bits != 0 {
        bail!("net {text}: non-network bits set (libpcap refuses it too)");
    }
    Ok((addr, prefix))
}

fn parse_net_address(text: &str) -> anyhow::Result<IpAddr> {
    if let Ok(a) = text.parse::<IpAddr>() {
        return Ok(a);
    }
    // A partial IPv4 network before /LEN: 10/8, 10.1/16.
    let parts: Vec<&str> = text.split('.').collect();
    let mut octets = [0u8; 4];
    if parts.len() < 4 {
        for (o, p) in octets.iter_mut().zip(&parts) {
            *o = p
                .parse()
                .map_err(|_| anyhow!("{text:?} is not a network"))?;
        }
        return Ok(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    bail!("{text:?} is not a network")
}

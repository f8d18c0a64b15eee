//! Protocol enums that map both ways; unknown values survive as `Unknown(n)` where the field
//! is wider than its known values.

/// Leap indicator (RFC 5905 §7.3, Figure 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leap {
    /// 0: no warning.
    NoWarning,
    /// 1: last minute of the day has 61 seconds.
    AddSecond,
    /// 2: last minute of the day has 59 seconds.
    DeleteSecond,
    /// 3: unknown (clock unsynchronized).
    Unsynchronized,
}

impl Leap {
    /// From the two top bits of the first header byte.
    #[must_use]
    pub fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Leap::NoWarning,
            1 => Leap::AddSecond,
            2 => Leap::DeleteSecond,
            _ => Leap::Unsynchronized,
        }
    }
    /// The two-bit value.
    #[must_use]
    pub fn to_bits(self) -> u8 {
        self as u8
    }
    /// A short description, as in tcpdump's verbose output.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Leap::NoWarning => "",
            Leap::AddSecond => "+1s",
            Leap::DeleteSecond => "-1s",
            Leap::Unsynchronized => "clock unsynchronized",
        }
    }
}

/// Association mode (RFC 5905 §7.3, Figure 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// 0: reserved.
    Reserved,
    /// 1: symmetric active.
    SymmetricActive,
    /// 2: symmetric passive.
    SymmetricPassive,
    /// 3: client.
    Client,
    /// 4: server.
    Server,
    /// 5: broadcast.
    Broadcast,
    /// 6: NTP control message (RFC 9327).
    Control,
    /// 7: reserved for private use (ntpd's mode 7 requests).
    Private,
}

impl Mode {
    /// From the three low bits of the first header byte.
    #[must_use]
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }
    /// The three-bit value.
    #[must_use]
    pub fn to_bits(self) -> u8 {
        self as u8
    }
    /// The name tcpdump prints on its one-line summary (print-ntp.c `ntp_mode_values`).
    #[must_use]
    pub fn tcpdump_name(self) -> &'static str {
        match self {
            Mode::Reserved => "unspecified",
            Mode::SymmetricActive => "symmetric active",
            Mode::SymmetricPassive => "symmetric passive",
            Mode::Client => "Client",
            Mode::Server => "Server",
            Mode::Broadcast => "Broadcast",
            Mode::Control => "Control Message",
            Mode::Private => "Reserved",
        }
    }
}

/// The registered kiss codes (RFC 5905 §7.4, Figure 13; NTSN from RFC 8915 §5.7) and their
/// meanings.
const KISS_CODES: [(&[u8; 4], &str); 15] = [
    (b"ACST", "the association belongs to a unicast server"),
    (b"AUTH", "server authentication failed"),
    (b"AUTO", "autokey sequence failed"),
    (b"BCST", "the association belongs to a broadcast server"),
    (
        b"CRYP",
        "cryptographic authentication or identification failed",
    ),
    (b"DENY", "access denied by remote server"),
    (b"DROP", "lost peer in symmetric mode"),
    (b"RSTR", "access denied due to local policy"),
    (
        b"INIT",
        "the association has not yet synchronized for the first time",
    ),
    (
        b"MCST",
        "the association belongs to a dynamically discovered server",
    ),
    (b"NKEY", "no key found"),
    (b"NTSN", "NTS negative acknowledgment (RFC 8915)"),
    (
        b"RATE",
        "rate exceeded: the server has temporarily denied access",
    ),
    (
        b"RMOT",
        "alteration of association from a remote host running ntpdc",
    ),
    (b"STEP", "a step change in system time has occurred"),
];

/// Meaning of a kiss code (RFC 5905 §7.4, Figure 13), if it is one of the registered ones.
#[must_use]
pub fn kiss_code_meaning(code: &[u8; 4]) -> Option<&'static str> {
    KISS_CODES.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// A kiss code as a label, counter key or table column: the registered code, or `other`.
/// Anyone can forge a kiss code; this keeps every set keyed by one to 16 values.
#[must_use]
pub fn kiss_label(code: &[u8; 4]) -> &'static str {
    KISS_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .and_then(|(c, _)| std::str::from_utf8(*c).ok())
        .unwrap_or("other")
}

fn table(names: &'static [&'static str], i: u8) -> &'static str {
    names.get(usize::from(i)).copied().unwrap_or("reserved")
}

/// Clock source in a mode 6 system status word (RFC 9327 §2.1.1).
#[must_use]
pub fn clock_source_name(source: u8) -> &'static str {
    table(
        &[
            "unspecified or unknown",
            "calibrated atomic clock",
            "VLF or LF radio",
            "HF radio",
            "UHF radio",
            "local net",
            "UDP/NTP",
            "UDP/TIME",
            "eyeball-and-wristwatch",
            "telephone modem",
        ],
        source,
    )
}

/// System event code (RFC 9327 §2.1.2).
#[must_use]
pub fn system_event_name(code: u8) -> &'static str {
    table(
        &[
            "unspecified",
            "frequency correction file not available",
            "frequency set from file or stepped",
            "spike detected",
            "frequency training started",
            "clock synchronized",
            "system restarted",
            "panic stop",
            "no system peer",
            "leap second armed",
            "leap second disarmed",
            "leap second inserted or deleted",
            "clock stepped",
            "kernel discipline status changed",
            "leapseconds table loaded",
            "leapseconds table outdated",
        ],
        code,
    )
}

/// The five peer status bits (RFC 9327 §2.2.1), as a list.
#[must_use]
pub fn peer_status_text(status: u8) -> String {
    let names = [
        "broadcast",
        "reachable",
        "authentic",
        "auth enabled",
        "configured",
    ];
    let set: Vec<&str> = names
        .iter()
        .enumerate()
        .filter(|(bit, _)| status & (1 << bit) != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.join(", ")
    }
}

/// Peer selection (RFC 9327 §2.2.2).
#[must_use]
pub fn peer_selection_name(selection: u8) -> &'static str {
    table(
        &[
            "rejected",
            "discarded by intersection",
            "discarded by table overflow",
            "discarded by cluster",
            "included by combine",
            "backup",
            "system peer",
            "PPS peer",
        ],
        selection,
    )
}

/// Peer event code (RFC 9327 §2.2.3).
#[must_use]
pub fn peer_event_name(code: u8) -> &'static str {
    table(
        &[
            "unspecified",
            "association mobilized",
            "association demobilized",
            "peer unreachable",
            "peer reachable",
            "association restarted",
            "no reply",
            "rate limit exceeded (KoD RATE)",
            "access denied (KoD DENY)",
            "leap second armed by peer",
            "became system peer",
            "reference clock event",
            "authentication failed",
            "popcorn spike suppressed",
            "entering interleaved mode",
            "recovering from interleave error",
        ],
        code,
    )
}

/// Clock status code (RFC 9327 §2.3).
#[must_use]
pub fn clock_status_name(code: u8) -> &'static str {
    table(
        &[
            "nominal",
            "reply timeout",
            "bad reply format",
            "hardware or software fault",
            "propagation failure",
            "bad date format or value",
            "bad time format or value",
        ],
        code,
    )
}

/// Error code of a mode 6 error response (RFC 9327 §2.4).
#[must_use]
pub fn control_error_name(code: u8) -> &'static str {
    table(
        &[
            "unspecified",
            "authentication failure",
            "invalid message length or format",
            "invalid opcode",
            "unknown association identifier",
            "unknown variable name",
            "invalid variable value",
            "administratively prohibited",
        ],
        code,
    )
}

/// Implementation number of a mode 7 message (ntpd `include/ntp_request.h`).
#[must_use]
pub fn implementation_name(implementation: u8) -> &'static str {
    match implementation {
        0 => "UNIV",
        2 => "XNTPD_OLD",
        3 => "XNTPD",
        _ => "unknown",
    }
}

/// IANA "NTP Extension Field Types" names.
#[must_use]
pub fn extension_name(field_type: u16) -> Option<&'static str> {
    Some(match field_type {
        0x0104 => "Unique Identifier",
        0x0204 => "NTS Cookie",
        0x0304 => "NTS Cookie Placeholder",
        0x0404 => "NTS Authenticator and Encrypted Extension Fields",
        0x2005 => "Checksum Complement",
        0x0002 => "No-Operation Request",
        0x8002 => "No-Operation Response",
        0xC002 => "No-Operation Error Response",
        0x0102 => "Association Message Request",
        0x8102 => "Association Message Response",
        0xC102 => "Association Message Error Response",
        0x0202 => "Certificate Message Request",
        0x8202 => "Certificate Message Response",
        0xC202 => "Certificate Message Error Response",
        0x0302 => "Cookie Message Request",
        0x8302 => "Cookie Message Response",
        0xC302 => "Cookie Message Error Response",
        0x0402 => "Autokey Message Request",
        0x8402 => "Autokey Message Response",
        0xC402 => "Autokey Message Error Response",
        0x0502 => "Leapseconds Value Message Request",
        0x8502 => "Leapseconds Value Message Response",
        0xC502 => "Leapseconds Value Message Error Response",
        0x0602 => "Sign Message Request",
        0x8602 => "Sign Message Response",
        0xC602 => "Sign Message Error Response",
        0x0702 => "IFF Identity Message Request",
        0x8702 => "IFF Identity Message Response",
        0xC702 => "IFF Identity Message Error Response",
        0x0802 => "GQ Identity Message Request",
        0x8802 => "GQ Identity Message Response",
        0xC802 => "GQ Identity Message Error Response",
        0x0902 => "MV Identity Message Request",
        0x8902 => "MV Identity Message Response",
        0xC902 => "MV Identity Message Error Response",
        _ => return None,
    })
}

/// Names of mode 7 request codes (ntpd `include/ntp_request.h`).
#[must_use]
pub fn private_request_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 45] = [
        "PEER_LIST",
        "PEER_LIST_SUM",
        "PEER_INFO",
        "PEER_STATS",
        "SYS_INFO",
        "SYS_STATS",
        "IO_STATS",
        "MEM_STATS",
        "LOOP_INFO",
        "TIMER_STATS",
        "CONFIG",
        "UNCONFIG",
        "SET_SYS_FLAG",
        "CLR_SYS_FLAG",
        "MONITOR",
        "NOMONITOR",
        "GET_RESTRICT",
        "RESADDFLAGS",
        "RESSUBFLAGS",
        "UNRESTRICT",
        "MON_GETLIST",
        "RESET_STATS",
        "RESET_PEER",
        "REREAD_KEYS",
        "DO_DIRTY_HACK",
        "DONT_DIRTY_HACK",
        "TRUSTKEY",
        "UNTRUSTKEY",
        "AUTHINFO",
        "TRAPS",
        "ADD_TRAP",
        "CLR_TRAP",
        "REQUEST_KEY",
        "CONTROL_KEY",
        "GET_CTLSTATS",
        "GET_LEAPINFO",
        "GET_CLOCKINFO",
        "SET_CLKFUDGE",
        "GET_KERNEL",
        "GET_CLKBUGINFO",
        "SET_PRECISION",
        "MON_GETLIST_1",
        "HOSTNAME_ASSOCID",
        "IF_STATS",
        "IF_RELOAD",
    ];
    NAMES.get(usize::from(code)).copied()
}

/// Names of mode 6 opcodes (RFC 9327 §2, and ntpd's additions).
#[must_use]
pub fn control_opcode_name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        1 => "READSTAT",
        2 => "READVAR",
        3 => "WRITEVAR",
        4 => "READCLOCK",
        5 => "WRITECLOCK",
        6 => "SETTRAP",
        7 => "ASYNCMSG",
        8 => "CONFIGURE",
        9 => "SAVECONFIG",
        10 => "READ_MRU",
        11 => "READ_ORDLIST_A",
        12 => "REQ_NONCE",
        31 => "UNSETTRAP",
        _ => return None,
    })
}

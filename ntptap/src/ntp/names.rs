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

/// Meaning of a kiss code (RFC 5905 §7.4, Figure 13), if it is one of the registered ones.
#[must_use]
pub fn kiss_code_meaning(code: &[u8; 4]) -> Option<&'static str> {
    Some(match code {
        b"ACST" => "the association belongs to a unicast server",
        b"AUTH" => "server authentication failed",
        b"AUTO" => "autokey sequence failed",
        b"BCST" => "the association belongs to a broadcast server",
        b"CRYP" => "cryptographic authentication or identification failed",
        b"DENY" => "access denied by remote server",
        b"DROP" => "lost peer in symmetric mode",
        b"RSTR" => "access denied due to local policy",
        b"INIT" => "the association has not yet synchronized for the first time",
        b"MCST" => "the association belongs to a dynamically discovered server",
        b"NKEY" => "no key found",
        b"NTSN" => "NTS negative acknowledgment (RFC 8915)",
        b"RATE" => "rate exceeded: the server has temporarily denied access",
        b"RMOT" => "alteration of association from a remote host running ntpdc",
        b"STEP" => "a step change in system time has occurred",
        _ => return None,
    })
}

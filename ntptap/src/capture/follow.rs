//! `-i any` follows interfaces as they come and go: a netlink socket subscribed to the
//! kernel's link events (`RTMGRP_LINK`) wakes the capture, which then compares the interfaces
//! of the namespace with those it has attached. The messages themselves are not parsed: the
//! list is read again, so a missed or coalesced event (the socket's buffer overflowed) costs
//! nothing but a rescan.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};

/// `RTMGRP_LINK`: the multicast group of link (interface) events.
const RTMGRP_LINK: u32 = 1;

/// A subscription to the kernel's link events in this network namespace.
pub struct LinkEvents {
    fd: OwnedFd,
}

impl LinkEvents {
    /// Subscribe. Needs no privilege.
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK))?;
        Ok(Self { fd })
    }

    /// Read every pending message; whether there was any (or the kernel dropped some, which
    /// calls for a rescan all the same).
    #[must_use]
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => return any,
                Ok(_) | Err(nix::errno::Errno::ENOBUFS) => any = true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return true,
            }
        }
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for LinkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

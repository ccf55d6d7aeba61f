//! Waiting for a capture handle to become readable, with a timeout.
//!
//! libpcap's own read timeout does not fire on an idle interface with TPACKET_V3 (the
//! kernel retires no empty block), so a blocking read could wait forever and never see
//! the stop request. The capture therefore runs in non-blocking mode and waits here.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Waits until `source` is readable or `timeout` passes; returns whether it is readable.
pub fn readable(source: &impl AsRawFd, timeout: Duration) -> bool {
    // SAFETY: the descriptor belongs to `source`, which the caller keeps alive (and
    // open) for the whole call, as the borrow's lifetime requires.
    let fd = unsafe { BorrowedFd::borrow_raw(source.as_raw_fd()) };
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

//! The host's thin layer over the operating system: everything here is `unsafe` inside and
//! safe outside, with one Unix and one Windows version of each function.
//!
//! * [`poll`]: wait until sockets are readable (`poll(2)` / `WSAPoll`, which share the
//!   `pollfd` layout except for the width of the socket field).
//! * [`install_stop_handler`]: Ctrl-C / SIGTERM set a flag (`sigaction` /
//!   `SetConsoleCtrlHandler`).
//! * [`set_last_error`]: how a callback reports a Win32 error code to the extension
//!   (`SetLastError` on Windows; `errno` elsewhere, so `io::Error::last_os_error()` reads it
//!   back on both).
//! * [`read_file_at`]: read from the file handle an extension passes to
//!   HSE_REQ_TRANSMIT_FILE (a `HANDLE` on Windows, a file descriptor cast to a pointer on Unix).
//! * [`install_crash_report`]: one line on stderr when extension code crashes the process.
//! * [`raise_open_file_limit`]: the soft limit on open files up to the hard one (Unix), so
//!   that `--max-connections`, not the descriptor limit, decides who is refused.
//! * [`ImpersonationToken`]: the token HSE_REQ_GET_IMPERSONATION_TOKEN hands out (NULL, or
//!   on Windows a duplicate of the host's own token).
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

/// Raises the soft limit on open file descriptors to the hard limit (Unix; Windows has no
/// such limit on sockets). Returns the limit now in force, if there is one.
#[cfg(unix)]
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit only reads the struct; raising the soft limit up to the hard
        // one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
    Some(limit.rlim_cur as u64)
}
#[cfg(windows)]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// The raw socket a [`PollFd`] watches.
#[cfg(unix)]
pub type RawSocket = std::os::unix::io::RawFd;
#[cfg(windows)]
pub type RawSocket = std::os::windows::io::RawSocket;

/// The raw socket of a std socket type.
#[cfg(unix)]
pub fn raw_socket<S: std::os::unix::io::AsRawFd>(s: &S) -> RawSocket {
    s.as_raw_fd()
}
#[cfg(windows)]
pub fn raw_socket<S: std::os::windows::io::AsRawSocket>(s: &S) -> RawSocket {
    s.as_raw_socket()
}

/// One entry of a poll set: `struct pollfd` on Unix, `WSAPOLLFD` on Windows. (Linux uses
/// [`Epoll`] instead; the portable version stays compiled and unit-tested there.)
#[cfg_attr(target_os = "linux", allow(dead_code))]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    #[cfg(unix)]
    fd: libc::c_int,
    #[cfg(windows)]
    fd: usize,
    events: i16,
    revents: i16,
}

#[cfg(unix)]
#[cfg_attr(target_os = "linux", allow(dead_code))]
const READABLE: i16 = libc::POLLIN;
#[cfg(unix)]
const WRITABLE: i16 = libc::POLLOUT;
/// POLLWRNORM.
#[cfg(windows)]
const WRITABLE: i16 = 0x0010;
/// POLLRDNORM: WSAPoll rejects POLLIN's POLLRDBAND half on some stacks; RDNORM is enough.
#[cfg(windows)]
const READABLE: i16 = 0x0100;

#[cfg_attr(target_os = "linux", allow(dead_code))]
impl PollFd {
    /// Watches `socket` for readability (including end of stream and errors).
    pub fn readable(socket: RawSocket) -> PollFd {
        #[cfg(unix)]
        let fd = socket;
        #[cfg(windows)]
        let fd = socket as usize;
        PollFd {
            fd,
            events: READABLE,
            revents: 0,
        }
    }

    /// Watches `socket` for room to write (and errors).
    pub fn writable(socket: RawSocket) -> PollFd {
        PollFd {
            events: WRITABLE,
            ..PollFd::readable(socket)
        }
    }

    /// Whether the last [`poll`] reported anything for this socket (data, hang-up, error).
    pub fn ready(&self) -> bool {
        self.revents != 0
    }
}

#[cfg(windows)]
#[link(name = "ws2_32")]
unsafe extern "system" {
    fn WSAPoll(fds: *mut PollFd, count: u32, timeout: i32) -> i32;
}

/// Sends as much of `data` as `socket` takes at once, with one `send(MSG_DONTWAIT)`; None
/// if it would have to wait (nothing sent then). Windows has no such flag (a `WSAPoll`
/// first would add a system call to every write), so there the write path keeps asking
/// only when a worker would block.
#[cfg(unix)]
pub fn send_now(socket: RawSocket, data: &[u8]) -> Option<std::io::Result<usize>> {
    // A client that has gone away is an error here, never a SIGPIPE (as with std's writes).
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MSG_DONTWAIT;
    // SAFETY: `data` is valid for reads of data.len() bytes during the call; a socket
    // that is not open is reported as an error (EBADF), not undefined behaviour.
    let n = unsafe { libc::send(socket, data.as_ptr().cast(), data.len(), flags) };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => None,
        _ => Some(Err(e)),
    }
}

/// Waits up to `timeout_ms` (-1: forever) until one of `fds` is ready. Returns how many are.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> std::io::Result<usize> {
    #[cfg(unix)]
    // SAFETY: PollFd is layout-identical to struct pollfd and the slice is valid for writes
    // of fds.len() entries for the duration of the call.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            fds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    #[cfg(windows)]
    // SAFETY: PollFd is layout-identical to WSAPOLLFD and the slice is valid for writes.
    let n = unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, timeout_ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// The count of requests in flight, for the crash report (set once at start-up).
static IN_FLIGHT: std::sync::OnceLock<&'static std::sync::atomic::AtomicUsize> =
    std::sync::OnceLock::new();

/// Appends `bytes` to `buf` at `*len`, as far as it fits (no allocation: signal handler).
#[cfg(unix)]
fn put(buf: &mut [u8], len: &mut usize, bytes: &[u8]) {
    for &b in bytes {
        if *len < buf.len() {
            buf[*len] = b;
            *len += 1;
        }
    }
}

/// Appends `n` in decimal (no allocation, only arithmetic: signal handler).
#[cfg(unix)]
fn put_number(buf: &mut [u8], len: &mut usize, n: usize) {
    put(
        buf,
        len,
        isapi_wsgi::isapi::decimal::decimal(n as u64, &mut [0; 20]),
    );
}

#[cfg(unix)]
extern "C" fn on_fatal_signal(signal: libc::c_int) {
    // Only async-signal-safe work: a stack buffer, an atomic load, one write(2). Then the
    // handler returns; SA_RESETHAND has restored the default action, so the fault (or
    // abort's re-raise) ends the process with this signal, as it would have without us.
    let name: &[u8] = match signal {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"?",
    };
    let (mut buf, mut len) = ([0u8; 256], 0);
    put(&mut buf, &mut len, b"isapi-host: fatal signal ");
    put_number(&mut buf, &mut len, signal as usize);
    put(&mut buf, &mut len, b" (");
    put(&mut buf, &mut len, name);
    put(
        &mut buf,
        &mut len,
        b"): the extension crashed, or a call it made did; ",
    );
    let in_flight = IN_FLIGHT.get().map_or(0, |n| n.load(Ordering::SeqCst));
    put_number(&mut buf, &mut len, in_flight);
    put(&mut buf, &mut len, b" request(s) in flight are cut off\n");
    // SAFETY: write(2) on stderr from a buffer of `len` initialised bytes.
    unsafe { libc::write(2, buf.as_ptr().cast(), len) };
}

/// Reports a crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT: extension code that faults, a
/// Rust panic inside an `extern` function, which aborts) with one line on stderr saying
/// how many requests it cuts off (`in_flight`), then lets the signal end the process: no
/// process survives a wild write, IIS's worker process included (WAS starts a new one).
#[cfg(unix)]
pub fn install_crash_report(in_flight: &'static std::sync::atomic::AtomicUsize) {
    let _ = IN_FLIGHT.set(in_flight);
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
    ] {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler does only
        // async-signal-safe work. SA_ONSTACK runs it on the alternate stack std sets up
        // for each thread (so a stack overflow is reported too); SA_RESETHAND restores the
        // default action first.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Windows: wine and Windows report an unhandled exception themselves.
#[cfg(windows)]
pub fn install_crash_report(in_flight: &'static std::sync::atomic::AtomicUsize) {
    let _ = IN_FLIGHT.set(in_flight);
}

/// Set by the stop handler; read by the main thread.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C / SIGTERM (or the console's close event) has arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Asks the main thread to stop the host, as Ctrl-C would (`--exit-on-unhealthy`).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to [`stop_requested`]. SIGPIPE is ignored so that a client
/// that goes away makes a write fail instead of killing the host.
#[cfg(unix)]
pub fn install_stop_handler() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only stores to
        // an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

#[cfg(windows)]
#[link(name = "kernel32")]
unsafe extern "system" {
    fn SetConsoleCtrlHandler(
        handler: Option<unsafe extern "system" fn(u32) -> i32>,
        add: i32,
    ) -> i32;
    fn SetLastError(code: u32);
    fn ReadFile(
        file: *mut c_void,
        buf: *mut c_void,
        len: u32,
        read: *mut u32,
        overlapped: *mut Overlapped,
    ) -> i32;
    fn GetOverlappedResult(
        file: *mut c_void,
        overlapped: *mut Overlapped,
        read: *mut u32,
        wait: i32,
    ) -> i32;
    fn CreateEventW(
        attributes: *mut c_void,
        manual_reset: i32,
        initial_state: i32,
        name: *const u16,
    ) -> *mut c_void;
    fn CloseHandle(handle: *mut c_void) -> i32;
}

/// An event handle, closed on drop.
#[cfg(windows)]
struct Event(*mut c_void);

#[cfg(windows)]
impl Event {
    /// A manual-reset event, not signalled.
    fn new() -> std::io::Result<Event> {
        // SAFETY: no security attributes and no name: CreateEventW reads no memory of ours.
        let handle = unsafe { CreateEventW(std::ptr::null_mut(), 1, 0, std::ptr::null()) };
        if handle.is_null() {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(Event(handle))
        }
    }
}

#[cfg(windows)]
impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the handle is ours, open, and closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

#[cfg(windows)]
#[repr(C)]
struct Overlapped {
    internal: usize,
    internal_high: usize,
    offset: u32,
    offset_high: u32,
    event: *mut c_void,
}

#[cfg(windows)]
unsafe extern "system" fn on_console_event(_event: u32) -> i32 {
    STOP.store(true, Ordering::SeqCst);
    1 // handled: do not run the default handler, which would end the process at once
}

/// Routes Ctrl-C, Ctrl-Break and console close to [`stop_requested`].
#[cfg(windows)]
pub fn install_stop_handler() {
    // SAFETY: the handler is a valid function for the life of the process.
    unsafe {
        SetConsoleCtrlHandler(Some(on_console_event), 1);
    }
}

/// Sets the calling thread's "last error" to a Win32 error code.
pub fn set_last_error(code: u32) {
    #[cfg(windows)]
    // SAFETY: SetLastError has no preconditions.
    unsafe {
        SetLastError(code)
    };
    #[cfg(target_os = "linux")]
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe {
        *libc::__errno_location() = code as libc::c_int
    };
    #[cfg(all(unix, not(target_os = "linux")))]
    // SAFETY: __error returns the calling thread's errno slot, always valid.
    unsafe {
        *libc::__error() = code as libc::c_int
    };
}

/// Sends up to `count` bytes of the file an extension handed over for
/// HSE_REQ_TRANSMIT_FILE, from `offset`, straight from the page cache to the socket
/// (sendfile(2), what TransmitFile does on Windows): no copy through the host. Returns the
/// bytes sent, 0 at end of file. The handle stays the extension's.
#[cfg(target_os = "linux")]
pub fn send_file(
    socket: &std::net::TcpStream,
    handle: *mut c_void,
    offset: u64,
    count: usize,
) -> std::io::Result<usize> {
    use std::os::unix::io::AsRawFd;
    let mut position = offset as libc::off_t;
    // SAFETY: sendfile reads from the descriptor (a bad one yields EBADF) and writes to the
    // socket, both by number; `position` is a valid off_t it updates.
    let n = unsafe {
        libc::sendfile(
            socket.as_raw_fd(),
            handle as usize as libc::c_int,
            &mut position,
            count,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads up to `buf.len()` bytes at `offset` from the file an extension handed over for
/// HSE_REQ_TRANSMIT_FILE. The handle stays the extension's: it is never closed here.
/// Returns 0 at end of file.
pub fn read_file_at(handle: *mut c_void, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        let fd = handle as usize as libc::c_int;
        // SAFETY: buf is valid for writes of buf.len() bytes; a bad fd yields EBADF.
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
    #[cfg(windows)]
    {
        // The read waits on an event of its own. With no event, GetOverlappedResult would
        // wait on the file handle, which every overlapped operation on it signals: with a
        // handle the extension shares (two TRANSMIT_FILEs of one cached file) it could
        // return while this read still writes into `buf` and `overlapped`. The event's low
        // bit set keeps the completion off any I/O completion port the extension bound the
        // handle to (which would otherwise get a packet naming our OVERLAPPED).
        let event = Event::new()?;
        let mut overlapped = Overlapped {
            internal: 0,
            internal_high: 0,
            offset: offset as u32,
            offset_high: (offset >> 32) as u32,
            event: (event.0 as usize | 1) as *mut c_void,
        };
        let mut read = 0u32;
        let len = buf.len().min(u32::MAX as usize) as u32;
        // SAFETY: buf is valid for writes of len bytes and overlapped is a valid OVERLAPPED;
        // both outlive the read: it either completes within the call (a synchronous
        // handle, or an error) or returns ERROR_IO_PENDING, and then the wait below does
        // not return before it has completed. The handle is the extension's (TRANSMIT_FILE);
        // a bad one makes ReadFile fail.
        let ok = unsafe {
            ReadFile(
                handle,
                buf.as_mut_ptr().cast(),
                len,
                &mut read,
                &mut overlapped,
            )
        };
        if ok != 0 {
            return Ok(read as usize);
        }
        let mut e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(997) {
            // ERROR_IO_PENDING: the handle was opened with FILE_FLAG_OVERLAPPED (as the
            // documentation recommends); wait for this one read to finish.
            // SAFETY: overlapped is the one the pending read uses; its event is signalled only
            // by that read's completion, so the wait (bWait TRUE) returns only once the read
            // no longer touches overlapped or buf, which both live until after it.
            if unsafe { GetOverlappedResult(handle, &mut overlapped, &mut read, 1) } != 0 {
                return Ok(read as usize);
            }
            e = std::io::Error::last_os_error();
        }
        if e.raw_os_error() == Some(38) {
            return Ok(0); // ERROR_HANDLE_EOF
        }
        Err(e)
    }
}

/// Linux's epoll, used one-shot: a socket is reported once, then stays silent until it is
/// armed again. Many threads may wait on one [`Epoll`] at the same time.
#[cfg(target_os = "linux")]
pub struct Epoll {
    fd: libc::c_int,
}

/// The events one [`Epoll::wait_many`] reported.
#[cfg(target_os = "linux")]
pub struct Ready {
    events: [std::mem::MaybeUninit<libc::epoll_event>; Ready::ROOM],
    /// How many of `events` the kernel wrote.
    reported: usize,
}

#[cfg(target_os = "linux")]
impl Ready {
    /// The most events one wait reports.
    pub const ROOM: usize = 64;

    /// Room for a wait's events, none reported yet. Not zeroed: the kernel writes the
    /// events it reports, and only those are read.
    pub fn new() -> Ready {
        Ready {
            events: [const { std::mem::MaybeUninit::uninit() }; Ready::ROOM],
            reported: 0,
        }
    }

    /// The reported events' tokens.
    pub fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.events[..self.reported].iter().map(|event| {
            // SAFETY: epoll_wait wrote the first `reported` events (its return value).
            let event = unsafe { event.assume_init_read() };
            event.u64
        })
    }
}

#[cfg(target_os = "linux")]
impl Epoll {
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory-safety preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(Epoll { fd })
        }
    }

    /// Reports `socket` once, with `token`, when it becomes readable (or hangs up).
    pub fn arm(&self, socket: RawSocket, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: token,
        };
        // SAFETY: event is a valid epoll_event; a bad fd yields an error, not UB.
        let mut r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_MOD, socket, &mut event) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            // SAFETY: as above; first registration of this socket.
            r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, socket, &mut event) };
        }
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Forgets `socket` (before it is closed).
    pub fn remove(&self, socket: RawSocket) {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in arm; errors (already gone) are irrelevant here.
        unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_DEL, socket, &mut event) };
    }

    /// Reports `socket` with `token` whenever it is readable (or hangs up), until it is
    /// [removed](Epoll::remove): level-triggered, for a set only one thread waits on.
    pub fn watch(&self, socket: RawSocket, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: as in arm.
        let r = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, socket, &mut event) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reports, with `token`, whenever `inner` has events ready (an epoll set nested in
    /// this one, level-triggered).
    pub fn watch_set(&self, inner: &Epoll, token: u64) -> std::io::Result<()> {
        self.watch(inner.fd, token)
    }

    /// Waits up to `timeout_ms` for events (at most [`Ready::ROOM`]) and puts them in
    /// `ready` (the caller's: 768 bytes that are neither zeroed nor moved on each wait); an
    /// interrupted wait reports none.
    pub fn wait_many(&self, ready: &mut Ready, timeout_ms: i32) -> std::io::Result<()> {
        ready.reported = 0;
        // SAFETY: room for ROOM events is passed, in memory the kernel may write.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                ready.events.as_mut_ptr().cast(),
                Ready::ROOM as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.reported = n as usize;
        Ok(())
    }

    /// Waits up to `timeout_ms` for one event; returns its token.
    pub fn wait(&self, timeout_ms: i32) -> std::io::Result<Option<u64>> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: room for exactly one event is passed.
        let n = unsafe { libc::epoll_wait(self.fd, &mut event, 1, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok((n == 1).then_some(event.u64))
    }
}

#[cfg(target_os = "linux")]
impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: fd is our epoll descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// What `HSE_REQ_GET_IMPERSONATION_TOKEN` hands to the extension. IIS gives the token of
/// the authenticated user (or of the anonymous account); the host has no user to log on,
/// so it offers NULL ("the process's own identity") or, with `--impersonation-token self`
/// on Windows, an impersonation-level duplicate of its own token: a real token that an
/// extension can put on a thread with SetThreadToken, as it would under IIS.
pub struct ImpersonationToken(usize);

impl ImpersonationToken {
    pub fn none() -> ImpersonationToken {
        ImpersonationToken(0)
    }

    /// A value no handle of this process has (handles are multiples of 4, handed out from
    /// the bottom): SetThreadToken fails on it, as it would on a token that is gone.
    pub fn invalid() -> ImpersonationToken {
        ImpersonationToken(0x0BAD_0000)
    }

    /// The HANDLE to hand out (NULL for none). The host keeps it open for its whole life.
    pub fn handle(&self) -> *mut c_void {
        self.0 as *mut c_void
    }

    pub fn own() -> std::io::Result<ImpersonationToken> {
        isapi_wsgi::sys::duplicate_own_token()
            .map(|token| ImpersonationToken(token as usize))
            .map_err(|code| {
                std::io::Error::other(format!(
                    "--impersonation-token self: cannot duplicate the host's token: {}",
                    std::io::Error::from_raw_os_error(code as i32)
                ))
            })
    }
}

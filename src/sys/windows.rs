//! Windows implementation of the `sys` layer (LoadLibraryExW and friends).
//!
//! The few Win32 functions we need are declared here by hand: they are stable, documented
//! kernel32 exports, and a bindings crate would be a dependency to audit for five lines.
use std::ffi::{CString, c_void};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

type Hmodule = *mut c_void;
const LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: u32 = 0x0000_0100;
const LOAD_LIBRARY_SEARCH_DEFAULT_DIRS: u32 = 0x0000_1000;

#[link(name = "kernel32")]
unsafe extern "system" {
    fn LoadLibraryExW(name: *const u16, file: *mut c_void, flags: u32) -> Hmodule;
    fn GetProcAddress(module: Hmodule, name: *const i8) -> *mut c_void;
    fn GetLastError() -> u32;
    fn GetModuleHandleExW(flags: u32, address: *const u16, module: *mut Hmodule) -> i32;
    fn GetModuleFileNameW(module: Hmodule, buffer: *mut u16, size: u32) -> u32;
    fn FreeLibrary(module: Hmodule) -> i32;
}

/// A loaded DLL. Dropping it does not unload it (see the Unix twin for why); only
/// [`Library::unload`] does.
#[derive(Debug)]
pub struct Library {
    handle: Hmodule,
    path: PathBuf,
}

// SAFETY: an HMODULE may be used from any thread; GetProcAddress is thread-safe.
unsafe impl Send for Library {}
// SAFETY: see Send; the handle is never mutated after open.
unsafe impl Sync for Library {}

/// Kept for the same call sites as on Unix; Windows DLL exports are always per-module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Local,
    Global,
}

impl Library {
    /// Loads the DLL at `path` by full path. Its own directory and the system directories
    /// are searched for its dependencies; the current directory and PATH are not.
    pub fn open(path: &Path, _visibility: Visibility) -> Result<Library, String> {
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
        let flags = LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS;
        // SAFETY: wide is NUL-terminated UTF-16; the reserved argument must be NULL.
        let handle = unsafe { LoadLibraryExW(wide.as_ptr(), std::ptr::null_mut(), flags) };
        if handle.is_null() {
            // SAFETY: GetLastError has no preconditions.
            let code = unsafe { GetLastError() };
            return Err(format!(
                "{}: LoadLibraryExW failed with Windows error {code}",
                path.display()
            ));
        }
        Ok(Library {
            handle,
            path: path.to_path_buf(),
        })
    }

    /// The address of the export `name`, or None if the DLL has no such export.
    pub fn symbol(&self, name: &str) -> Option<*mut c_void> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: handle came from a successful LoadLibraryExW and is never freed.
        let address = unsafe { GetProcAddress(self.handle, c_name.as_ptr()) };
        (!address.is_null()).then_some(address)
    }

    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unloads the DLL (`FreeLibrary`), as IIS may after `TerminateExtension`. Windows
    /// keeps it loaded all the same if it holds other references or pinned itself:
    /// [`is_loaded`] tells.
    ///
    /// # Safety
    /// Nothing may use an address from this DLL afterwards, unless it is still loaded: no
    /// call through a function pointer looked up with [`Library::symbol`], and no thread may
    /// be running its code.
    pub unsafe fn unload(self) -> Result<(), String> {
        // SAFETY: handle came from a successful LoadLibraryExW and is freed once (self is
        // consumed); the caller promises that nothing uses the DLL's code afterwards.
        if unsafe { FreeLibrary(self.handle) } != 0 {
            Ok(())
        } else {
            // SAFETY: GetLastError has no preconditions.
            let code = unsafe { GetLastError() };
            Err(format!(
                "{}: FreeLibrary failed with Windows error {code}",
                self.path.display()
            ))
        }
    }
}

/// Whether the DLL at `path` is loaded in this process now (GetModuleHandleExW by name,
/// without taking a reference).
pub fn is_loaded(path: &Path) -> bool {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    let mut module: Hmodule = std::ptr::null_mut();
    // SAFETY: wide is a NUL-terminated UTF-16 module name; UNCHANGED_REFCOUNT means the
    // call takes no reference that would have to be released.
    unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            wide.as_ptr(),
            &mut module,
        ) != 0
    }
}

const GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS: u32 = 0x4;
const GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT: u32 = 0x2;
const GET_MODULE_HANDLE_EX_FLAG_PIN: u32 = 0x1;

/// Makes the DLL that contains this code stay loaded until the process ends, even if IIS
/// calls `FreeLibrary` on it: `GetModuleHandleExW(PIN | FROM_ADDRESS)`.
///
/// Why: our code keeps running after `TerminateExtension` (docs/bridge.md, "Code that
/// outlives the library"): the thread-state reaper, threadpool workers still finishing a
/// request, and Python, which holds our types (their slots point at our functions) and any
/// objects an application kept (start_response, wsgi.input, wsgi.errors). IIS may unload an
/// extension after TerminateExtension; the next call into unmapped code would crash
/// `w3wp.exe`. A pinned module is never unloaded; it goes away with the process.
pub fn pin_own_module() -> Result<(), String> {
    let mut module: Hmodule = std::ptr::null_mut();
    let flags = GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN;
    let address = pin_own_module as *const u16;
    // SAFETY: with FROM_ADDRESS the second argument is an address inside a module (this
    // function); PIN takes a reference that can never be released, which is the point.
    if unsafe { GetModuleHandleExW(flags, address, &mut module) } == 0 {
        // SAFETY: GetLastError has no preconditions.
        let code = unsafe { GetLastError() };
        return Err(format!(
            "GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN) failed with Windows error {code}"
        ));
    }
    Ok(())
}

/// The path of the DLL (or executable) that contains this code: the extension finds its
/// `<stem>.ini` next to itself. IIS loads extensions through `\\?\` paths; that prefix is
/// removed. None if Windows cannot tell.
pub fn own_module_path() -> Option<PathBuf> {
    let mut module: Hmodule = std::ptr::null_mut();
    let flags =
        GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
    let address = own_module_path as *const u16;
    // SAFETY: with FROM_ADDRESS the second argument is an address inside a module (this
    // function); UNCHANGED_REFCOUNT means there is nothing to release afterwards.
    if unsafe { GetModuleHandleExW(flags, address, &mut module) } == 0 {
        return None;
    }
    let mut buffer = vec![0u16; 1024];
    loop {
        // SAFETY: `buffer` has room for `buffer.len()` UTF-16 units.
        let length = unsafe { GetModuleFileNameW(module, buffer.as_mut_ptr(), buffer.len() as u32) }
            as usize;
        if length == 0 {
            return None;
        }
        if length < buffer.len() {
            buffer.truncate(length);
            break;
        }
        // Truncated: try again with more room (long paths can reach 32767 units).
        if buffer.len() >= 32_768 {
            return None;
        }
        buffer.resize(buffer.len() * 4, 0);
    }
    let prefix: Vec<u16> = r"\\?\".encode_utf16().collect();
    let unc: Vec<u16> = r"\\?\UNC\".encode_utf16().collect();
    let path = if buffer.starts_with(&unc) {
        let mut rest: Vec<u16> = r"\\".encode_utf16().collect();
        rest.extend_from_slice(&buffer[unc.len()..]);
        rest
    } else if buffer.starts_with(&prefix) {
        buffer[prefix.len()..].to_vec()
    } else {
        buffer
    };
    Some(PathBuf::from(std::ffi::OsString::from_wide(&path)))
}

// ---------------------------------------------------------------------------------------
// Windows specifics (owned by the Windows workstream): PEP 514 discovery, reporting to the
// administrator, and impersonation. Each has a do-nothing twin in `unix.rs`.

// Paths in this section are spelled out (no new `use` lines) so that the section stays
// independent of the rest of the file.
use super::RegisteredPython;

type Hkey = *mut c_void;
type Handle = *mut c_void;
// The predefined keys are sign-extended 32-bit values: (HKEY)(ULONG_PTR)(LONG)0x80000001.
const HKEY_CURRENT_USER: Hkey = 0x8000_0001_u32 as i32 as isize as Hkey;
const HKEY_LOCAL_MACHINE: Hkey = 0x8000_0002_u32 as i32 as isize as Hkey;
const KEY_READ: u32 = 0x0002_0019;
const REG_SZ: u32 = 1;
const REG_EXPAND_SZ: u32 = 2;
const ERROR_SUCCESS: i32 = 0;
const EVENTLOG_ERROR_TYPE: u16 = 0x0001;

#[link(name = "advapi32")]
unsafe extern "system" {
    fn RegOpenKeyExW(
        key: Hkey,
        sub_key: *const u16,
        options: u32,
        access: u32,
        result: *mut Hkey,
    ) -> i32;
    fn RegEnumKeyExW(
        key: Hkey,
        index: u32,
        name: *mut u16,
        name_len: *mut u32,
        reserved: *mut u32,
        class: *mut u16,
        class_len: *mut u32,
        last_write: *mut c_void,
    ) -> i32;
    fn RegQueryValueExW(
        key: Hkey,
        value_name: *const u16,
        reserved: *mut u32,
        value_type: *mut u32,
        data: *mut u8,
        data_len: *mut u32,
    ) -> i32;
    fn RegCloseKey(key: Hkey) -> i32;
    fn RegisterEventSourceW(server: *const u16, source: *const u16) -> Handle;
    fn ReportEventW(
        log: Handle,
        event_type: u16,
        category: u16,
        event_id: u32,
        user_sid: *mut c_void,
        num_strings: u16,
        data_size: u32,
        strings: *const *const u16,
        raw_data: *mut c_void,
    ) -> i32;
    fn DeregisterEventSource(log: Handle) -> i32;
    fn SetThreadToken(thread: *mut Handle, token: Handle) -> i32;
    fn OpenProcessToken(process: Handle, access: u32, token: *mut Handle) -> i32;
    fn DuplicateToken(token: Handle, level: u32, duplicate: *mut Handle) -> i32;
}

#[link(name = "kernel32")]
unsafe extern "system" {
    fn OutputDebugStringW(message: *const u16);
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// An open registry key, closed on drop.
struct RegKey(Hkey);

impl RegKey {
    /// Opens `path` below `root` for reading; None if it does not exist or is not readable.
    fn open(root: Hkey, path: &str) -> Option<RegKey> {
        let path = wide(path);
        let mut key: Hkey = std::ptr::null_mut();
        // SAFETY: root is a predefined or open key, path is NUL-terminated UTF-16, and key
        // is a valid out-pointer.
        let status = unsafe { RegOpenKeyExW(root, path.as_ptr(), 0, KEY_READ, &mut key) };
        (status == ERROR_SUCCESS).then_some(RegKey(key))
    }

    /// The names of the direct subkeys, in registry order.
    fn subkeys(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut buffer = [0u16; 256]; // registry key names are at most 255 characters
        for index in 0.. {
            let mut len = buffer.len() as u32;
            let null: *mut c_void = std::ptr::null_mut();
            // SAFETY: self.0 is open; buffer holds len UTF-16 units; the optional
            // out-pointers are NULL, which the function allows.
            let status = unsafe {
                RegEnumKeyExW(
                    self.0,
                    index,
                    buffer.as_mut_ptr(),
                    &mut len,
                    null.cast(),
                    null.cast(),
                    null.cast(),
                    null,
                )
            };
            if status != ERROR_SUCCESS {
                break; // ERROR_NO_MORE_ITEMS, or a key that vanished while we looked
            }
            names.push(String::from_utf16_lossy(&buffer[..len as usize]));
        }
        names
    }

    /// A string value (REG_SZ or REG_EXPAND_SZ, not expanded); `None` for the default value.
    fn string(&self, name: Option<&str>) -> Option<std::ffi::OsString> {
        let name = name.map(wide);
        let name_ptr = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
        let (mut kind, mut size) = (0u32, 0u32);
        // SAFETY: a size query: NULL data with size 0 asks for the needed size in bytes.
        let status = unsafe {
            RegQueryValueExW(
                self.0,
                name_ptr,
                std::ptr::null_mut(),
                &mut kind,
                std::ptr::null_mut(),
                &mut size,
            )
        };
        if status != ERROR_SUCCESS || !(kind == REG_SZ || kind == REG_EXPAND_SZ) {
            return None;
        }
        let mut data = vec![0u16; (size as usize).div_ceil(2) + 1];
        let mut size = (data.len() * 2) as u32;
        // SAFETY: data holds size bytes; the value may have grown since the size query, in
        // which case the call fails with ERROR_MORE_DATA and we return None.
        let status = unsafe {
            RegQueryValueExW(
                self.0,
                name_ptr,
                std::ptr::null_mut(),
                &mut kind,
                data.as_mut_ptr().cast(),
                &mut size,
            )
        };
        if status != ERROR_SUCCESS {
            return None;
        }
        // The stored string may or may not include its terminating NUL: cut at the first.
        let units = &data[..(size as usize / 2).min(data.len())];
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        Some(<std::ffi::OsString as std::os::windows::ffi::OsStringExt>::from_wide(&units[..end]))
    }
}

impl Drop for RegKey {
    fn drop(&mut self) {
        // SAFETY: self.0 was opened by RegOpenKeyExW and is closed exactly once.
        unsafe { RegCloseKey(self.0) };
    }
}

/// The CPython installations registered per PEP 514 under company `PythonCore`: first the
/// machine's (`HKEY_LOCAL_MACHINE`), newest version first, then this user's
/// (`HKEY_CURRENT_USER`), newest first. PEP 514 ranks a per-user install first; we do not:
/// under IIS "this user" is the application pool's identity, which can write its own
/// `HKEY_CURRENT_USER` but not the machine's keys, so the per-user order would let that
/// identity (or anything running as it) redirect a machine-wide install to a Python of
/// its choosing. A per-user install is still found when the machine has none; `[python]
/// home` or `library` choose exactly. Installations of another
/// bitness than this process, free-threaded builds (`3.13t`, which cannot load a
/// limited-API extension), and tags without an existing `InstallPath` are left out.
pub fn registered_pythons() -> Vec<RegisteredPython> {
    let mut found = Vec::new();
    for (root, hive) in [
        (HKEY_LOCAL_MACHINE, "HKEY_LOCAL_MACHINE"),
        (HKEY_CURRENT_USER, "HKEY_CURRENT_USER"),
    ] {
        let start = found.len();
        let Some(core) = RegKey::open(root, r"Software\Python\PythonCore") else {
            continue;
        };
        for tag in core.subkeys() {
            if let Some(python) = registered_python(&core, &tag, hive) {
                found.push(python);
            }
        }
        found[start..].sort_by_key(|python| std::cmp::Reverse(python.version));
    }
    found
}

fn registered_python(core: &RegKey, tag: &str, hive: &'static str) -> Option<RegisteredPython> {
    let entry = RegKey::open(core.0, tag)?;
    let value = |name: &str| {
        entry
            .string(Some(name))
            .map(|s| s.to_string_lossy().into_owned())
    };
    let our_bits = if cfg!(target_pointer_width = "64") {
        "64bit"
    } else {
        "32bit"
    };
    let bits_ok = match value("SysArchitecture") {
        Some(arch) => arch.eq_ignore_ascii_case(our_bits),
        // Without SysArchitecture, PEP 514 says a `-32` suffix marks a 32-bit install.
        None => tag.ends_with("-32") == (our_bits == "32bit"),
    };
    let version = parse_version(&value("SysVersion").unwrap_or_else(|| tag.to_string()))?;
    let free_threaded = tag
        .trim_end_matches("-32")
        .trim_end_matches("-64")
        .ends_with('t');
    if !bits_ok || free_threaded || tag.contains("-arm") {
        return None;
    }
    let home = std::path::PathBuf::from(RegKey::open(entry.0, "InstallPath")?.string(None)?);
    if home.as_os_str().is_empty() {
        return None;
    }
    Some(RegisteredPython {
        tag: tag.to_string(),
        version,
        home,
        hive,
    })
}

/// "3.12" or "3.12-32" or "3.12.1" -> (3, 12).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Tells the administrator about a problem that stops the extension from serving (for
/// example, Python could not be started), in the two places Windows offers:
///
/// * the **Application Event Log**, source `isapi-wsgi`, as an error (event id 1): this is
///   where IIS administrators look first, and it survives restarts. `install.ps1` registers
///   the source (`New-EventLog`) so that Event Viewer shows the text without a "description
///   cannot be found" preamble; unregistered, the text is still recorded.
/// * **OutputDebugStringW**: always available, needs no rights or registration, and shows
///   in a debugger or Sysinternals DebugView while reproducing a problem.
///
/// Both are best effort: failures are ignored, because the message is also in our log file.
pub fn report_to_admin(message: &str) {
    let text = wide(message);
    // SAFETY: text is NUL-terminated UTF-16.
    unsafe { OutputDebugStringW(text.as_ptr()) };
    let source = wide("isapi-wsgi");
    // SAFETY: NULL server means the local machine; source is NUL-terminated UTF-16.
    let log = unsafe { RegisterEventSourceW(std::ptr::null(), source.as_ptr()) };
    if log.is_null() {
        return;
    }
    let strings = [text.as_ptr()];
    // SAFETY: log is open; strings holds one valid NUL-terminated string; no SID, no data.
    unsafe {
        ReportEventW(
            log,
            EVENTLOG_ERROR_TYPE,
            0,
            1,
            std::ptr::null_mut(),
            1,
            0,
            strings.as_ptr(),
            std::ptr::null_mut(),
        );
    }
    // SAFETY: log came from RegisterEventSourceW and is released once.
    unsafe { DeregisterEventSource(log) };
}

/// The current thread running under a client's identity (the token IIS hands out with
/// `HSE_REQ_GET_IMPERSONATION_TOKEN`) until dropped, which reverts the thread to the
/// process identity. IIS impersonates its own threads; a thread of ours must do it itself
/// so that the application sees the same file-system rights in both handlers.
#[derive(Debug)]
pub struct Impersonation {
    applied: Result<(), u32>,
    /// True if this guard changed the thread's token (and so must revert it).
    changed: bool,
    // Impersonation is per thread: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Impersonation {
    /// Ok if the token was applied (or there was none to apply); else the Windows error
    /// from SetThreadToken, and the thread kept its own identity.
    pub fn applied(&self) -> Result<(), u32> {
        self.applied
    }
}

/// Runs the current thread as `token` until the returned guard is dropped. A null token
/// (anonymous request, or a host without one) changes nothing. An invalid token is not
/// memory-unsafe: SetThreadToken fails, which [`Impersonation::applied`] reports.
// A HANDLE is an opaque kernel reference that the kernel validates, not memory that we
// read: passing any value is safe, so this is not an `unsafe fn` (clippy sees a pointer).
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn impersonate(token: *mut c_void) -> Impersonation {
    let applied = if token.is_null() {
        Ok(())
    } else {
        // SAFETY: NULL thread means the current thread; the token is only read.
        if unsafe { SetThreadToken(std::ptr::null_mut(), token) } != 0 {
            Ok(())
        } else {
            // SAFETY: GetLastError has no preconditions.
            Err(unsafe { GetLastError() })
        }
    };
    let changed = !token.is_null() && applied.is_ok();
    Impersonation {
        applied,
        changed,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for Impersonation {
    fn drop(&mut self) {
        if self.changed {
            // SAFETY: NULL thread and NULL token: the current thread stops impersonating.
            unsafe { SetThreadToken(std::ptr::null_mut(), std::ptr::null_mut()) };
        }
    }
}

/// An impersonation-level copy of this process's own token: a real token to hand to
/// [`impersonate`] where IIS would hand the client's (`isapi-host --impersonation-token
/// self`, the wine probe). The caller owns the handle (it is never closed by the host).
pub fn duplicate_own_token() -> Result<*mut c_void, u32> {
    const TOKEN_DUPLICATE: u32 = 0x0002;
    const TOKEN_IMPERSONATE: u32 = 0x0004;
    const TOKEN_QUERY: u32 = 0x0008;
    const SECURITY_IMPERSONATION: u32 = 2;
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentProcess() -> Handle;
        fn CloseHandle(handle: Handle) -> i32;
    }
    let (mut process_token, mut duplicate): (Handle, Handle) =
        (std::ptr::null_mut(), std::ptr::null_mut());
    let access = TOKEN_DUPLICATE | TOKEN_IMPERSONATE | TOKEN_QUERY;
    // SAFETY: a pseudo-handle of this process and valid out-pointers; the process token is
    // closed once, after duplicating; GetLastError is read before CloseHandle can change it.
    unsafe {
        if OpenProcessToken(GetCurrentProcess(), access, &mut process_token) == 0 {
            return Err(GetLastError());
        }
        let duplicated = DuplicateToken(process_token, SECURITY_IMPERSONATION, &mut duplicate);
        let error = GetLastError();
        CloseHandle(process_token);
        if duplicated == 0 {
            Err(error)
        } else {
            Ok(duplicate)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The identity in a request's token: its user's SID and its groups' names (wsgi/identity.rs).

/// Whether requests carry Windows access tokens (HSE_REQ_GET_IMPERSONATION_TOKEN).
pub const HAS_TOKENS: bool = true;

const TOKEN_USER_CLASS: u32 = 1;
const TOKEN_GROUPS_CLASS: u32 = 2;
const SE_GROUP_ENABLED: u32 = 0x0000_0004;
const SE_GROUP_USE_FOR_DENY_ONLY: u32 = 0x0000_0010;
const SE_GROUP_LOGON_ID: u32 = 0xC000_0000;

/// `SID_AND_ATTRIBUTES`: a pointer to a SID (inside the same buffer) and its flags.
#[repr(C)]
struct SidAndAttributes {
    sid: *mut c_void,
    attributes: u32,
}

/// `TOKEN_GROUPS`: a count, then that many `SID_AND_ATTRIBUTES` (declared with one).
#[repr(C)]
struct TokenGroups {
    count: u32,
    groups: [SidAndAttributes; 1],
}

#[link(name = "advapi32")]
unsafe extern "system" {
    fn GetTokenInformation(
        token: Handle,
        class: u32,
        information: *mut c_void,
        length: u32,
        returned: *mut u32,
    ) -> i32;
    fn ConvertSidToStringSidW(sid: *mut c_void, text: *mut *mut u16) -> i32;
    fn LookupAccountSidW(
        system: *const u16,
        sid: *mut c_void,
        name: *mut u16,
        name_length: *mut u32,
        domain: *mut u16,
        domain_length: *mut u32,
        sid_use: *mut u32,
    ) -> i32;
}

#[link(name = "kernel32")]
unsafe extern "system" {
    fn LocalFree(memory: *mut c_void) -> *mut c_void;
}

/// `GetTokenInformation(class)` into a buffer of its own, 8-byte aligned (the structures
/// hold pointers). Returns the buffer and the bytes written.
fn token_information(token: Handle, class: u32) -> Result<(Vec<u64>, usize), u32> {
    let mut needed = 0u32;
    // SAFETY: a size query (NULL buffer, length 0) writes only `needed`. The kernel checks
    // the handle: a token without TOKEN_QUERY or a handle that is no token fails cleanly.
    unsafe { GetTokenInformation(token, class, std::ptr::null_mut(), 0, &mut needed) };
    if needed == 0 {
        // SAFETY: GetLastError has no preconditions.
        return Err(unsafe { GetLastError() });
    }
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    let length = needed;
    // SAFETY: `buffer` has room for `length` bytes, aligned for the structures written.
    let ok = unsafe {
        GetTokenInformation(
            token,
            class,
            buffer.as_mut_ptr().cast(),
            length,
            &mut needed,
        )
    };
    if ok == 0 {
        // SAFETY: GetLastError has no preconditions.
        return Err(unsafe { GetLastError() });
    }
    Ok((buffer, (needed as usize).min(length as usize)))
}

/// The SID of the token's user as a string (`S-1-5-21-…`): TokenUser, ConvertSidToStringSidW.
// A HANDLE is an opaque kernel reference that the kernel validates, as in `impersonate`.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn token_user_sid(token: *mut c_void) -> Result<String, u32> {
    let (buffer, length) = token_information(token, TOKEN_USER_CLASS)?;
    if length < size_of::<SidAndAttributes>() {
        return Err(ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: a successful TokenUser query wrote a TOKEN_USER (one SID_AND_ATTRIBUTES) at
    // the start of the aligned buffer, at least that long (checked); its SID points into
    // the same buffer, which lives until this function returns.
    unsafe {
        let user = &*buffer.as_ptr().cast::<SidAndAttributes>();
        sid_string(user.sid)
    }
}

/// The names of the token's groups that count for access (enabled, not deny-only, not the
/// logon session): `DOMAIN\Name` from LookupAccountSidW, or the SID string when the SID
/// has no name.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn token_groups(token: *mut c_void) -> Result<Vec<String>, u32> {
    let (buffer, length) = token_information(token, TOKEN_GROUPS_CLASS)?;
    let base = buffer.as_ptr().cast::<TokenGroups>();
    let offset = std::mem::offset_of!(TokenGroups, groups);
    if length < offset {
        return Err(ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: a successful TokenGroups query wrote a TOKEN_GROUPS at the start of the
    // aligned buffer, at least `offset` bytes long (checked).
    let count = unsafe { (*base).count } as usize;
    let room = (length - offset) / size_of::<SidAndAttributes>();
    if count > room {
        return Err(ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: the `count` entries follow the count inside the buffer (checked against its
    // length above); their SIDs point into the same buffer, alive until we return.
    let groups = unsafe {
        let first = std::ptr::addr_of!((*base).groups).cast::<SidAndAttributes>();
        std::slice::from_raw_parts(first, count)
    };
    let mut names = Vec::with_capacity(count);
    for group in groups {
        let counts = group.attributes & SE_GROUP_ENABLED != 0
            && group.attributes & SE_GROUP_USE_FOR_DENY_ONLY == 0
            && group.attributes & SE_GROUP_LOGON_ID != SE_GROUP_LOGON_ID;
        if !counts {
            continue;
        }
        // SAFETY: each SID points into `buffer`, which outlives these calls.
        let name = unsafe { account_name(group.sid) }.map_or_else(
            // SAFETY: as above.
            || unsafe { sid_string(group.sid) },
            Ok,
        )?;
        names.push(name);
    }
    Ok(names)
}

const ERROR_INSUFFICIENT_BUFFER: u32 = 122;

/// A SID as text (`S-1-5-32-544`).
///
/// # Safety
/// `sid` must point to a valid SID for the duration of the call.
unsafe fn sid_string(sid: *mut c_void) -> Result<String, u32> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the caller passes a valid SID; `text` receives a LocalAlloc'd string.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        // SAFETY: GetLastError has no preconditions.
        return Err(unsafe { GetLastError() });
    }
    // SAFETY: ConvertSidToStringSidW wrote a NUL-terminated UTF-16 string at `text`; it is
    // copied, then freed once with LocalFree as its documentation says.
    unsafe {
        let length = (0..).take_while(|&i| *text.add(i) != 0).count();
        let string = String::from_utf16_lossy(std::slice::from_raw_parts(text, length));
        LocalFree(text.cast());
        Ok(string)
    }
}

/// The account name of a SID, `DOMAIN\Name` (or `Name` for one without a domain, such as
/// `Everyone`); None when the SID has no name (a logon SID, a deleted account).
///
/// # Safety
/// `sid` must point to a valid SID for the duration of the call.
unsafe fn account_name(sid: *mut c_void) -> Option<String> {
    let (mut name_length, mut domain_length, mut sid_use) = (0u32, 0u32, 0u32);
    // SAFETY: a size query: NULL buffers with lengths 0 make it report the lengths needed
    // (in characters, with the NUL); the caller passes a valid SID.
    unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            std::ptr::null_mut(),
            &mut name_length,
            std::ptr::null_mut(),
            &mut domain_length,
            &mut sid_use,
        )
    };
    if name_length == 0 {
        return None;
    }
    let mut name = vec![0u16; name_length as usize];
    let mut domain = vec![0u16; domain_length.max(1) as usize];
    domain_length = domain.len() as u32;
    // SAFETY: each buffer holds the number of characters its length says; the caller
    // passes a valid SID.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_length,
            domain.as_mut_ptr(),
            &mut domain_length,
            &mut sid_use,
        )
    };
    if ok == 0 {
        return None;
    }
    // On success the lengths are the characters written, without the NUL.
    let name = String::from_utf16_lossy(&name[..(name_length as usize).min(name.len())]);
    let domain = String::from_utf16_lossy(&domain[..(domain_length as usize).min(domain.len())]);
    Some(if domain.is_empty() {
        name
    } else {
        format!("{domain}\\{name}")
    })
}

/// Opens the log file for appending, shared so that an administrator can read it while IIS
/// runs (FILE_SHARE_READ), other worker processes of the pool can append to it
/// (FILE_SHARE_WRITE), and it can be renamed by the rotation of any of them while open
/// (FILE_SHARE_DELETE). Standard library's default share mode, spelled out because the
/// log depends on it.
pub fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_SHARE_READ: u32 = 0x1;
    const FILE_SHARE_WRITE: u32 = 0x2;
    const FILE_SHARE_DELETE: u32 = 0x4;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .open(path)
}

//! The small WASI preview1 subset Envoy provides, with cpp-host's answers.
//!
//! Envoy gives modules no filesystem, sockets or environment: cpp-host
//! `src/exports.cc` implements `wasi_unstable_*` as stubs (registered for
//! both `wasi_unstable` and `wasi_snapshot_preview1`), where stdout/stderr
//! writes become log lines (info/error), clocks and random work, and
//! everything else returns a fixed errno. wasmtime-wasi is not used because
//! it would let a filter read files here that it cannot read in Envoy.

use wasmtime::{Caller, Linker};

use crate::hostcalls::{emit_log, read, write, write_u32};
use crate::vm::Host;

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOENT: i32 = 44;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;
const ENOTDIR: i32 = 20;

/// cpp-host `PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES`.
const RANDOM_MAX: u32 = 64 * 1024;

fn errno(r: Result<i32, ()>) -> i32 {
    r.unwrap_or(EFAULT)
}

fn stdio(fd: i32) -> bool {
    fd == 1 || fd == 2
}

/// cpp-host `writevImpl`: gathers the iovecs, drops one trailing newline,
/// logs at info (stdout) or error (stderr).
fn fd_write(c: &mut Caller<'_, Host>, fd: i32, iovs: i32, n: i32, nwritten: i32) -> i32 {
    let level = match fd {
        1 => 2,
        2 => 4,
        _ => return EBADF,
    };
    let mut s = Vec::new();
    for i in 0..n.max(0) {
        let Ok(iov) = read(c, iovs.wrapping_add(i * 8), 8) else {
            return EFAULT;
        };
        let word = |at: usize| {
            iov.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_le_bytes)
                .unwrap_or(0)
        };
        let (buf, len) = (word(0), word(4));
        if len != 0 {
            match read(c, buf, len) {
                Ok(b) => s.extend_from_slice(&b),
                Err(_) => return EFAULT,
            }
        }
    }
    let written = s.len();
    if s.last() == Some(&b'\n') {
        s.pop();
    }
    if written != 0 && emit_log(c, level, &String::from_utf8_lossy(&s)).is_err() {
        return EBADF;
    }
    errno(
        write_u32(c, nwritten, written as u32)
            .map(|_| ESUCCESS)
            .map_err(|_| ()),
    )
}

fn now_nanos(monotonic: bool) -> u64 {
    if monotonic {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

pub(crate) fn add(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    for m in ["wasi_snapshot_preview1", "wasi_unstable"] {
        l.func_wrap(
            m,
            "fd_write",
            |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, nw: i32| {
                fd_write(&mut c, fd, iovs, n, nw)
            },
        )?;
        l.func_wrap(
            m,
            "fd_pwrite",
            |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, _off: i64, nw: i32| {
                if !stdio(fd) {
                    return EBADF;
                }
                fd_write(&mut c, fd, iovs, n, nw)
            },
        )?;
        l.func_wrap(
            m,
            "fd_read",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32| ENOSYS,
        )?;
        l.func_wrap(
            m,
            "fd_pread",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i64, _: i32| ENOSYS,
        )?;
        l.func_wrap(
            m,
            "fd_seek",
            |_: Caller<'_, Host>, _: i32, _: i64, _: i32, _: i32| ESUCCESS,
        )?;
        l.func_wrap(m, "fd_close", |_: Caller<'_, Host>, _: i32| ESUCCESS)?;
        l.func_wrap(
            m,
            "fd_fdstat_get",
            |mut c: Caller<'_, Host>, fd: i32, out: i32| {
                if !stdio(fd) {
                    return EBADF;
                }
                // fs_filetype 0, flags 0, rights_base FD_WRITE (64), inheriting 0.
                let mut stat = [0u8; 24];
                if let Some(b) = stat.get_mut(8..16) {
                    b.copy_from_slice(&64u64.to_le_bytes());
                }
                match write(&mut c, out, &stat) {
                    Ok(()) => ESUCCESS,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(
            m,
            "fd_fdstat_set_flags",
            |_: Caller<'_, Host>, _: i32, _: i32| ENOSYS,
        )?;
        l.func_wrap(
            m,
            "fd_fdstat_set_rights",
            |_: Caller<'_, Host>, fd: i32, _: i64, _: i64| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_prestat_get",
            |_: Caller<'_, Host>, _: i32, _: i32| EBADF,
        )?;
        l.func_wrap(
            m,
            "fd_prestat_dir_name",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32| ENOSYS,
        )?;
        l.func_wrap(
            m,
            "fd_filestat_get",
            |_: Caller<'_, Host>, _: i32, _: i32| EBADF,
        )?;
        l.func_wrap(
            m,
            "fd_filestat_set_size",
            |_: Caller<'_, Host>, fd: i32, _: i64| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_filestat_set_times",
            |_: Caller<'_, Host>, fd: i32, _: i64, _: i64, _: i32| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_advise",
            |_: Caller<'_, Host>, _: i32, _: i64, _: i64, _: i32| ESUCCESS,
        )?;
        l.func_wrap(
            m,
            "fd_allocate",
            |_: Caller<'_, Host>, fd: i32, _: i64, _: i64| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_datasync",
            |_: Caller<'_, Host>, fd: i32| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_sync",
            |_: Caller<'_, Host>, fd: i32| {
                if stdio(fd) { ESUCCESS } else { EBADF }
            },
        )?;
        l.func_wrap(
            m,
            "fd_tell",
            |mut c: Caller<'_, Host>, fd: i32, out: i32| {
                if !stdio(fd) {
                    return EBADF;
                }
                match write(&mut c, out, &0u64.to_le_bytes()) {
                    Ok(()) => ESUCCESS,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(
            m,
            "fd_readdir",
            |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i64, nread: i32| match write_u32(
                &mut c, nread, 0,
            ) {
                Ok(()) => ENOTDIR,
                Err(_) => EFAULT,
            },
        )?;
        l.func_wrap(m, "fd_renumber", |_: Caller<'_, Host>, fd: i32, to: i32| {
            if stdio(fd) && stdio(to) {
                ENOTSUP
            } else {
                EBADF
            }
        })?;
        l.func_wrap(
            m,
            "path_open",
            |_: Caller<'_, Host>,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i64,
             _: i64,
             _: i32,
             _: i32| ENOENT,
        )?;
        l.func_wrap(
            m,
            "path_filestat_get",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_create_directory",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_filestat_set_times",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_link",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_readlink",
            |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32, out: i32| {
                match write_u32(&mut c, out, 0) {
                    Ok(()) => ENOTSUP,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(
            m,
            "path_remove_directory",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_rename",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_symlink",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "path_unlink_file",
            |_: Caller<'_, Host>, _: i32, _: i32, _: i32| ENOTSUP,
        )?;
        l.func_wrap(
            m,
            "sock_accept",
            |mut c: Caller<'_, Host>, _: i32, _: i32, out: i32| match write_u32(&mut c, out, 0) {
                Ok(()) => ENOTSUP,
                Err(_) => EFAULT,
            },
        )?;
        l.func_wrap(
            m,
            "sock_recv",
            |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, out: i32, flags: i32| {
                if write_u32(&mut c, out, 0).is_err() || write(&mut c, flags, &[0, 0]).is_err() {
                    return EFAULT;
                }
                ENOTSUP
            },
        )?;
        l.func_wrap(
            m,
            "sock_send",
            |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32, out: i32| match write_u32(
                &mut c, out, 0,
            ) {
                Ok(()) => ENOTSUP,
                Err(_) => EFAULT,
            },
        )?;
        l.func_wrap(m, "sock_shutdown", |_: Caller<'_, Host>, _: i32, _: i32| {
            ENOTSUP
        })?;
        // Envoy passes no environment and no arguments.
        l.func_wrap(m, "environ_get", |_: Caller<'_, Host>, _: i32, _: i32| {
            ESUCCESS
        })?;
        l.func_wrap(
            m,
            "environ_sizes_get",
            |mut c: Caller<'_, Host>, count: i32, size: i32| {
                if write_u32(&mut c, count, 0).is_err() || write_u32(&mut c, size, 0).is_err() {
                    return EFAULT;
                }
                ESUCCESS
            },
        )?;
        l.func_wrap(m, "args_get", |_: Caller<'_, Host>, _: i32, _: i32| {
            ESUCCESS
        })?;
        l.func_wrap(
            m,
            "args_sizes_get",
            |mut c: Caller<'_, Host>, argc: i32, size: i32| {
                if write_u32(&mut c, argc, 0).is_err() || write_u32(&mut c, size, 0).is_err() {
                    return EFAULT;
                }
                ESUCCESS
            },
        )?;
        l.func_wrap(
            m,
            "clock_time_get",
            |mut c: Caller<'_, Host>, id: i32, _prec: i64, out: i32| {
                let t = match id {
                    0 => now_nanos(false),
                    1 => now_nanos(true),
                    _ => return ENOTSUP,
                };
                match write(&mut c, out, &t.to_le_bytes()) {
                    Ok(()) => ESUCCESS,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(
            m,
            "clock_res_get",
            |mut c: Caller<'_, Host>, id: i32, out: i32| {
                if id != 0 && id != 1 {
                    return ENOTSUP;
                }
                match write(&mut c, out, &1u64.to_le_bytes()) {
                    Ok(()) => ESUCCESS,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(
            m,
            "random_get",
            |mut c: Caller<'_, Host>, buf: i32, len: i32| {
                let len = len as u32;
                if len > RANDOM_MAX {
                    return EINVAL;
                }
                if len == 0 {
                    return ESUCCESS;
                }
                let mut b = vec![0u8; len as usize];
                if getrandom::getrandom(&mut b).is_err() {
                    return EFAULT;
                }
                match write(&mut c, buf, &b) {
                    Ok(()) => ESUCCESS,
                    Err(_) => EFAULT,
                }
            },
        )?;
        l.func_wrap(m, "sched_yield", |_: Caller<'_, Host>| ESUCCESS)?;
        l.func_wrap(
            m,
            "poll_oneoff",
            |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, nevents: i32| match write_u32(
                &mut c, nevents, 0,
            ) {
                Ok(()) => ESUCCESS,
                Err(_) => EFAULT,
            },
        )?;
        // cpp-host proc_exit only logs and returns; the module then runs into
        // `unreachable`. Trapping here ends up in the same failed state.
        l.func_wrap(
            m,
            "proc_exit",
            |_: Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
                Err(wasmtime::format_err!("wasi proc_exit({code})"))
            },
        )?;
    }
    Ok(())
}

//! `IoBackendChoice::Auto` really falls back to std when the kernel refuses
//! io_uring: this test binary re-runs itself in a child process that installs
//! a seccomp filter making `io_uring_setup` fail with EPERM (as container
//! runtimes do), then opens backends there.
#![cfg(target_arch = "x86_64")]

use std::process::Command;

use bytes::Bytes;
use rill_storage::io::{open_backend, BackendKind, IoBackendChoice};

/// Set in the child's environment; the child half runs only when it is.
const CHILD_ENV: &str = "RILL_IO_FALLBACK_CHILD";
const CHILD_TEST: &str = "io_fallback::child_auto_falls_back_under_seccomp";
/// Printed by the child once every assertion has passed.
const CHILD_OK_MARKER: &str = "rill-io-fallback-child-ok";

/// `AUDIT_ARCH_X86_64` from linux/audit.h: EM_X86_64 (62) with the 64-bit
/// and little-endian flags; libc does not export it.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

#[test]
fn auto_falls_back_to_std_when_io_uring_setup_is_refused() {
    if let Err(e) = open_backend(IoBackendChoice::Uring) {
        // The fallback is still proven below, only less sharply.
        eprintln!("note: io_uring is unavailable here even without seccomp: {e}");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(CHILD_OK_MARKER),
        "child did not run its checks\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// The child half: does nothing unless started by the test above.
#[test]
fn child_auto_falls_back_under_seccomp() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    deny_io_uring_setup();

    let err = open_backend(IoBackendChoice::Uring)
        .expect_err("io_uring must be refused under the filter");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EPERM),
        "unexpected error: {err}"
    );

    let backend = open_backend(IoBackendChoice::Auto).unwrap();
    assert_eq!(backend.kind(), BackendKind::Std);
    let dir = tempfile::tempdir().unwrap();
    let f = backend.open(&dir.path().join("fallback.log")).unwrap();
    f.write_at(0, Bytes::from_static(b"fell back"))
        .wait()
        .unwrap();
    f.sync_data().wait().unwrap();
    let mut buf = [0u8; 9];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"fell back");
    assert_eq!(backend.stats().data_syncs, 1);

    println!("{CHILD_OK_MARKER}");
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::try_from(code).unwrap(),
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::try_from(code).unwrap(),
        jt,
        jf,
        k,
    }
}

/// Installs, for every thread of this process, a seccomp filter under which
/// `io_uring_setup` fails with EPERM and every other syscall is allowed.
fn deny_io_uring_setup() {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let arch_offset = u32::try_from(std::mem::offset_of!(libc::seccomp_data, arch)).unwrap();
    let nr_offset = u32::try_from(std::mem::offset_of!(libc::seccomp_data, nr)).unwrap();
    let io_uring_setup = u32::try_from(libc::SYS_io_uring_setup).unwrap();
    let eperm = u32::try_from(libc::EPERM).unwrap();
    let mut filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, arch_offset),
        // A syscall of another ABI is not ours to judge: allow it.
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
        stmt(BPF_LD | BPF_W | BPF_ABS, nr_offset),
        jump(BPF_JMP | BPF_JEQ | BPF_K, io_uring_setup, 0, 1),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ERRNO | eperm),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl with integer arguments; no_new_privs is what lets
    // an unprivileged process install a filter.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_NO_NEW_PRIVS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `prog` and the `filter` array it points to live across the
    // call; the kernel copies the program before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(
        rc,
        0,
        "seccomp(SET_MODE_FILTER): {}",
        std::io::Error::last_os_error()
    );
}

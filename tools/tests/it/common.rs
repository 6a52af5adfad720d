//! A real broker in this test process (127.0.0.1:0, temp dir) and the real
//! `rill` binary run as a child process against it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use rill_broker::{Broker, BrokerConfig, BrokerHandle};

/// A broker running on its own runtime while the test thread runs `rill`.
pub struct TestBroker {
    pub addr: String,
    handle: Option<BrokerHandle>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let handle = runtime
            .block_on(Broker::start(config))
            .expect("broker starts");
        TestBroker {
            addr: handle.local_addr().to_string(),
            handle: Some(handle),
            runtime,
            _dir: dir,
        }
    }

    /// Runs `rill --broker ADDR args...`.
    pub fn rill(&self, args: &[&str]) -> Output {
        let mut full = vec!["--broker", self.addr.as_str()];
        full.extend_from_slice(args);
        rill(&full, None)
    }

    /// Runs `rill --broker ADDR args...` with `input` on stdin.
    pub fn rill_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut full = vec!["--broker", self.addr.as_str()];
        full.extend_from_slice(args);
        rill(&full, Some(input))
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }
}

/// Runs the `rill` binary with a clean environment for its own variables.
pub fn rill(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(args)
        .env_remove("RILL_BROKER")
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rill starts");
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("stdin piped");
        stdin.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("rill runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing stderr when not.
pub fn ok(o: &Output) -> &Output {
    assert!(
        o.status.success(),
        "rill failed ({:?}): {}",
        o.status.code(),
        stderr(o)
    );
    o
}

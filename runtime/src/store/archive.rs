//! `--file_slice_archive_script`: a removed slice's files are handed to an operator
//! script instead of being deleted (STORES §1.7). The script runs in the background so
//! that a slow archive never stalls publishing.

use std::fs::File;
use std::io::Read;
use std::os::unix::io::FromRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use stan_core::log::Level;

use super::env::{reason, LogSink};

/// Runs `script <channel> <dat> <idx>` on its own thread and logs its combined output.
pub(crate) fn spawn(log: LogSink, script: String, channel: String, dat: PathBuf, idx: PathBuf) {
    let name = format!("archive {channel}");
    let job = move || {
        let (dat_s, idx_s) = (dat.display().to_string(), idx.display().to_string());
        match run(&script, &channel, &dat_s, &idx_s) {
            Ok(out) => log(
                Level::Info,
                &format!("Output of archive script for {channel} ({dat_s} and {idx_s}): {out}"),
            ),
            Err((err, out)) => log(
                Level::Info,
                &format!("Error invoking archive script {script:?}: {err} (output={out})"),
            ),
        }
    };
    if std::thread::Builder::new().name(name).spawn(job).is_err() {
        // No thread to spare: the files stay renamed for the operator to handle.
    }
}

/// Runs the script with stdout and stderr on one pipe, so that the output reads in
/// the order it was written.
fn run(script: &str, channel: &str, dat: &str, idx: &str) -> Result<String, (String, String)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err((format!("pipe: {}", reason(&e)), String::new()));
    }
    let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let wr2 = match wr.try_clone() {
        Ok(f) => f,
        Err(e) => return Err((reason(&e), String::new())),
    };
    let child = Command::new(script)
        .args([channel, dat, idx])
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Err((format!("fork/exec {script}: {}", reason(&e)), String::new())),
    };
    let mut out = Vec::new();
    let _ = rd.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    match child.wait() {
        Ok(st) if st.success() => Ok(out),
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            let err = match (st.code(), st.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(s)) => format!("signal: {s}"),
                _ => "unknown exit status".to_owned(),
            };
            Err((err, out))
        }
        Err(e) => Err((reason(&e), out)),
    }
}

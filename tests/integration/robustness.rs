//! The real binary over every file in the shared pcap corpus, malformed ones included:
//! no panic, no hang, and every run ends with output or a clear error and a known exit code.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common;

/// Generous per-file limit: the largest corpus file takes well under a second in debug builds.
const PER_FILE_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn every_corpus_file_ends_cleanly() {
    let files = common::files_below(&common::corpus());
    assert!(
        files.len() > 1000,
        "corpus not found at {}",
        common::corpus().display()
    );
    let binary = env!("CARGO_BIN_EXE_podwire");
    let next = Mutex::new(0usize);
    let problems = Mutex::new(Vec::<String>::new());
    let outcomes = Mutex::new([0usize; 4]); // ok, damaged, not a capture / error, other
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(path) = files.get(index) else { break };
                    let started = Instant::now();
                    let mut child = Command::new(binary)
                        .arg("stats")
                        .arg("--no-progress")
                        .arg(path)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn podwire");
                    let status = loop {
                        if let Some(status) = child.try_wait().expect("wait") {
                            break Some(status);
                        }
                        if started.elapsed() > PER_FILE_LIMIT {
                            let _ = child.kill();
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    };
                    let output = child.wait_with_output().expect("output");
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let shown = path.display();
                    match status.and_then(|s| s.code()) {
                        None => problems
                            .lock()
                            .unwrap()
                            .push(format!("{shown}: hung or was killed by a signal")),
                        Some(_) if stderr.contains("panicked") => problems
                            .lock()
                            .unwrap()
                            .push(format!("{shown}: panicked: {stderr}")),
                        Some(0) if stdout.contains("packets") => outcomes.lock().unwrap()[0] += 1,
                        Some(3) if stdout.contains("packets") && stderr.contains("damaged") => {
                            outcomes.lock().unwrap()[1] += 1
                        }
                        Some(1) if stderr.starts_with("podwire: ") && stderr.trim().len() > 20 => {
                            outcomes.lock().unwrap()[2] += 1
                        }
                        Some(code) => problems.lock().unwrap().push(format!(
                            "{shown}: exit {code}, stdout {stdout:?}, stderr {stderr:?}"
                        )),
                    }
                }
            });
        }
    });
    let [ok, damaged, errors, _] = *outcomes.lock().unwrap();
    println!(
        "corpus robustness: {} files: {ok} read fully, {damaged} damaged but partly read (exit 3), {errors} rejected with an error (exit 1)",
        files.len()
    );
    let problems = problems.into_inner().unwrap();
    for p in problems.iter().take(20) {
        println!("PROBLEM {p}");
    }
    assert!(problems.is_empty(), "{} files misbehaved", problems.len());
}

//! Robustness over the whole pcap corpus (malformed captures included): every flow of every
//! capture goes through the dissectors without a panic, and the budget returns to zero once
//! the flows are dropped. `DISSECT_DUMP=<capture path>` prints each flow's JSON result.

use crate::dissect_pcap as pcap;

#[test]
fn no_panic_on_corpus_and_budget_returns() {
    let Some(root) = pcap::corpora() else {
        eprintln!("corpora not found: skipping (set PODWIRE_CORPORA)");
        return;
    };
    let dump = std::env::var("DISSECT_DUMP").ok();
    let files = match &dump {
        Some(p) => vec![std::path::PathBuf::from(p)],
        None => pcap::captures(&root.join("pcap")),
    };
    let mut flows_total = 0usize;
    for path in &files {
        let dissected = pcap::dissect_file(path);
        let pcap::Dissected { flows, engine } = dissected;
        let budget = engine.dissect_budget();
        flows_total += flows.len();
        if dump.is_some() {
            for (k, f) in &flows {
                println!(
                    "{k:?} init_a={} pkts={} want_more={}\n  {}",
                    f.initiator_is_a,
                    f.packets,
                    f.dissector.wants_more(),
                    serde_json::to_string(f.dissector.result()).unwrap_or_default()
                );
            }
            println!(
                "budget stats: {:?} in_use {}",
                budget.stats,
                budget.in_use()
            );
        }
        drop(flows);
        assert_eq!(budget.in_use(), 0, "budget leak in {}", path.display());
    }
    println!(
        "{} captures, {} flows dissected without panic",
        files.len(),
        flows_total
    );
}

//! Shell for `podwire suggest` and `podwire whatif`: reads the capture, snapshot and policy
//! files, runs the pure synthesis / verification and writes YAML and reports.
//!
//! Exit codes of `suggest`: 0 verified; 6 verification found a kept flow denied or an excluded
//! flow allowed (the report says which); 3 the capture was damaged; 1 an error.
//! `whatif`: 0 no verdict changes, 4 some verdict changes (scripts can branch on it).

#![allow(clippy::disallowed_methods)] // a shell: reads captures and manifests, writes files

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ipnet::IpNet;

use super::{SuggestOptions, render, suggest, verify};
use crate::cli::{EXIT_DAMAGED, Tuning};
use crate::findings::commands::{findings_of, load_rules, summarize_capture};

/// Exit code when verification fails.
pub const EXIT_UNVERIFIED: i32 = 6;
/// Exit code of `whatif` when some verdict changes.
pub const EXIT_CHANGES: i32 = 4;

/// `podwire suggest`.
#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Capture file.
    pub file: PathBuf,
    /// Cluster snapshot (required: policies select pods by their labels).
    #[arg(long)]
    pub cluster: PathBuf,
    /// Write networkpolicies.yaml, report.txt (and cilium.yaml) into this directory instead of
    /// printing the YAML on stdout and the report on stderr.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also allow traffic behind attack-like findings (scan, metadata, kubelet/etcd, lateral…).
    #[arg(long)]
    pub include_flagged: bool,
    /// Aggregate external addresses inside this CIDR into one ipBlock (repeatable).
    #[arg(long)]
    pub cidr: Vec<IpNet>,
    /// Also write CiliumNetworkPolicies with toFQDNs from the DNS answers seen.
    #[arg(long)]
    pub cilium: bool,
    /// Findings rules file (thresholds decide what is excluded).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// Output of `podwire whatif`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WhatifFormat {
    Table,
    Jsonl,
}

/// `podwire whatif`.
#[derive(Debug, Args)]
pub struct WhatifArgs {
    /// Capture file.
    pub file: PathBuf,
    /// Cluster snapshot.
    #[arg(long)]
    pub cluster: PathBuf,
    /// NetworkPolicy manifests to add (a policy with an existing namespace/name replaces it).
    #[arg(long, required = true)]
    pub policy: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = WhatifFormat::Table)]
    pub format: WhatifFormat,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// `podwire suggest`.
pub fn run_suggest(args: &SuggestArgs) -> Result<i32> {
    let rules = load_rules(args.rules.as_deref())?;
    let captured = summarize_capture(&args.file, Some(&args.cluster), &args.tuning)?;
    let Some(state) = captured.cluster.as_ref() else {
        bail!("no cluster state loaded");
    };
    let report = findings_of(&captured, &rules, None);
    let options = SuggestOptions {
        include_flagged: args.include_flagged,
        cidrs: args.cidr.clone(),
    };
    let suggestion = suggest(
        state,
        &captured.flows,
        &report.findings,
        &captured.dns,
        &options,
    );
    let verification = verify::verify(state, &suggestion);
    let yaml = render::policies_yaml(&suggestion);
    let text = render::report(&suggestion, &verification);
    let cilium = args.cilium.then(|| render::cilium_yaml(&suggestion));
    match &args.output {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let write = |name: &str, body: &str| {
                let p = dir.join(name);
                std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
            };
            write("networkpolicies.yaml", &yaml)?;
            write("report.txt", &text)?;
            if let Some(c) = &cilium {
                write("cilium.yaml", c)?;
            }
            eprintln!(
                "podwire: wrote {} policies to {} (verification: {})",
                suggestion.policies.len(),
                dir.display(),
                if verification.ok() {
                    "OK"
                } else {
                    "FAILED, see report.txt"
                }
            );
        }
        None => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            out.write_all(yaml.as_bytes())?;
            if let Some(c) = cilium.filter(|c| !c.is_empty()) {
                out.write_all(b"---\n")?;
                out.write_all(c.as_bytes())?;
            }
            out.flush()?;
            eprint!("{text}");
        }
    }
    if !verification.ok() {
        return Ok(EXIT_UNVERIFIED);
    }
    Ok(if captured.read.damage.is_some() {
        EXIT_DAMAGED
    } else {
        0
    })
}

/// `podwire whatif`.
pub fn run_whatif(args: &WhatifArgs) -> Result<i32> {
    let mut extra = Vec::new();
    for p in &args.policy {
        extra.extend(
            crate::cluster::snapshot::load_policies(p)
                .with_context(|| format!("loading {}", p.display()))?,
        );
    }
    let captured = summarize_capture(&args.file, Some(&args.cluster), &args.tuning)?;
    let Some(state) = captured.cluster.as_ref() else {
        bail!("no cluster state loaded");
    };
    let changes = verify::verdict_changes(state, &captured.flows, &extra);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.format {
        WhatifFormat::Jsonl => {
            for c in &changes {
                writeln!(out, "{}", serde_json::to_string(c)?)?;
            }
        }
        WhatifFormat::Table => {
            for c in &changes {
                writeln!(
                    out,
                    "flow {:<4} {}: {} → {}\n    before: {}\n    after:  {}",
                    c.serial,
                    c.edge,
                    if c.before_allowed {
                        "allowed"
                    } else {
                        "DENIED"
                    },
                    if c.after_allowed { "allowed" } else { "DENIED" },
                    c.before,
                    c.after
                )?;
            }
            writeln!(
                out,
                "{} of {} flows change verdict under {} added policies",
                changes.len(),
                captured.flows.len(),
                extra.len()
            )?;
        }
    }
    Ok(if changes.is_empty() { 0 } else { EXIT_CHANGES })
}

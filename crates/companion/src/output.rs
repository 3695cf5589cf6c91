//! How the companion's answers are printed: tables for people (coloured only on a
//! terminal), JSON or YAML for scripts.

use comfy_table::{Cell, Color, Table, presets};
use serde::Serialize;

use crate::plan::Plan;
use crate::status::Status;

/// `-o`: the output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables and lines for people.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `value` as JSON or YAML, or `None` for [`Format::Text`].
pub fn structured<T: Serialize>(value: &T, format: Format) -> Option<String> {
    match format {
        Format::Text => None,
        Format::Json => Some(serde_json::to_string_pretty(value).expect("serializes") + "\n"),
        Format::Yaml => Some(serde_saphyr::to_string(value).expect("serializes")),
    }
}

/// A table without borders, as kubectl prints them.
fn table(colour: bool, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    if colour {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t.set_header(header.iter().map(Cell::new));
    t
}

/// A cell coloured by whether it is good news.
fn verdict(text: &str, good: bool) -> Cell {
    Cell::new(text).fg(if good { Color::Green } else { Color::Yellow })
}

/// The table's lines, without the blank comfy-table pads the first column with on the left
/// and the last one on the right (so they start at the margin, as kubectl's do).
fn lines(t: &Table) -> String {
    t.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(&l).trim_end().to_string() + "\n")
        .collect()
}

/// `mizzen status` for people.
pub fn status_text(s: &Status, colour: bool) -> String {
    let mut out = String::new();
    if !s.istios.is_empty() {
        let mut t = table(
            colour,
            &[
                "ISTIO",
                "NAMESPACE",
                "STRATEGY",
                "VERSION",
                "RESOLVED",
                "STATE",
                "ACTIVE REVISION",
            ],
        );
        for i in &s.istios {
            t.add_row(vec![
                Cell::new(&i.name),
                Cell::new(&i.namespace),
                Cell::new(&i.strategy),
                Cell::new(&i.version),
                Cell::new(&i.resolved),
                verdict(&i.state, i.ready),
                Cell::new(&i.active_revision),
            ]);
        }
        out += &lines(&t);
        out += "\n";
        let mut t = table(
            colour,
            &[
                "REVISION", "ISTIO", "VERSION", "ACTIVE", "READY", "IN USE", "USED BY",
            ],
        );
        for i in &s.istios {
            for r in &i.revisions {
                let used_by = match r.pruned_in_seconds {
                    Some(secs) => format!("nothing; pruned in {secs}s"),
                    None if r.in_use_by.is_empty() => "nothing".to_string(),
                    None => r.in_use_by.join(", "),
                };
                t.add_row(vec![
                    Cell::new(&r.name),
                    Cell::new(&i.name),
                    Cell::new(&r.version),
                    Cell::new(if r.active { "*" } else { "" }),
                    verdict(&r.ready, r.ready == "True"),
                    Cell::new(&r.in_use),
                    Cell::new(used_by),
                ]);
            }
        }
        out += &lines(&t);
        out += "\n";
    }
    let data_plane: Vec<_> = [&s.istio_cni, &s.ztunnel].into_iter().flatten().collect();
    if !data_plane.is_empty() {
        let mut t = table(
            colour,
            &[
                "COMPONENT",
                "NAME",
                "NAMESPACE",
                "VERSION",
                "STATE",
                "NODES UPDATED",
                "CONTROL PLANE",
            ],
        );
        for d in data_plane {
            t.add_row(vec![
                Cell::new(&d.kind),
                Cell::new(&d.name),
                Cell::new(&d.namespace),
                Cell::new(&d.version),
                verdict(&d.state, d.ready),
                Cell::new(format!("{}/{}", d.nodes_updated, d.nodes_total)),
                Cell::new(d.control_planes.join(", ")),
            ]);
        }
        out += &lines(&t);
        out += "\n";
    }
    if !s.tags.is_empty() {
        let mut t = table(colour, &["TAG", "TARGET", "REVISION", "IN USE"]);
        for tag in &s.tags {
            t.add_row(vec![
                Cell::new(&tag.name),
                Cell::new(&tag.target),
                Cell::new(&tag.revision),
                Cell::new(&tag.in_use),
            ]);
        }
        out += &lines(&t);
        out += "\n";
    }
    if !s.skew.is_empty() {
        out += &format!("Skew ({}):\n", crate::plan::DATA_PLANE_RULE);
        for k in &s.skew {
            let verdict = if k.ok {
                "ok".to_string()
            } else {
                k.detail.clone()
            };
            out += &format!(
                "  {} {} with {} {}: {verdict}\n",
                k.component, k.version, k.control_plane, k.control_plane_version
            );
        }
        out += "\n";
    }
    for e in &s.end_of_life {
        out += &format!("End of life: {e}\n");
    }
    out += &format!("Next: {}\n", s.next);
    out
}

/// `mizzen plan` for people.
pub fn plan_text(p: &Plan, colour: bool) -> String {
    let mut out = format!(
        "Plan for Istio {} ({:?}): {} -> {}",
        p.istio, p.strategy, p.from, p.to
    );
    if p.hops.len() > 1 {
        out += &format!(", through {}", p.hops.join(", "));
    }
    out += "\n";
    if let Some(why) = &p.why_hops {
        out += &format!("{why}\n");
    }
    if p.steps.is_empty() {
        out += &format!("Nothing to do: everything already runs {}.\n", p.to);
        return out;
    }
    out += "\n";
    let mut t = table(colour, &["STEP", "RESOURCE", "FROM", "TO", "CHECKS"]);
    for (i, s) in p.steps.iter().enumerate() {
        let checks = s
            .checks
            .iter()
            .map(|c| {
                if c.ok {
                    format!("ok: {}", c.detail.trim_end_matches(": ok"))
                } else {
                    format!("BROKEN: {}", c.detail)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        t.add_row(vec![
            Cell::new(format!("{} {}", i + 1, s.kind.name())),
            Cell::new(format!("{} {}", s.kind.kind(), s.name)),
            Cell::new(&s.from),
            Cell::new(&s.to),
            verdict(&checks, s.checks.iter().all(|c| c.ok)),
        ]);
    }
    out += &lines(&t);
    if p.steps.iter().any(|s| !s.effects.is_empty()) {
        out += "\nWhat each step does:\n";
        for (i, s) in p.steps.iter().enumerate() {
            out += &format!(
                "{} {} ({} {}):\n",
                i + 1,
                s.kind.name(),
                s.kind.kind(),
                s.name
            );
            for e in &s.effects {
                out += &format!("    {e}\n");
            }
        }
    }
    out
}

/// Progress on a terminal: a spinner, or a bar of nodes updated for the data plane.
pub struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
    what: String,
}

impl BarProgress {
    /// Progress drawn on stderr.
    pub fn new() -> Self {
        Self {
            bar: None,
            what: String::new(),
        }
    }
}

impl Default for BarProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::upgrade::Progress for BarProgress {
    fn start(&mut self, what: &str) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message(what.to_string());
        self.what = what.to_string();
        self.bar = Some(bar);
    }

    fn update(&mut self, message: &str, nodes: Option<(i32, i32)>) {
        let Some(bar) = &self.bar else { return };
        match nodes {
            Some((updated, total)) if total > 0 => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix} [{bar:30}] {pos}/{len} nodes  {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(self.what.clone());
                bar.set_length(total as u64);
                bar.set_position(updated.max(0) as u64);
                bar.set_message(message.to_string());
            }
            _ => bar.set_message(format!("{}: {message}", self.what)),
        }
    }

    fn finish(&mut self, message: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !message.is_empty() {
            eprintln!("{message}");
        }
    }

    fn line(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

/// Progress as plain lines on stderr (not a terminal): one line per change.
#[derive(Default)]
pub struct LineProgress {
    what: String,
}

impl crate::upgrade::Progress for LineProgress {
    fn start(&mut self, what: &str) {
        self.what = what.to_string();
        eprintln!("{what}");
    }

    fn update(&mut self, message: &str, nodes: Option<(i32, i32)>) {
        match nodes {
            Some((updated, total)) if total > 0 => {
                eprintln!("  {updated}/{total} nodes updated: {message}")
            }
            _ => eprintln!("  {message}"),
        }
    }

    fn finish(&mut self, message: &str) {
        if !message.is_empty() {
            eprintln!("{message}");
        }
    }

    fn line(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

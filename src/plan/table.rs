//! `skulk plan -o table`: a plan for people.
//!
//! One row per rank with its memory arithmetic (the same numbers the
//! infeasible-plan errors show), then the context limit, the requests served
//! at once, the ring port and the API endpoint. Pure: the caller decides about colour (a terminal and
//! no `NO_COLOR`) and prints. Widths never depend on the terminal, so the
//! output is the same bytes wherever it is rendered.

use comfy_table::{presets, Attribute, Cell, CellAlignment, Color, Table};

use super::{join_host_port, Choice, Plan, UnusedWhy};

/// Host names listed per reason in the "not used" line before the rest are
/// counted (an inventory of 80 hosts stays one line).
const NAMES_SHOWN: usize = 6;

const GIB: f64 = (1u64 << 30) as f64;

fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / GIB)
}

/// Renders the plan as a table and a few summary lines.
pub fn render(plan: &Plan, color: bool) -> String {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let header = [
        "rank",
        "host",
        "address",
        "layers",
        "count",
        "weights GiB",
        "KV GiB",
        "need GiB",
        "usable GiB",
        "headroom",
        "backend",
    ];
    table.set_header(header.iter().map(|h| {
        let cell = Cell::new(h);
        if color {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }));
    for rank in &plan.ranks {
        let headroom = rank.usable as i128 - rank.memory.need as i128;
        let headroom_text = format!("{:+.2}", headroom as f64 / GIB);
        let mut headroom_cell = Cell::new(headroom_text);
        if color && headroom < 0 {
            headroom_cell = headroom_cell.fg(Color::Red);
        }
        table.add_row(vec![
            Cell::new(rank.rank),
            Cell::new(&rank.host.name),
            Cell::new(&rank.host.address),
            Cell::new(format!("[{}, {})", rank.start_layer, rank.end_layer)),
            Cell::new(rank.layer_count()),
            Cell::new(gib(rank.memory.weights)),
            Cell::new(gib(rank.memory.kv)),
            Cell::new(gib(rank.memory.need)),
            Cell::new(gib(rank.usable)),
            headroom_cell,
            Cell::new(&rank.resolved_backend),
        ]);
    }
    for index in [0, 4, 5, 6, 7, 8, 9] {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }

    let mut out = format!(
        "{} on {} host{}: {} sharding, {} instance, engine {}\n",
        plan.card.model_id,
        plan.ranks.len(),
        if plan.ranks.len() == 1 { "" } else { "s" },
        plan.sharding,
        plan.instance,
        plan.engine
    );
    out.push_str(&table.to_string());
    out.push('\n');
    out.push_str(&hosts_lines(plan));
    let context = match plan.context_token_limit {
        Some(limit) => format!("{limit} tokens"),
        None => "not bounded by the card or by memory".to_string(),
    };
    out.push_str(&format!(
        "context limit: {context} (KV memory reserved for {} tokens)\n",
        plan.kv_budget_tokens
    ));
    out.push_str(&format!(
        "requests: {} at once sharing that context, {} more waiting\n",
        plan.serving.parallel, plan.serving.queue
    ));
    out.push_str(&format!("ring port: {}\n", plan.ring_port));
    out.push_str(&format!(
        "API: http://{}/v1",
        join_host_port(&plan.api.address, plan.api.port)
    ));
    if let Some(n) = plan.api.max_tokens {
        out.push_str(&format!(
            " ({n} generated tokens per request unless it sets `max_tokens`)"
        ));
    }
    out.push('\n');
    out
}

/// When hosts of the inventory got no rank: how many were used and why the
/// others were not, so a plan on fewer hosts than listed is never a
/// surprise. Empty when every host has a rank.
fn hosts_lines(plan: &Plan) -> String {
    if plan.unused.is_empty() {
        return String::new();
    }
    let used = plan.ranks.len();
    let eligible = used
        + plan
            .unused
            .iter()
            .filter(|u| u.why == UnusedWhy::NotNeeded)
            .count();
    let how = match plan.chosen_by {
        Choice::Named => "the hosts named by `--nodes`".to_string(),
        Choice::Fewest { min_nodes: Some(m) } if m as usize == used => {
            format!("as `--min-nodes {m}` asks")
        }
        Choice::Fewest { .. } => "the fewest that fit".to_string(),
    };
    let mut out = format!("using {used} of {} hosts ({how})", plan.inventory_hosts);
    if plan.chosen_by != Choice::Named && eligible > used {
        out.push_str(&format!(
            "; `--min-nodes {eligible}` to spread the model over every host that can run it"
        ));
    }
    out.push('\n');
    let mut groups: Vec<(UnusedWhy, Vec<&str>)> = Vec::new();
    for u in &plan.unused {
        match groups.iter_mut().find(|(why, _)| *why == u.why) {
            Some((_, names)) => names.push(&u.name),
            None => groups.push((u.why, vec![&u.name])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(why, names)| {
            let mut shown: Vec<String> = names
                .iter()
                .take(NAMES_SHOWN)
                .map(|n| format!("`{n}`"))
                .collect();
            if names.len() > NAMES_SHOWN {
                shown.push(format!("{} more", names.len() - NAMES_SHOWN));
            }
            format!("{} ({why})", shown.join(", "))
        })
        .collect();
    out.push_str(&format!("not used: {}\n", parts.join("; ")));
    out
}

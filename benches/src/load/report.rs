//! The run's report, as one line of JSON or as text: the same fields for every
//! target, with `target` saying which was measured.

use super::run::{Options, Outcome};

/// Above this share of its core the generator may be what limits a figure.
const GENERATOR_BUSY: f64 = 85.0;

/// Prints the report of a run against `target` (`baatkaro` or `redis`). Returns
/// whether every check passed: nothing lost, duplicated or reordered.
pub fn print(target: &str, a: &Options, o: &Outcome) -> bool {
    let secs = o.elapsed.as_secs_f64();
    let total = |f: fn(&super::check::Seen) -> u64| o.seen.iter().map(f).sum::<u64>();
    let delivered = total(|s| s.delivered);
    let lost = total(|s| s.lost);
    let duplicated = total(|s| s.duplicated);
    let reordered = total(|s| s.reordered);
    let bytes = total(|s| s.bytes);
    let sent = (a.groups * a.members * a.messages) as f64;
    let (cpu, rss) = o.server.map_or((None, None), |(c, r)| (Some(c), Some(r)));
    let hist = &o.latencies;
    let q = |p: f64| hist.value_at_quantile(p);
    let generator_cpu = o.generator_cpu;
    let lower_bound = generator_cpu.is_some_and(|c| c > GENERATOR_BUSY);
    // What the generator spends per delivery, and so what one core of it could
    // drive: the figure that says whether it or the server limits a run.
    let ns_per_delivery =
        generator_cpu.filter(|_| delivered > 0).map(|c| c / 100.0 * secs * 1e9 / delivered as f64);
    let capacity = ns_per_delivery.filter(|ns| *ns > 0.0).map(|ns| 1e9 / ns);
    let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    // Open loop only: how late the generator itself wrote messages.
    let late =
        |p: f64| (!o.lateness.is_empty()).then(|| o.lateness.value_at_quantile(p).to_string());
    if a.json {
        println!(
            "{{\"target\":\"{target}\",\"deliveries_per_sec\":{:.0},\"sent_per_sec\":{:.0},\"lost\":{lost},\"duplicated\":{duplicated},\"reordered\":{reordered},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"send_late_p50_us\":{},\"send_late_p99_us\":{},\"server_cpu_s\":{},\"server_rss_bytes\":{},\"server_rss_quarters\":{},\"generator_cpu_pct\":{},\"generator_ns_per_delivery\":{},\"generator_capacity_per_sec\":{},\"lower_bound\":{lower_bound},\"delivered\":{delivered},\"bytes\":{bytes},\"seconds\":{secs:.3}}}",
            delivered as f64 / secs,
            sent / secs,
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max(),
            or_null(late(0.5)),
            or_null(late(0.99)),
            or_null(cpu.map(|c| format!("{c:.2}"))),
            or_null(rss.map(|r| r.to_string())),
            or_null(o.rss_quarters.map(|q| format!("[{},{},{},{}]", q[0], q[1], q[2], q[3]))),
            or_null(generator_cpu.map(|c| format!("{c:.0}"))),
            or_null(ns_per_delivery.map(|ns| format!("{ns:.0}"))),
            or_null(capacity.map(|c| format!("{c:.0}"))),
        );
    } else {
        println!(
            "{target}: groups {} x members {}, {} messages of {} B each, {}",
            a.groups,
            a.members,
            a.messages,
            a.size,
            match a.rate {
                Some(r) => format!("open loop at {r} messages/s in all"),
                None => format!("saturation with {} in flight per member", a.window),
            } + if a.private { ", private messages between pairs" } else { "" }
        );
        println!("deliveries  {delivered} in {secs:.2} s = {:.0}/s", delivered as f64 / secs);
        println!("sent        {sent:.0} = {:.0}/s", sent / secs);
        println!(
            "latency     p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max()
        );
        if let (Some(p50), Some(p99)) = (late(0.5), late(0.99)) {
            println!(
                "send late   p50 {p50} us, p99 {p99} us: the generator's own delay in writing \
                 messages against their schedule, part of each latency above"
            );
        }
        println!("wire        {:.1} MB", bytes as f64 / 1e6);
        if let (Some(c), Some(r)) = (cpu, rss) {
            println!("server      {c:.2} s CPU during the run, peak RSS {} MiB", r >> 20);
        }
        if let Some(q) = o.rss_quarters {
            let mib = q.map(|b| b >> 20);
            println!(
                "server RSS  {} / {} / {} / {} MiB at a quarter, half, three quarters, the end",
                mib[0], mib[1], mib[2], mib[3]
            );
        }
        if let Some(c) = generator_cpu {
            let mark = if lower_bound { " (over 85 %: the figures are lower bounds)" } else { "" };
            println!("generator   {c:.0} % of its core{mark}");
        }
        if let (Some(ns), Some(cap)) = (ns_per_delivery, capacity) {
            println!(
                "            {ns:.0} ns per delivery: one core could take {cap:.0} deliveries/s"
            );
        }
        println!("checks      lost {lost}, duplicated {duplicated}, reordered {reordered}");
    }
    lost + duplicated + reordered == 0
}

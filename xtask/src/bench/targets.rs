//! The targets: each ratio against its peer or floor measured in the same run, and its
//! interval where a ratio compares small losses.

use crate::target::Target;

use super::{
    kernel::kernel_targets,
    live::{LiveResult, STORMS, TCP_STREAM, live_medians, median_u64},
    offline::{ANALYSIS, Row},
};

/// Target 7: each attribution hook against the empty program at its hook; target 8: what a
/// non-NTP flood's (and a TCP stream's) sender loses with ntptap as it runs by default,
/// against ntptap with attribution and drops off; target 13: a socket()+close() pair with
/// ntptap's default hooks against none.
pub(super) fn attribution_targets(
    owners: &[serde_json::Value],
    live: &[LiveResult],
) -> Vec<Target> {
    let mut out = Vec::new();
    for o in owners.iter().filter(|o| o["pair"].is_string()) {
        let ns = |key: &str| o[key].as_f64().unwrap_or(f64::NAN);
        let kind = o["pair"].as_str().unwrap_or("?");
        // The floor: an empty program at sock_release, the one default hook a pair runs.
        out.extend(Target::new(
            format!("13. socket() and close() of a {kind} socket, ntptap's default vs none"),
            ns("with_ns") / ns("without_ns"),
            1.1,
            true,
            Some(ns("floor_ns") / ns("without_ns")),
        ));
        out.extend(Target::new(
            format!(
                "13. socket() and close() of a {kind} socket, --attribution (every socket's creator) vs none"
            ),
            ns("every_ns") / ns("without_ns"),
            1.1,
            true,
            None,
        ));
    }
    for o in owners.iter().filter(|o| o["hook"].is_string()) {
        let (ours, empty) = (
            o["ntptap_ns"].as_f64().unwrap_or(f64::NAN),
            o["empty_ns"].as_f64().unwrap_or(f64::NAN),
        );
        out.extend(Target::new(
            format!(
                "7. attribution, {} vs empty program ({})",
                o["work"].as_str().unwrap_or("?"),
                o["hook"].as_str().unwrap_or("?")
            ),
            ours / empty,
            1.2,
            true,
            None,
        ));
    }
    for flood in ["non-NTP flood", TCP_STREAM] {
        let sent = |who: &str| {
            live.iter()
                .find(|r| r.flood == flood && r.contender == who)
                .map(|r| r.runs.iter().map(|x| x.sent).collect::<Vec<_>>())
        };
        if let (Some(on), Some(off), Some(none)) =
            (sent("ntptap tc"), sent("ntptap tc-off"), sent("none"))
        {
            let all: Vec<usize> = (0..none.len()).collect();
            let ratio = |rounds: &[usize]| loss_ratio(&on, &off, &none, rounds);
            let mut target = Target::new(
                format!(
                    "8. sender lost, {flood}, ntptap's default vs attribution and drops off (tc)"
                ),
                ratio(&all),
                1.05,
                true,
                None,
            );
            if let Some(t) = &mut target {
                let interval = bootstrap(none.len(), ratio);
                t.intervals = Some([interval, interval]);
            }
            out.extend(target);
        }
    }
    out
}

/// Target 9: the drop program against the empty program at `kfree_skb` on a drop that is not
/// NTP; target 10: what a storm of drops costs its sender with the drop program (`--drops`),
/// against ntptap without it (the default), for each storm.
pub(super) fn drop_targets(drops: &[serde_json::Value], live: &[LiveResult]) -> Vec<Target> {
    let mut out = Vec::new();
    for d in drops
        .iter()
        .filter(|d| d["work"].as_str().is_some_and(|w| w.contains("not NTP")))
    {
        let (ours, empty) = (
            d["ntptap_ns"].as_f64().unwrap_or(f64::NAN),
            d["empty_ns"].as_f64().unwrap_or(f64::NAN),
        );
        out.extend(Target::new(
            format!(
                "9. drops, {} vs empty program (tp_btf/kfree_skb)",
                d["work"].as_str().unwrap_or("?")
            ),
            ours / empty,
            1.2,
            true,
            None,
        ));
    }
    for storm in STORMS {
        let sent = |who: &str| {
            live.iter()
                .find(|r| r.flood == storm.0 && r.contender == who)
                .map(|r| median_u64(r.runs.iter().map(|x| x.sent).collect()))
        };
        if let (Some(on), Some(off)) = (sent("ntptap tc-drops"), sent("ntptap tc")) {
            // The floor: an empty program at kfree_skb against none at all.
            let floor = sent("empty kfree_skb")
                .zip(sent("none"))
                .map(|(empty, none)| empty as f64 / none.max(1) as f64);
            out.extend(Target::new(
                format!("10. sender kept, {}, drops on vs off (tc)", storm.0),
                on as f64 / off.max(1) as f64,
                0.97,
                false,
                floor,
            ));
        }
    }
    out
}

/// Target 11: what a flood that is not NTP, delivered to a socket, costs its sender with
/// `--latency` (attribution's hooks and the queue stamp) against ntptap without it.
pub(super) fn latency_targets(live: &[LiveResult]) -> Vec<Target> {
    let sent = |who: &str| {
        live.iter()
            .find(|r| r.flood == "non-NTP flood" && r.contender == who)
            .map(|r| median_u64(r.runs.iter().map(|x| x.sent).collect()))
    };
    let (Some(on), Some(off)) = (sent("ntptap tc-latency"), sent("ntptap tc")) else {
        return Vec::new();
    };
    Target::new(
        "11. sender kept, non-NTP flood, latency on vs off (tc)".to_owned(),
        on as f64 / off.max(1) as f64,
        0.95,
        false,
        None,
    )
    .into_iter()
    .collect()
}

pub(super) fn targets(
    rows: &[Row],
    kernel: &[serde_json::Value],
    live: &[LiveResult],
) -> Vec<Target> {
    let mut out = Vec::new();
    let mut push = |name: String, measured: f64, limit: f64, at_most: bool, floor: Option<f64>| {
        out.extend(Target::new(name, measured, limit, at_most, floor));
    };
    let ntp = "NTP flood";
    let other = "non-NTP flood";
    let tcpdump = live_medians(live, ntp, "tcpdump");
    // Target 3's rows, with their intervals: `push` cannot carry those.
    let mut losses = Vec::new();
    for hook in ["tc", "xdp"] {
        let contender = format!("ntptap {hook}");
        if let (Some(ours), Some(theirs)) = (live_medians(live, ntp, &contender), tcpdump) {
            push(
                format!("1. capture CPU per packet vs tcpdump ({hook})"),
                ours.per_us / theirs.per_us,
                0.5,
                true,
                None,
            );
            // Kept vs the no-capture baseline, relative to tcpdump's: the baseline cancels.
            push(
                format!("2. sender kept, NTP flood, vs tcpdump's ({hook})"),
                ours.sent as f64 / theirs.sent as f64,
                1.0,
                false,
                None,
            );
            push(
                format!("6. start to capturing, ms ({hook})"),
                ours.start.as_secs_f64() * 1e3,
                150.0,
                true,
                None,
            );
            push(
                format!("6. peak resident memory, MiB ({hook})"),
                ours.rss_kib as f64 / 1024.0,
                32.0,
                true,
                None,
            );
        }
        // With an expression, beside tcpdump with the same one: under the NTP flood (NTP from
        // one host) and under the other (the flood itself).
        for flood in [ntp, other] {
            let (ours, theirs) = (
                live_medians(live, flood, &format!("ntptap {hook}-expr")),
                live_medians(live, flood, "tcpdump expr"),
            );
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                push(
                    format!(
                        "7. capture CPU per packet with an expression vs tcpdump with it, {flood} ({hook})"
                    ),
                    ours.per_us / theirs.per_us,
                    0.5,
                    true,
                    None,
                );
            }
        }
        // The empty program at the same hook: what attaching anything there costs.
        let empty = format!("empty {hook}");
        let sent = |who: &str| {
            live.iter()
                .find(|r| r.flood == other && r.contender == who)
                .map(|r| r.runs.iter().map(|x| x.sent).collect::<Vec<_>>())
        };
        if let (Some(ours), Some(theirs), Some(none)) =
            (sent(&contender), sent("tcpdump"), sent("none"))
        {
            let floor = sent(&empty);
            let all: Vec<usize> = (0..none.len()).collect();
            let ratio = |of: &[u64], rounds: &[usize]| loss_ratio(of, &theirs, &none, rounds);
            let measured = ratio(&ours, &all);
            let mut target = Target::new(
                format!("3. sender lost, non-NTP flood, vs tcpdump's ({hook})"),
                measured,
                1.0 / 3.0,
                true,
                floor.as_ref().map(|f| ratio(f, &all)),
            );
            if let (Some(t), Some(floor)) = (&mut target, &floor) {
                t.intervals = Some([
                    bootstrap(none.len(), |rounds| ratio(&ours, rounds)),
                    bootstrap(none.len(), |rounds| ratio(floor, rounds)),
                ]);
            }
            losses.extend(target);
        }
    }
    for r in rows {
        // The whole analysis (decode, pairing, client analytics) must cost less than
        // tcpdump's printing; plain decoding, a third of it.
        let limit = if r.what == ANALYSIS { 1.0 } else { 3.0 };
        push(
            format!("5. offline: {}", r.what),
            r.ratio(),
            limit,
            false,
            None,
        );
    }
    out.extend(losses);
    out.extend(reader_targets(live));
    out.extend(kernel_targets(kernel));
    out
}

/// ntptap's reader against the least reader of the same rings (TC, `-w FILE`, the NTP flood):
/// the reader's floor, and that floor against tcpdump.
fn reader_targets(live: &[LiveResult]) -> Vec<Target> {
    let ntp = "NTP flood";
    let (Some(ours), Some(least)) = (
        live_medians(live, ntp, "ntptap tc"),
        live_medians(live, ntp, "least tc"),
    ) else {
        return Vec::new();
    };
    let mut out: Vec<Target> = Target::new(
        "1. capture CPU per packet vs the least reader of the same rings (tc)".to_owned(),
        ours.per_us / least.per_us,
        1.25,
        true,
        None,
    )
    .into_iter()
    .collect();
    if let Some(pcapng) = live_medians(live, ntp, "ntptap tc-pcapng") {
        out.extend(Target::new(
            "1. capture CPU per packet vs the least reader, -w FILE.pcapng (tc)".to_owned(),
            pcapng.per_us / least.per_us,
            1.25,
            true,
            None,
        ));
    }
    if let (Some(ours), Some(theirs)) = (
        live_medians(live, ntp, "ntptap tc-print"),
        live_medians(live, ntp, "tcpdump print"),
    ) {
        out.extend(Target::new(
            "1. printing CPU per packet vs tcpdump's printing (tc)".to_owned(),
            ours.per_us / theirs.per_us,
            0.35,
            true,
            None,
        ));
        if let Some(json) = live_medians(live, ntp, "ntptap tc-json") {
            out.extend(Target::new(
                "1. --json CPU per packet vs tcpdump's printing (tc)".to_owned(),
                json.per_us / theirs.per_us,
                1.0,
                true,
                None,
            ));
            if let Some(least) = live_medians(live, ntp, "least json") {
                out.extend(Target::new(
                    "1. --json CPU per packet vs the least JSON writer of the same rings (tc)"
                        .to_owned(),
                    json.per_us / least.per_us,
                    1.25,
                    true,
                    None,
                ));
            }
        }
    }
    if let Some(theirs) = live_medians(live, ntp, "tcpdump") {
        out.extend(Target::new(
            "1. the least reader's capture CPU per packet vs tcpdump (tc)".to_owned(),
            least.per_us / theirs.per_us,
            0.35,
            true,
            None,
        ));
    }
    out
}

/// A contender's loss of sender throughput under the non-NTP flood over tcpdump's, from the
/// medians of the given rounds (indices into each contender's runs, which are interleaved:
/// run i of every contender is round i).
pub(super) fn loss_ratio(ours: &[u64], tcpdump: &[u64], none: &[u64], rounds: &[usize]) -> f64 {
    let med = |v: &[u64]| median_u64(rounds.iter().filter_map(|&i| v.get(i).copied()).collect());
    let base = med(none).max(1) as f64;
    let lost = |v: &[u64]| (1.0 - med(v) as f64 / base).max(0.001);
    lost(ours) / lost(tcpdump)
}

/// A 90 % bootstrap interval of `statistic` over `n` rounds: 2,000 resamples of the rounds
/// with replacement, from a fixed seed so a run's report is reproducible from its data.
pub(super) fn bootstrap(n: usize, statistic: impl Fn(&[usize]) -> f64) -> (f64, f64) {
    // xorshift64*: plenty for picking round indices.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut values: Vec<f64> = (0..2000)
        .map(|_| {
            let rounds: Vec<usize> = (0..n)
                .map(|_| (next() % n.max(1) as u64) as usize)
                .collect();
            statistic(&rounds)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    (values[100], values[1899])
}

#[cfg(test)]
mod tests {
    use super::{super::not_run::NotRun, *};

    #[test]
    pub(super) fn loss_ratios_come_from_the_medians_of_the_rounds() {
        let none = [1000, 1000, 1000, 1000, 1000];
        let tcpdump = [920, 920, 920, 920, 500];
        let empty = [960, 960, 960, 960, 1000];
        let all: Vec<usize> = (0..5).collect();
        // Medians: tcpdump loses 8 %, the empty program 4 %; the outliers do not count.
        assert!((loss_ratio(&empty, &tcpdump, &none, &all) - 0.5).abs() < 1e-9);
        // Only the rounds asked for: round 4 alone, where tcpdump lost 50 % and empty 0.
        let r = loss_ratio(&empty, &tcpdump, &none, &[4]);
        assert!((r - 0.001 / 0.5).abs() < 1e-9, "{r}");
    }

    #[test]
    pub(super) fn a_refused_row_is_reported_and_the_others_kept() {
        let mut not_run = NotRun::default();
        let ran: Vec<u32> = not_run.or_empty("kernel programs", Ok(vec![1, 2]));
        assert_eq!(ran, [1, 2]);
        assert!(not_run.section().is_empty());
        let refused: Vec<u32> = not_run.or_empty(
            "drop program",
            Err(anyhow::anyhow!(
                "drop_bench failed: thread 'main' panicked at x.rs:1:\nthe drop program: the \
                 verifier refused it: R2 type=rdonly_untrusted_mem expected=scalar\nnote: run \
                 with `RUST_BACKTRACE=1`"
            )),
        );
        assert!(refused.is_empty());
        let section = not_run.section();
        assert!(
            section.contains(
                "| drop program | the drop program: the verifier refused it: R2 \
                 type=rdonly_untrusted_mem expected=scalar |"
            ),
            "{section}"
        );
    }

    #[test]
    pub(super) fn a_floor_is_out_of_reach_only_when_its_whole_interval_misses() {
        let none = vec![1000u64; 12];
        let tcpdump = vec![920u64; 12];
        // The empty program loses 4 % in most rounds and 1 % in a few: the interval of its
        // ratio reaches below 1/3, so the target is not out of reach by the floor.
        let mut empty = vec![960u64; 12];
        empty[..5].fill(990);
        let mut t = Target::new("3".into(), 0.6, 1.0 / 3.0, true, Some(0.5)).unwrap();
        let all: Vec<usize> = (0..12).collect();
        let floor = bootstrap(12, |r| loss_ratio(&empty, &tcpdump, &none, r));
        assert!(floor.0 < 1.0 / 3.0 && floor.1 >= 0.5, "{floor:?}");
        t.intervals = Some([(0.55, 0.65), floor]);
        assert!(!t.out_of_reach());
        // Every round at 4 %: the whole interval sits at 0.5, above the target.
        let steady = vec![960u64; 12];
        let floor = bootstrap(12, |r| loss_ratio(&steady, &tcpdump, &none, r));
        t.intervals = Some([(0.55, 0.65), floor]);
        assert!(t.out_of_reach(), "{floor:?}");
        assert!((loss_ratio(&steady, &tcpdump, &none, &all) - 0.5).abs() < 1e-9);
    }
}

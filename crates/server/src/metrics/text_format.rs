//! The Prometheus text format 0.0.4 written from an OpenMetrics exposition, for scrapers that
//! do not ask for OpenMetrics (and for `promtool check metrics`).

/// Rewrites an OpenMetrics text exposition as Prometheus text format 0.0.4.
///
/// The formats differ, for the metric types used here, in: counter families are named without
/// `_total` in OpenMetrics (`# TYPE x counter` over samples `x_total`) and with it in the text
/// format; `_created` samples, `# UNIT` lines, exemplars and `# EOF` exist only in OpenMetrics;
/// `unknown` is `untyped`, and an `info` family `x` (samples `x_info`) is a gauge `x_info`.
/// Label values, numbers and `# HELP` escapes (`\\`, `\n`) are written the same way.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    use std::collections::HashMap;
    // Family name → OpenMetrics type, from the `# TYPE` lines (HELP comes before TYPE).
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let renamed = |family: &str| -> Option<String> {
        match types.get(family).copied() {
            Some("counter") if !family.ends_with("_total") => Some(format!("{family}_total")),
            Some("info") => Some(format!("{family}_info")),
            _ => None,
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (family, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = renamed(family).unwrap_or_else(|| family.to_owned());
            // OpenMetrics also escapes `"` in HELP; the text format does not.
            out.push_str(&format!("# HELP {name} {}\n", help.replace("\\\"", "\"")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = renamed(family).unwrap_or_else(|| family.to_owned());
            let kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                "info" | "stateset" => "gauge",
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let created = name.strip_suffix("_created").is_some_and(|family| {
            matches!(
                types.get(family).copied(),
                Some("counter" | "histogram" | "summary")
            )
        });
        if created {
            continue;
        }
        out.push_str(without_exemplar(line));
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {labels} value` after the value); a `#` inside a
/// quoted label value is not one.
fn without_exemplar(line: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted && line[..at].ends_with(' ') => return line[..at].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_created_units_exemplars_and_eof_are_rewritten() {
        let om = "# HELP a_seconds A.\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\n\
                  a_seconds_total 1 # {trace=\"x\"} 1\na_seconds_created 17\n\
                  # TYPE b info\nb_info{v=\"1 # \\\" # \"} 1\n# TYPE c unknown\nc 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_seconds_total A.\n# TYPE a_seconds_total counter\na_seconds_total 1\n\
             # TYPE b_info gauge\nb_info{v=\"1 # \\\" # \"} 1\n# TYPE c untyped\nc 2\n"
        );
    }
}

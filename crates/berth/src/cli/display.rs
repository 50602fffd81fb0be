//! Docker's ways of showing sizes and ages (`images`, `image prune`).

/// Docker's HumanSizeWithPrecision(size, 3): decimal units, 3 significant digits.
pub fn human_size(size: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// Docker's HumanDuration, plus " ago".
pub fn human_since(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "N/A".into();
    };
    let d = chrono::Utc::now().signed_duration_since(t.with_timezone(&chrono::Utc));
    let secs = d.num_seconds();
    let mins = d.num_minutes();
    let hours = ((d.num_seconds() as f64) / 3600.0 + 0.5) as i64;
    let s = if secs < 1 {
        "Less than a second".to_string()
    } else if secs == 1 {
        "1 second".to_string()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".to_string()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    };
    format!("{s} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(128_000_000), "128MB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(1_000), "1kB");
    }

    #[test]
    fn since_like_docker() {
        let ago = |secs: i64| {
            let t = chrono::Utc::now() - chrono::Duration::seconds(secs);
            human_since(Some(&t.to_rfc3339()))
        };
        assert_eq!(ago(30), "30 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(3 * 86400), "3 days ago");
        assert_eq!(ago(20 * 86400), "2 weeks ago");
        assert_eq!(ago(100 * 86400), "3 months ago");
        assert_eq!(ago(800 * 86400), "2 years ago");
        assert_eq!(human_since(None), "N/A");
    }
}

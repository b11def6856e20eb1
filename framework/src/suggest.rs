//! "Did you mean ...?" suggestions for misspelled names.

/// The candidate closest to `word`, when it is close enough to be a plausible typo.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, c)| *score >= 0.8 && *c != word)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `" (did you mean \"x\"?)"`, or an empty string when nothing is close.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates)
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["moving_stats", "zscore", "binance"];
        assert_eq!(closest("movng_stats", names), Some("moving_stats"));
        assert_eq!(closest("binanse", names), Some("binance"));
        assert_eq!(closest("kafka", names), None);
        assert_eq!(did_you_mean("zcore", names), " (did you mean \"zscore\"?)");
    }
}

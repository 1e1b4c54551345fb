//! Policy globs. Hand-written instead of `globset`: globset compiles each
//! pattern to a regex (about 17 KB each, so a 3 MB policy reached 1.7 GB),
//! panics inside the regex compiler on a 100 KB pattern, and its `*`
//! crosses `/` unless every caller remembers to ask otherwise. Here a
//! pattern is a short token list (a few bytes per pattern character) and
//! matching simulates the automaton over all positions at once, so it is
//! O(len(text) x len(pattern)) in the worst case, with no backtracking
//! blow-up.
//!
//! Grammar (docs/trust.md repeats it):
//! * `*` matches any run of characters other than `/`, possibly empty;
//! * `**` must be a whole path segment: `**` alone matches anything,
//!   `**/` at the start matches zero or more leading segments, `/**/`
//!   matches one `/` or `/SEGMENTS/`, `/**` at the end matches `/` and
//!   everything below;
//! * `?` matches one character other than `/`;
//! * `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) match one character (never
//!   `/`) in, or not in, the set; `]` first in the set is literal;
//! * `\c` matches the character `c` literally (also inside `[...]`);
//! * `{` and `}` are refused (no alternation: list the patterns instead);
//! * every other character matches itself, case-sensitively.

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `?`
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `*`: any run without `/`.
    Star,
    /// Any run, `/` included.
    AnyRun,
    /// Epsilon to the next token or past the next `n` tokens: makes
    /// `**/` optional.
    Skip(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    toks: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("longer than {MAX_PATTERN} bytes")]
    TooLong,
    #[error("empty pattern")]
    Empty,
    #[error("`**` must be a whole path segment (`a/**/b`, `**/b`, `a/**`); `*` already matches within a segment")]
    DoubleStar,
    #[error("unclosed `[`")]
    Unclosed,
    #[error("`{{` and `}}` (alternation) are not supported: list each pattern")]
    Brace,
    #[error("dangling `\\` at the end")]
    Escape,
    #[error("bad range {0:?}-{1:?} in `[...]`")]
    Range(char, char),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN {
            return Err(GlobError::TooLong);
        }
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    if chars.get(i + 2) == Some(&'*') {
                        return Err(GlobError::DoubleStar);
                    }
                    let at_start = i == 0;
                    let after_slash = i > 0 && chars[i - 1] == '/';
                    let at_end = i + 2 == chars.len();
                    let before_slash = chars.get(i + 2) == Some(&'/');
                    if !(at_start || after_slash) || !(at_end || before_slash) {
                        return Err(GlobError::DoubleStar);
                    }
                    if before_slash {
                        // `**/` (at the start or after `/`): zero or more
                        // segments, each with its `/`. After a `/`, the
                        // `/` already emitted stays: `a/**/b` is
                        // `a/` then `(.*/)?` then `b`.
                        toks.push(Tok::Skip(2));
                        toks.push(Tok::AnyRun);
                        toks.push(Tok::Char('/'));
                        i += 3;
                    } else {
                        // `**` alone, or `/**` at the end.
                        toks.push(Tok::AnyRun);
                        i += 2;
                    }
                    continue;
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '{' | '}' => return Err(GlobError::Brace),
                '\\' => {
                    i += 1;
                    toks.push(Tok::Char(*chars.get(i).ok_or(GlobError::Escape)?));
                }
                '[' => {
                    let (tok, next) = class(&chars, i + 1)?;
                    toks.push(tok);
                    i = next;
                    continue;
                }
                c => toks.push(Tok::Char(c)),
            }
            i += 1;
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            toks,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.toks.len();
        let words = (n + 1).div_ceil(64);
        let mut cur = vec![0u64; words];
        let mut next = vec![0u64; words];
        set(&mut cur, 0);
        self.close(&mut cur);
        for c in text.chars() {
            next.iter_mut().for_each(|w| *w = 0);
            let mut any = false;
            for i in ones(&cur) {
                if i == n {
                    continue;
                }
                let to = match &self.toks[i] {
                    Tok::Char(x) => (*x == c).then_some(i + 1),
                    Tok::One => (c != '/').then_some(i + 1),
                    Tok::Class { negated, ranges } => (c != '/'
                        && ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated)
                        .then_some(i + 1),
                    Tok::Star => (c != '/').then_some(i),
                    Tok::AnyRun => Some(i),
                    Tok::Skip(_) => None,
                };
                if let Some(t) = to {
                    set(&mut next, t);
                    any = true;
                }
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut cur, &mut next);
            self.close(&mut cur);
        }
        get(&cur, n)
    }

    /// Adds the states reachable without consuming a character. Every
    /// epsilon edge points forward, so one ascending pass is enough.
    fn close(&self, s: &mut [u64]) {
        for i in 0..self.toks.len() {
            if !get(s, i) {
                continue;
            }
            match self.toks[i] {
                Tok::Star | Tok::AnyRun => set(s, i + 1),
                Tok::Skip(k) => {
                    set(s, i + 1);
                    set(s, i + 1 + k);
                }
                _ => {}
            }
        }
    }
}

fn set(s: &mut [u64], i: usize) {
    s[i / 64] |= 1 << (i % 64);
}

fn get(s: &[u64], i: usize) -> bool {
    s[i / 64] & (1 << (i % 64)) != 0
}

fn ones(s: &[u64]) -> impl Iterator<Item = usize> + '_ {
    s.iter().enumerate().flat_map(|(w, &bits)| {
        let mut b = bits;
        std::iter::from_fn(move || {
            if b == 0 {
                return None;
            }
            let t = b.trailing_zeros() as usize;
            b &= b - 1;
            Some(w * 64 + t)
        })
    })
}

/// `[...]` starting after the `[`; returns the token and the index after `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Tok, usize), GlobError> {
    let mut negated = false;
    if matches!(chars.get(i), Some('!') | Some('^')) {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = match chars.get(i) {
            None => return Err(GlobError::Unclosed),
            Some(']') if !first => return Ok((Tok::Class { negated, ranges }, i + 1)),
            Some('\\') => {
                i += 1;
                *chars.get(i).ok_or(GlobError::Unclosed)?
            }
            Some(c) => *c,
        };
        first = false;
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or(GlobError::Unclosed)?;
                i += 1;
            }
            if hi < c {
                return Err(GlobError::Range(c, hi));
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().is_match(t)
    }

    #[test]
    fn star_stays_within_a_segment() {
        assert!(m("out/*", "out/app"));
        assert!(!m("out/*", "out/a/b"));
        assert!(!m("out/*", "out/../../etc/passwd"));
        assert!(m(
            "https://ci.example.com/builders/*",
            "https://ci.example.com/builders/prod"
        ));
        assert!(!m(
            "https://ci.example.com/builders/*",
            "https://ci.example.com/builders/prod/../../../evil.example.org"
        ));
        assert!(m("*.tar", "a.tar"));
        assert!(!m("*.tar", "d/a.tar"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*", ""));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(m("out/**", "out/a/b/c"));
        assert!(m("out/**", "out/a"));
        assert!(!m("out/**", "outx/a"));
        assert!(m("**/x.c", "x.c"));
        assert!(m("**/x.c", "a/b/x.c"));
        assert!(!m("**/x.c", "a/bx.c"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("**", "anything/at/all"));
    }

    #[test]
    fn classes_escapes_and_question_marks() {
        assert!(m("v[0-9].tar", "v7.tar"));
        assert!(!m("v[!0-9].tar", "v7.tar"));
        assert!(m("v[^0-9].tar", "vx.tar"));
        assert!(!m("a[/]b", "a/b"));
        assert!(!m("a?b", "a/b"));
        assert!(m("a?b", "aéb"));
        assert!(m("[]]", "]"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for (p, e) in [
            ("a**", GlobError::DoubleStar),
            ("**b", GlobError::DoubleStar),
            ("a/***", GlobError::DoubleStar),
            ("a[", GlobError::Unclosed),
            ("{a,b}", GlobError::Brace),
            ("a\\", GlobError::Escape),
            ("[z-a]", GlobError::Range('z', 'a')),
            ("", GlobError::Empty),
        ] {
            assert_eq!(Glob::new(p).unwrap_err(), e, "{p}");
        }
        assert_eq!(
            Glob::new(&"a".repeat(MAX_PATTERN + 1)).unwrap_err(),
            GlobError::TooLong
        );
    }

    #[test]
    fn worst_case_patterns_stay_linear() {
        let p = "*a".repeat(300);
        let g = Glob::new(&p).unwrap();
        let text = "a".repeat(5000) + "b";
        let t = std::time::Instant::now();
        assert!(!g.is_match(&text));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}

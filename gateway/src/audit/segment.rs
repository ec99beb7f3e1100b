//! Segment files: `NNNNNNNN-YYYYMMDD.jsonl` — an 8-digit number (1, 2, ... per node, so
//! names sort in writing order) and the UTC day of the segment's first record.

use std::path::{Path, PathBuf};

use super::AuditError;

const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) of a unix-millisecond time.
pub fn utc_day(time_ms: i64) -> i64 {
    time_ms.div_euclid(MS_PER_DAY)
}

/// `YYYYMMDD` of a UTC day number (days outside the calendar clamp to 1970-01-01:
/// only a corrupt clock produces them, and the name is informational).
fn day_label(day: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400))
        .map(|d| d.date())
        .unwrap_or(time::Date::MIN);
    let date = if date.year() < 0 || date.year() > 9999 {
        time::macros::date!(1970 - 01 - 01)
    } else {
        date
    };
    format!(
        "{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The file name of segment `number` whose first record falls on UTC `day`.
pub fn segment_name(number: u32, day: i64) -> String {
    format!("{number:08}-{}.jsonl", day_label(day))
}

/// Whether `name` is a segment file name.
pub fn is_segment_name(name: &str) -> bool {
    parse_name(name).is_some()
}

/// (number, UTC day number) of a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<(u32, i64)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (num, day) = stem.split_once('-')?;
    if num.len() != 8
        || day.len() != 8
        || !(num.bytes().chain(day.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number: u32 = num.parse().ok()?;
    let (y, m, d) = (
        day[..4].parse::<i32>().ok()?,
        day[4..6].parse::<u8>().ok()?,
        day[6..].parse::<u8>().ok()?,
    );
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    let unix = date.midnight().assume_utc().unix_timestamp();
    Some((number, unix.div_euclid(86_400)))
}

/// A segment file found in a node directory.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub path: PathBuf,
    pub name: String,
    pub number: u32,
    pub day: i64,
}

/// The segment files of one node directory, in writing order (by name). Other files
/// (a future lock file, an operator's notes) are ignored.
pub(crate) fn list_segments(node_dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let entries = std::fs::read_dir(node_dir).map_err(|e| AuditError::io("list", node_dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", node_dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((number, day)) = parse_name(&name) {
            out.push(SegmentFile {
                path: entry.path(),
                name,
                number,
                day,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The node directories under `dir`: `dir` itself when it holds segments, else each
/// subdirectory that does (sorted by name).
pub(crate) fn node_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, AuditError> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if !list_segments(dir)?.is_empty() {
        return Ok(vec![(name_of(dir), dir.to_path_buf())]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| AuditError::io("list", dir, e))? {
        let entry = entry.map_err(|e| AuditError::io("list", dir, e))?;
        let path = entry.path();
        if path.is_dir() && !list_segments(&path)?.is_empty() {
            out.push((name_of(&path), path));
        }
    }
    out.sort();
    Ok(out)
}

/// A segment's content split into complete lines (without their `\n`) and the torn
/// tail: bytes after the last newline, which only a write interrupted by a crash leaves.
pub(crate) struct SegmentText {
    pub lines: Vec<Vec<u8>>,
    pub torn: Vec<u8>,
}

pub(crate) fn read_segment(path: &Path) -> Result<SegmentText, AuditError> {
    let bytes = std::fs::read(path).map_err(|e| AuditError::io("read", path, e))?;
    Ok(split_segment(bytes))
}

pub(crate) fn split_segment(mut bytes: Vec<u8>) -> SegmentText {
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let torn = bytes.split_off(complete);
    let lines = if bytes.is_empty() {
        Vec::new()
    } else {
        bytes[..bytes.len() - 1]
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    };
    SegmentText { lines, torn }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        let day = utc_day(1_795_000_000_000);
        let name = segment_name(1, day);
        assert_eq!(parse_name(&name), Some((1, day)));
        assert!(segment_name(2, day - 3) > name);
        assert_eq!(segment_name(7, 0), "00000007-19700101.jsonl");
        assert_eq!(utc_day(-1), -1);
        assert!(!is_segment_name("00000001-20261322.jsonl"));
        assert!(!is_segment_name("1-20261122.jsonl"));
    }

    #[test]
    fn split_keeps_the_torn_tail_apart() {
        let t = split_segment(b"a\nb\nc".to_vec());
        assert_eq!(t.lines, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(t.torn, b"c");
        let t = split_segment(b"a\n\n".to_vec());
        assert_eq!(t.lines, vec![b"a".to_vec(), Vec::new()]);
        assert!(t.torn.is_empty());
        assert!(split_segment(Vec::new()).lines.is_empty());
    }
}

//! Renders one record as a stdout line: the JSON schema of docs/telemetry.md §7.2 or the text
//! format of §7.3 there.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::record::{FieldValue, Record};

/// One JSON object, keys in the order of the schema, newline-terminated.
pub(crate) fn json_line(record: &Record<'_>) -> String {
    let mut map = Map::with_capacity(8 + record.fields.len());
    map.insert("ts".into(), Value::String(iso8601_millis(record.time)));
    map.insert("level".into(), Value::String(record.level_name().into()));
    map.insert("logger".into(), Value::String(record.logger.to_string()));
    map.insert("msg".into(), Value::String(record.message.to_string()));
    if let Some(job_id) = &record.job_id {
        map.insert("job_id".into(), Value::String(job_id.clone()));
    }
    if let Some(ids) = &record.trace {
        map.insert("trace_id".into(), Value::String(ids.trace_id.to_string()));
        map.insert("span_id".into(), Value::String(ids.span_id.to_string()));
    }
    for (key, value) in &record.fields {
        map.insert((*key).into(), value.to_json());
    }
    let mut line = Value::Object(map).to_string();
    line.push('\n');
    line
}

/// `HH:MM:SS LEVEL [logger] msg job_id=<id> key=value ...` (UTC).
pub(crate) fn text_line(record: &Record<'_>) -> String {
    let secs = record
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let level = record.level_name().to_ascii_uppercase();
    let level = if level == "WARNING" {
        "WARN".to_owned()
    } else {
        level
    };
    let mut line = format!("{h:02}:{m:02}:{s:02} {level:<5} [{}] ", record.logger);
    escape_into(&mut line, &record.message);
    if let Some(job_id) = &record.job_id {
        line.push_str(" job_id=");
        escape_into(&mut line, job_id);
    }
    for (key, value) in &record.fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        match value {
            FieldValue::Str(s) => escape_into(&mut line, s),
            other => line.push_str(&other.to_json().to_string()),
        }
    }
    line.push('\n');
    line
}

/// Backslash, CR and LF escaped, so one record stays one line.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub(crate) fn iso8601_millis(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_255_200_123);
        assert_eq!(iso8601_millis(t), "2026-11-21T10:00:00.123Z");
        assert_eq!(
            iso8601_millis(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn text_escapes_line_breaks() {
        let mut s = String::new();
        escape_into(&mut s, "a\nb\\c\r");
        assert_eq!(s, "a\\nb\\\\c\\r");
    }
}

//! A job-take answer's body split into its jobs, each read on its own (docs/protocol.md §5.2):
//! the envelope (one job object, or a list of them) is parsed without parsing any job's
//! fields, so a job whose input cannot be read — too deep, a number out of range, text that is
//! not valid UTF-8 — fails alone, with its id and the reason, and its batch-mates run.

use crate::job::{Malformed, RawJob};
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::ops::Range;

/// The deepest nesting of arrays and objects a served field may have. The SDK accepts what
/// Python's recursion limit allows (about 990 levels); serde_json's own default is 128. Beyond
/// about 700 levels a handler's `serde_json::from_value` overflows a 2 MiB thread stack in a
/// debug build, so the bound is set well below that and far above real payloads.
pub(crate) const MAX_NESTING: usize = 512;

/// Up to serde_json's default depth a field is parsed where it stands; deeper ones on a thread
/// with room for [`MAX_NESTING`] levels (a debug build's parser needs about 3 KiB a level).
const SHALLOW: usize = 128;
const DEEP_STACK: usize = 8 << 20;

/// A served value: a job, or why it cannot run.
pub(crate) type Served = Result<RawJob, Malformed>;

/// The jobs in a take answer's body; `None` when the body is not a job or a list of jobs (not
/// JSON at all, or a string, number or `null`).
pub(crate) fn jobs(body: &[u8]) -> Option<Vec<Served>> {
    let text = Text::decode(body);
    let raw: &RawValue = serde_json::from_str(&text.text).ok()?;
    match raw.get().as_bytes().first() {
        Some(b'{') => Some(vec![read_job(raw, &text)]),
        Some(b'[') => {
            let elements: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
            Some(elements.into_iter().map(|e| read_job(e, &text)).collect())
        }
        _ => None,
    }
}

/// The body as text, with a U+FFFD for every byte sequence that is not UTF-8 and where each
/// one was put, so that only the jobs containing one fail.
struct Text {
    text: String,
    invalid: Vec<usize>,
}

impl Text {
    fn decode(body: &[u8]) -> Self {
        if let Ok(text) = std::str::from_utf8(body) {
            return Self {
                text: text.to_owned(),
                invalid: Vec::new(),
            };
        }
        let (mut text, mut invalid) = (String::with_capacity(body.len()), Vec::new());
        for chunk in body.utf8_chunks() {
            text.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                invalid.push(text.len());
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        Self { text, invalid }
    }

    /// Where `raw` (a slice of this text) lies in it.
    fn span(&self, raw: &RawValue) -> Range<usize> {
        let start = (raw.get().as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize);
        start..start + raw.get().len()
    }

    fn is_valid(&self, raw: &RawValue) -> bool {
        let span = self.span(raw);
        !self.invalid.iter().any(|at| span.contains(at))
    }
}

/// One served value: an object whose `id` (a non-empty string or a number) and `input` are
/// present and whose every field can be read.
fn read_job(raw: &RawValue, text: &Text) -> Served {
    if !raw.get().starts_with('{') {
        return Err(Malformed::NotAnObject);
    }
    let fields = serde_json::Deserializer::from_str(raw.get())
        .deserialize_map(FieldsVisitor)
        .map_err(|_| Malformed::MissingId)?;
    let id = fields
        .iter()
        .rev()
        .find(|(name, _)| name == "id")
        .filter(|(_, value)| text.is_valid(value))
        .and_then(|(_, value)| read_id(value))
        .ok_or(Malformed::MissingId)?;
    let mut parsed = Map::with_capacity(fields.len());
    for (name, value) in fields {
        let read = if text.is_valid(value) {
            parse(value.get())
        } else {
            Err("it is not valid UTF-8".to_owned())
        };
        match read {
            Ok(value) => parsed.insert(name, value),
            Err(reason) => {
                return Err(Malformed::Unreadable {
                    id,
                    field: name,
                    reason,
                });
            }
        };
    }
    RawJob::from_fields(id, parsed)
}

fn read_id(raw: &RawValue) -> Option<String> {
    match serde_json::from_str(raw.get()).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one field's value, allowing up to [`MAX_NESTING`] levels.
fn parse(text: &str) -> Result<Value, String> {
    let depth = nesting(text);
    if depth > MAX_NESTING {
        return Err(format!(
            "it nests {depth} arrays or objects deep; the limit is {MAX_NESTING}"
        ));
    }
    if depth <= SHALLOW {
        return parse_unbounded(text);
    }
    // A rare, short parse: blocking this thread for it costs less than handing it to a pool.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("runpod-deep-json".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, || parse_unbounded(text))
            .map_err(|err| format!("no thread to parse it on: {err}"))?
            .join()
            .unwrap_or_else(|_| Err("its parser panicked".to_owned()))
    })
}

/// serde_json's parser without its 128-level limit; [`nesting`] is the bound instead.
fn parse_unbounded(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de).map_err(|err| err.to_string())?;
    de.end().map_err(|err| err.to_string())?;
    Ok(value)
}

/// The deepest nesting of arrays and objects in a JSON text, counted without recursing.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A job object's fields in served order, their values unparsed.
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a job object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(field) = map.next_entry::<String, &RawValue>()? {
            fields.push(field);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize) -> String {
        format!("{}1{}", "{\"a\": ".repeat(levels), "}".repeat(levels))
    }

    fn ids(served: &[Served]) -> Vec<Result<&str, &Malformed>> {
        served
            .iter()
            .map(|s| s.as_ref().map(|j| j.id.as_str()))
            .collect()
    }

    #[test]
    fn a_deep_input_is_read_and_too_deep_an_input_fails_alone() {
        let body = format!(
            r#"[{{"id": "deep", "input": {}}}, {{"id": "too-deep", "input": {}}}, {{"id": "plain", "input": [1]}}]"#,
            deep(200),
            deep(MAX_NESTING + 1)
        );
        let served = jobs(body.as_bytes()).expect("a batch");
        assert_eq!(served.len(), 3);
        let deep_job = served[0].as_ref().expect("200 levels are accepted");
        assert_eq!(nesting(&deep_job.input().to_string()), 200);
        assert_eq!(
            served[1].as_ref().unwrap_err().to_string(),
            "Job field `input` cannot be read: it nests 513 arrays or objects deep; the limit is 512."
        );
        assert_eq!(
            served[2].as_ref().map(|j| j.input().clone()).ok(),
            Some(serde_json::json!([1]))
        );
        let at_the_limit = format!(r#"{{"id": "max", "input": {}}}"#, deep(MAX_NESTING));
        assert!(jobs(at_the_limit.as_bytes()).expect("a job")[0].is_ok());
    }

    #[test]
    fn lone_surrogates_fail_their_job_only() {
        let body = br#"[{"id": "lone", "input": "\udc00"}, {"id": 7, "input": null}]"#;
        let served = jobs(body).expect("a batch");
        assert_eq!(
            served[0].as_ref().unwrap_err().to_string(),
            "Job field `input` cannot be read: lone leading surrogate in hex escape at line 1 column 7."
        );
        assert_eq!(ids(&served)[1], Ok("7"));
    }

    /// With `exact-numbers` the literal is kept as served instead.
    #[cfg(not(feature = "exact-numbers"))]
    #[test]
    fn a_number_out_of_range_fails_its_job_only() {
        let body = br#"[{"id": "big", "input": 1e400}, {"id": "ok", "input": 1}]"#;
        let served = jobs(body).expect("a batch");
        assert_eq!(
            served[0].as_ref().unwrap_err().to_string(),
            "Job field `input` cannot be read: number out of range at line 1 column 5."
        );
        assert_eq!(ids(&served)[1], Ok("ok"));
    }

    #[test]
    fn bytes_that_are_not_utf8_fail_the_job_they_are_in() {
        let mut body = br#"[{"id": "a", "input": "caf"#.to_vec();
        body.extend_from_slice(b"\xe9\"}, {\"id\": \"b\", \"input\": \"ok\"}]");
        let served = jobs(&body).expect("a batch");
        assert_eq!(
            served[0].as_ref().unwrap_err(),
            &Malformed::Unreadable {
                id: "a".into(),
                field: "input".into(),
                reason: "it is not valid UTF-8".into()
            }
        );
        assert_eq!(ids(&served)[1], Ok("b"));
    }

    #[test]
    fn poison_ids_and_shapes_are_skipped_and_the_rest_served() {
        let body = format!(
            r#"[{{"id": ["x"], "input": 1}}, {{"id": {}, "input": 1}}, {{"id": "", "input": 1}}, 3, {{"id": "no-input"}}, {{"id": "ok", "input": 2, "webhook": "w"}}]"#,
            deep(300)
        );
        let served = jobs(body.as_bytes()).expect("a batch");
        assert_eq!(
            ids(&served),
            [
                Err(&Malformed::MissingId),
                Err(&Malformed::MissingId),
                Err(&Malformed::MissingId),
                Err(&Malformed::NotAnObject),
                Err(&Malformed::MissingInput {
                    id: "no-input".into()
                }),
                Ok("ok"),
            ]
        );
        let ok = served[5].as_ref().expect("a job");
        assert_eq!(
            ok.fields.keys().collect::<Vec<_>>(),
            ["id", "input", "webhook"],
            "fields keep their served order"
        );
    }

    #[test]
    fn answers_that_are_not_jobs_are_nothing() {
        for body in [
            &b"not json {"[..],
            b"\"a string\"",
            b"3",
            b"null",
            b"",
            b"[1, ",
        ] {
            assert!(jobs(body).is_none(), "{body:?}");
        }
        assert_eq!(jobs(b"[]").map(|j| j.len()), Some(0));
    }

    /// 2^64 as served, echoed back.
    fn echoed_big_integer() -> String {
        let served = jobs(br#"{"id": "big", "input": {"n": 18446744073709551616, "x": 0.1000}}"#)
            .expect("a job");
        let job = served.into_iter().next().expect("one").expect("readable");
        String::from_utf8(crate::json::to_vec(job.input())).expect("UTF-8")
    }

    #[cfg(not(feature = "exact-numbers"))]
    #[test]
    fn beyond_64_bits_an_integer_becomes_the_nearest_float_by_default() {
        assert_eq!(
            echoed_big_integer(),
            r#"{"n": 1.8446744073709552e+19, "x": 0.1}"#
        );
    }

    #[cfg(feature = "exact-numbers")]
    #[test]
    fn with_exact_numbers_every_number_keeps_its_served_digits() {
        assert_eq!(
            echoed_big_integer(),
            r#"{"n": 18446744073709551616, "x": 0.1000}"#
        );
    }

    #[test]
    fn nesting_ignores_brackets_inside_strings() {
        assert_eq!(nesting(r#"{"a": ["[[[", {"b": "\"{{"}]}"#), 3);
        assert_eq!(nesting("1"), 0);
    }
}

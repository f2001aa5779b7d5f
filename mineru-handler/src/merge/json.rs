//! The JSON artefacts of page ranges made one: page indices made document-absolute, renamed
//! images pointed at, and the documents joined page by page.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The page indices in one part's JSON artefact (any `page_idx` key, at any depth).
pub(super) fn page_indices(value: &Value, out: &mut Vec<u64>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_u64()) {
                    ("page_idx", Some(idx)) => out.push(idx),
                    _ => page_indices(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| page_indices(v, out)),
        _ => {}
    }
}

/// Adds `offset` to every `page_idx`.
pub(super) fn shift_pages(value: &mut Value, offset: u64) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v.as_u64()) {
                    ("page_idx", Some(idx)) => *v = Value::from(idx + offset),
                    _ => shift_pages(v, offset),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_pages(v, offset)),
        _ => {}
    }
}

/// Points every string that is exactly a renamed image's path (`images/<old>`) at its new
/// name.
pub(super) fn rename_images(value: &mut Value, renamed: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(new) = s.strip_prefix("images/").and_then(|old| renamed.get(old)) {
                *s = format!("images/{new}");
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| rename_images(v, renamed)),
        Value::Array(items) => items.iter_mut().for_each(|v| rename_images(v, renamed)),
        _ => {}
    }
}

/// Appends the next part's artefact to the merged one. Lists of blocks (MinerU 3.4's content
/// lists) are concatenated; in documents (objects) every list of pages (objects with a
/// `page_idx`) is concatenated, at any depth (`pages`, `pdf_info`,
/// `extensions.docvortex_layout.pages`), and everything else is the first part's.
pub(super) fn append(merged: &mut Value, next: Value) {
    match (merged, next) {
        (Value::Array(a), Value::Array(b)) => a.extend(b),
        (Value::Object(a), Value::Object(b)) => append_object(a, b),
        _ => {}
    }
}

fn append_object(merged: &mut Map<String, Value>, next: Map<String, Value>) {
    for (key, value) in next {
        match merged.get_mut(&key) {
            None => {
                merged.insert(key, value);
            }
            Some(Value::Array(a)) if is_page_list(a) => {
                if let Value::Array(b) = value {
                    if is_page_list(&b) {
                        a.extend(b);
                    }
                }
            }
            Some(existing @ Value::Object(_)) => append(existing, value),
            Some(_) => {}
        }
    }
}

/// A list whose every entry is an object with a `page_idx` (vacuously: an empty list).
fn is_page_list(items: &[Value]) -> bool {
    items.iter().all(|v| v.get("page_idx").is_some())
}

/// MinerU 4's `is_full_document`, for the merged pages: whether they are every page of the
/// document (`metadata.document.page_count`). Documents without the flag are left alone.
pub(super) fn mark_full_document(merged: &mut Value, pages: &[u64]) {
    let page_count = merged
        .pointer("/metadata/document/page_count")
        .and_then(Value::as_u64);
    let Some(flag) = merged.get_mut("is_full_document") else {
        return;
    };
    let full = page_count.is_some_and(|n| {
        usize::try_from(n).is_ok_and(|n| n == pages.len())
            && pages.iter().enumerate().all(|(i, p)| i as u64 == *p)
    });
    *flag = Value::Bool(full);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pages_join_at_any_depth_and_the_rest_is_the_first_parts() {
        let part = |first: u64| {
            json!({
                "metadata": {"document": {"page_count": 4, "authors": ["a"]}},
                "extensions": {"layout": {"version": 1, "pages": [{"page_idx": first}, {"page_idx": first + 1}]}},
                "is_full_document": false,
                "pages": [{"page_idx": first, "blocks": []}, {"page_idx": first + 1, "blocks": []}],
            })
        };
        let mut merged = part(0);
        append(&mut merged, part(2));
        let mut pages = Vec::new();
        page_indices(&merged["pages"], &mut pages);
        assert_eq!(pages, [0, 1, 2, 3]);
        assert_eq!(merged["extensions"]["layout"]["pages"][3]["page_idx"], 3);
        assert_eq!(merged["metadata"]["document"]["authors"], json!(["a"]));
        mark_full_document(&mut merged, &pages);
        assert_eq!(merged["is_full_document"], true);
        mark_full_document(&mut merged, &pages[..3]);
        assert_eq!(merged["is_full_document"], false);
    }

    #[test]
    fn block_lists_concatenate_and_shift() {
        let mut merged = json!([{"type": "text", "page_idx": 0}]);
        let mut next = json!([{"type": "image", "img_path": "images/a.jpg", "page_idx": 0}]);
        shift_pages(&mut next, 5);
        rename_images(
            &mut next,
            &HashMap::from([("a.jpg".to_owned(), "p5-a.jpg".to_owned())]),
        );
        append(&mut merged, next);
        assert_eq!(
            merged,
            json!([
                {"type": "text", "page_idx": 0},
                {"type": "image", "img_path": "images/p5-a.jpg", "page_idx": 5}
            ])
        );
    }
}

//! RunPod's URLs, built from the templates with the SDK's plain string operations
//! (docs/protocol.md §3), so that even odd templates produce the same bytes.

use crate::config::Webhooks;

const JOB_TAKE: &str = "/job-take/";

#[derive(Debug, Clone)]
pub(crate) struct Urls {
    take: String,
    batch: String,
    stop: Option<String>,
    done: String,
    stream: Option<String>,
    ping: Option<String>,
}

impl Urls {
    pub(crate) fn new(hooks: &Webhooks, worker_id: &str) -> Self {
        let take = hooks.get_job.replace("$ID", worker_id);
        let batch = take.replacen(JOB_TAKE, "/job-take-batch/", 1);
        let stop = take
            .contains(JOB_TAKE)
            .then(|| take.replace(JOB_TAKE, "/job-stop/"));
        Self {
            batch,
            stop,
            take,
            done: hooks.post_output.replace("$RUNPOD_POD_ID", worker_id),
            stream: hooks
                .post_stream
                .as_ref()
                .map(|s| s.replace("$RUNPOD_POD_ID", worker_id)),
            ping: hooks
                .ping
                .as_ref()
                .map(|p| p.replace("$RUNPOD_POD_ID", worker_id)),
        }
    }

    pub(crate) fn take(&self, jobs: usize, in_progress: bool) -> String {
        let flag = if in_progress { "1" } else { "0" };
        if jobs > 1 {
            format!("{}&batch_size={jobs}&job_in_progress={flag}", self.batch)
        } else {
            format!("{}&job_in_progress={flag}", self.take)
        }
    }

    pub(crate) fn stop(&self) -> Option<&str> {
        self.stop.as_deref()
    }

    pub(crate) fn done(&self, job_id: &str, is_stream: bool) -> String {
        format!("{}&isStream={is_stream}", self.done.replace("$ID", job_id))
    }

    pub(crate) fn stream(&self, job_id: &str) -> Option<String> {
        Some(format!(
            "{}&isStream=false",
            self.stream.as_ref()?.replace("$ID", job_id)
        ))
    }

    /// The ping URL with its query merged properly (unlike the other URLs).
    pub(crate) fn ping(&self, job_ids: &[String]) -> Option<String> {
        let mut url = self.ping.clone()?;
        if !url.contains('?') {
            url.push('?');
        } else if !url.ends_with('?') && !url.ends_with('&') {
            url.push('&');
        }
        if !job_ids.is_empty() {
            url.push_str("job_id=");
            url.push_str(&quote_plus(&job_ids.join(",")));
            url.push('&');
        }
        url.push_str("runpod_version=");
        url.push_str(crate::PROTOCOL_VERSION);
        Some(url)
    }
}

impl Urls {
    /// The fitness-failure ping: `status=unhealthy&check=..&reason=..` (reason cut to 256 chars).
    pub(crate) fn unhealthy_ping(&self, check: &str, reason: &str) -> Option<String> {
        let base = self.ping(&[])?;
        let (base, version) = base.rsplit_once("runpod_version=")?;
        let reason: String = reason.chars().take(256).collect();
        Some(format!(
            "{base}status=unhealthy&check={}&reason={}&runpod_version={version}",
            quote_plus(check),
            quote_plus(&reason)
        ))
    }
}

/// Python's `urllib.parse.quote_plus`: letters, digits and `_.-~` stay, space becomes `+`.
fn quote_plus(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(query: &str) -> Webhooks {
        Webhooks {
            get_job: format!("https://api.runpod.ai/v2/ep-abc123/job-take/$ID{query}"),
            post_output: format!(
                "https://api.runpod.ai/v2/ep-abc123/job-done/$RUNPOD_POD_ID/$ID{query}"
            ),
            post_stream: Some(format!(
                "https://api.runpod.ai/v2/ep-abc123/job-stream/$RUNPOD_POD_ID/$ID{query}"
            )),
            ping: Some(format!(
                "https://api.runpod.ai/v2/ep-abc123/ping/$RUNPOD_POD_ID{query}"
            )),
        }
    }

    #[test]
    fn worked_example_of_the_spec() {
        let u = Urls::new(&hooks("?gpu=NVIDIA+GeForce+RTX+4090"), "worker-7f3");
        let base = "https://api.runpod.ai/v2/ep-abc123";
        let q = "?gpu=NVIDIA+GeForce+RTX+4090";
        assert_eq!(
            u.take(1, false),
            format!("{base}/job-take/worker-7f3{q}&job_in_progress=0")
        );
        assert_eq!(
            u.take(3, false),
            format!("{base}/job-take-batch/worker-7f3{q}&batch_size=3&job_in_progress=0")
        );
        assert_eq!(u.stop().unwrap(), format!("{base}/job-stop/worker-7f3{q}"));
        assert_eq!(
            u.done("job-42", false),
            format!("{base}/job-done/worker-7f3/job-42{q}&isStream=false")
        );
        assert_eq!(
            u.stream("job-42").unwrap(),
            format!("{base}/job-stream/worker-7f3/job-42{q}&isStream=false")
        );
        assert_eq!(
            u.ping(&["job-42".into()]).unwrap(),
            format!("{base}/ping/worker-7f3{q}&job_id=job-42&runpod_version=1.12.0")
        );
    }

    #[test]
    fn templates_without_a_query_put_parameters_in_the_path_except_the_ping() {
        let u = Urls::new(&hooks(""), "w");
        assert!(u.take(1, true).ends_with("/job-take/w&job_in_progress=1"));
        assert!(u.done("j", true).ends_with("/job-done/w/j&isStream=true"));
        assert!(
            u.ping(&[])
                .unwrap()
                .ends_with("/ping/w?runpod_version=1.12.0")
        );
        let bare = Urls::new(&hooks("?"), "w");
        assert!(
            bare.ping(&["a b".into(), "c".into()])
                .unwrap()
                .ends_with("/ping/w?job_id=a+b%2Cc&runpod_version=1.12.0")
        );
    }

    #[test]
    fn take_template_only_substitutes_the_worker_id() {
        let mut h = hooks("?");
        h.get_job = "http://h/job-take/$ID/$RUNPOD_POD_ID?".into();
        assert_eq!(
            Urls::new(&h, "w").take(1, false),
            "http://h/job-take/w/$RUNPOD_POD_ID?&job_in_progress=0"
        );
        h.get_job = "http://h/next/$ID?".into();
        assert!(Urls::new(&h, "w").stop().is_none());
    }
}

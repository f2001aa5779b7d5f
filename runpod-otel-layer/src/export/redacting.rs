//! A span exporter wrapper that redacts span text (attributes, event attributes, status
//! descriptions) just before export, whoever recorded it.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry::{KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::redact::Redactor;

#[derive(Debug)]
pub(crate) struct RedactingSpanExporter<E> {
    pub(crate) inner: E,
    pub(crate) redactor: Redactor,
}

impl<E> RedactingSpanExporter<E> {
    fn redact_attributes(&self, attributes: &mut [KeyValue]) {
        for kv in attributes {
            if let Value::String(s) = &kv.value
                && let Cow::Owned(redacted) = self.redactor.redact(s.as_str())
            {
                kv.value = Value::String(StringValue::from(redacted));
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for RedactingSpanExporter<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        for span in &mut batch {
            self.redact_attributes(&mut span.attributes);
            for event in &mut span.events.events {
                if let Cow::Owned(name) = self.redactor.redact(&event.name) {
                    event.name = name.into();
                }
                self.redact_attributes(&mut event.attributes);
            }
            if let Status::Error { description } = &span.status
                && let Cow::Owned(redacted) = self.redactor.redact(description)
            {
                span.status = Status::error(redacted);
            }
        }
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

//! The store's NATS requests, each one round trip: reading a record by stream sequence (or the
//! next one under a filter, or a subject's last), the stream's state and subjects, publishing,
//! deleting, purging, and the meta document.
//!
//! Records are read with direct gets when the stream has one replica (any server answers from
//! the stream's only copy, which holds everything acknowledged), and from the stream leader
//! otherwise: a direct get may be answered by a replica that has not yet applied the last
//! acknowledged appends, so a query right after an append could miss them.

use std::ops::RangeInclusive;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{RawMessageErrorKind, State};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, StatusCode};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::layout::{self, Meta, Stored, Subjects};
use crate::error::{Result, StoreError};

/// The engine's name in errors and stats.
pub(crate) const ENGINE: &str = "jetstream";

/// Direct gets in flight at once while reading a window of the stream.
pub(crate) const WINDOW_MAX: u64 = 256;

/// An error of a NATS request, with what was being done.
pub(crate) fn nats_error(doing: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::engine(ENGINE, format!("{doing}: {err}"))
}

/// Why a publish failed: the fence (another append landed first, or an earlier message of the
/// batch failed), or anything else.
#[derive(Debug)]
pub(crate) enum PublishFailure {
    /// `Nats-Expected-Last-Sequence` did not hold.
    Fenced,
    /// Any other failure.
    Other(StoreError),
}

/// One store's streams, reached through one NATS connection.
#[derive(Debug, Clone)]
pub(crate) struct Js {
    pub(crate) client: Client,
    js: Context,
    records: jetstream::stream::Stream<()>,
    meta: jetstream::stream::Stream<()>,
    /// The records' stream's name.
    pub(crate) stream: String,
    pub(crate) subjects: Subjects,
    /// Read with direct gets (one replica) or from the leader.
    direct: bool,
    timeout: Duration,
}

impl Js {
    pub(crate) async fn new(
        client: Client,
        js: Context,
        stream: String,
        meta_stream: String,
        subjects: Subjects,
        timeout: Duration,
    ) -> Result<Js> {
        let records = js
            .get_stream_no_info(&stream)
            .await
            .map_err(|e| nats_error("naming the records' stream", e))?;
        let meta = js
            .get_stream_no_info(&meta_stream)
            .await
            .map_err(|e| nats_error("naming the meta stream", e))?;
        Ok(Js {
            client,
            js,
            records,
            meta,
            stream,
            subjects,
            direct: true,
            timeout,
        })
    }

    /// Reads from the leader from now on (a stream of several replicas).
    pub(crate) fn read_from_leader(&mut self) {
        self.direct = false;
    }

    /// A direct get (`request` is its JSON body); `None` when no message matches.
    async fn direct_get(&self, request: serde_json::Value) -> Result<Option<StreamMessage>> {
        let subject = format!("$JS.API.DIRECT.GET.{}", self.stream);
        let body = Bytes::from(request.to_string());
        let req = async_nats::Request::new()
            .payload(body)
            .timeout(Some(self.timeout));
        let msg = self
            .client
            .send_request(subject, req)
            .await
            .map_err(|e| nats_error("reading a record", e))?;
        match msg.status {
            Some(StatusCode::NOT_FOUND) => return Ok(None),
            Some(status) if status != StatusCode::OK => {
                let why = msg.description.unwrap_or_default();
                return Err(nats_error(
                    "reading a record",
                    format!("status {status}: {why}"),
                ));
            }
            _ => {}
        }
        StreamMessage::try_from(msg)
            .map(Some)
            .map_err(|e| nats_error("reading a record", e))
    }

    /// The same question asked of the leader (`STREAM.MSG.GET`).
    async fn leader_get(
        &self,
        stream: &jetstream::stream::Stream<()>,
        seq: Option<u64>,
        next_by: Option<&str>,
        last_by: Option<&str>,
    ) -> Result<Option<StreamMessage>> {
        let mut builder = stream.raw_message_builder();
        if let Some(seq) = seq {
            builder = builder.sequence(seq);
        }
        if let Some(subject) = next_by {
            builder = builder.next_by_subject(subject);
        }
        if let Some(subject) = last_by {
            builder = builder.last_by_subject(subject);
        }
        match builder.send().await {
            Ok(msg) => Ok(Some(msg)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats_error("reading a record", e)),
        }
    }

    fn decode(&self, msg: Option<StreamMessage>) -> Result<Option<Stored>> {
        msg.map(|m| layout::decode(&self.subjects, m.sequence, m.subject.as_str(), m.payload))
            .transpose()
    }

    /// The record at stream sequence `sseq`, if there is one.
    pub(crate) async fn get(&self, sseq: u64) -> Result<Option<Stored>> {
        let msg = if self.direct {
            self.direct_get(serde_json::json!({ "seq": sseq })).await?
        } else {
            self.leader_get(&self.records, Some(sseq), None, None)
                .await?
        };
        self.decode(msg)
    }

    /// The first record at or after stream sequence `from` whose subject matches `filter`.
    pub(crate) async fn next(&self, filter: &str, from: u64) -> Result<Option<Stored>> {
        let from = from.max(1);
        let msg = if self.direct {
            self.direct_get(serde_json::json!({ "seq": from, "next_by_subj": filter }))
                .await?
        } else {
            self.leader_get(&self.records, Some(from), Some(filter), None)
                .await?
        };
        self.decode(msg)
    }

    /// The last record on `subject`.
    pub(crate) async fn last(&self, subject: &str) -> Result<Option<Stored>> {
        let msg = if self.direct {
            self.direct_get(serde_json::json!({ "last_by_subj": subject }))
                .await?
        } else {
            self.leader_get(&self.records, None, None, Some(subject))
                .await?
        };
        self.decode(msg)
    }

    /// The records at the stream sequences of `range` (at most [`WINDOW_MAX`] of them,
    /// requested together), ascending; missing ones (deleted, purged, beyond the end) skipped.
    pub(crate) async fn fetch(&self, range: RangeInclusive<u64>) -> Result<Vec<Stored>> {
        let gets = range.map(|sseq| self.get(sseq));
        let got = futures_util::future::join_all(gets).await;
        let mut out = Vec::with_capacity(got.len());
        for r in got {
            if let Some(s) = r? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The last record at or below stream sequence `sseq` and at or above `floor`.
    pub(crate) async fn last_at_or_below(&self, sseq: u64, floor: u64) -> Result<Option<Stored>> {
        if sseq < floor.max(1) {
            return Ok(None);
        }
        // usually there: the stream's last record, or the horizon's
        if let Some(s) = self.get(sseq).await? {
            return Ok(Some(s));
        }
        let mut hi = sseq - 1;
        while hi >= floor.max(1) {
            let lo = hi.saturating_sub(WINDOW_MAX - 1).max(floor.max(1));
            if let Some(last) = self.fetch(lo..=hi).await?.pop() {
                return Ok(Some(last));
            }
            if lo <= 1 {
                break;
            }
            hi = lo - 1;
        }
        Ok(None)
    }

    /// The records' stream's state (from its leader).
    pub(crate) async fn state(&self) -> Result<State> {
        self.records
            .get_info()
            .await
            .map(|info| info.state)
            .map_err(|e| nats_error("reading the stream's state", e))
    }

    /// The subjects under `filter` that hold records.
    pub(crate) async fn subjects_under(&self, filter: &str) -> Result<Vec<String>> {
        let listing = self
            .records
            .info_with_subjects(filter)
            .await
            .map_err(|e| nats_error("listing the stream's subjects", e))?;
        listing
            .map_ok(|(subject, _)| subject)
            .try_collect()
            .await
            .map_err(|e| nats_error("listing the stream's subjects", e))
    }

    /// Publishes a record's message, fenced: the stream's last sequence must be `expect`.
    pub(crate) async fn publish(
        &self,
        subject: String,
        body: Bytes,
        expect: u64,
    ) -> Result<PublishAckFuture> {
        let message = PublishMessage::build()
            .payload(body)
            .expected_last_sequence(expect);
        self.js
            .send_publish(subject, message)
            .await
            .map_err(|e| nats_error("publishing a record", e))
    }

    /// Waits for a publish's acknowledgement: the stream sequence it was stored at.
    pub(crate) async fn acked(ack: PublishAckFuture) -> std::result::Result<u64, PublishFailure> {
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(PublishFailure::Fenced)
            }
            Err(e) => Err(PublishFailure::Other(nats_error(
                "waiting for JetStream to store a record",
                e,
            ))),
        }
    }

    /// Deletes the record at stream sequence `sseq`.
    pub(crate) async fn delete(&self, sseq: u64) -> Result<()> {
        self.records
            .delete_message(sseq)
            .await
            .map(|_| ())
            .map_err(|e| nats_error("deleting an unfinished batch's record", e))
    }

    /// Deletes every record below stream sequence `sseq`; returns how many.
    pub(crate) async fn purge_below(&self, sseq: u64) -> Result<u64> {
        self.records
            .purge()
            .sequence(sseq)
            .await
            .map(|r| r.purged)
            .map_err(|e| nats_error("deleting old records", e))
    }

    /// The meta document and its stream sequence.
    pub(crate) async fn meta(&self) -> Result<Option<(Meta, u64)>> {
        let root = self.subjects.root().to_owned();
        let msg = self.leader_get(&self.meta, None, None, Some(&root)).await?;
        msg.map(|m| Ok((Meta::from_bytes(&m.payload)?, m.sequence)))
            .transpose()
    }

    /// Writes the meta document over the one at stream sequence `over` (0: there is none
    /// yet); `Ok(None)` when another was written in between. Returns the new one's sequence.
    pub(crate) async fn put_meta(&self, meta: &Meta, over: u64) -> Result<Option<u64>> {
        let message = PublishMessage::build()
            .payload(meta.to_bytes())
            .expected_last_subject_sequence(over);
        let ack = self
            .js
            .send_publish(self.subjects.root().to_owned(), message)
            .await
            .map_err(|e| nats_error("writing the store's meta document", e))?;
        match ack.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(nats_error("writing the store's meta document", e)),
        }
    }

    /// Whether the connection is up now.
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

//! Encode/decode throughput of the two payload codecs, for a small (~100 B) and a ~1 KiB
//! event. Run with `cargo bench -p xbus-schema`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use xbus_schema::{decode_payload, encode, encode_payload, Codec, Event, Timestamp};

/// ~100 bytes on the wire: a Juice-style status change.
#[derive(Serialize, Deserialize, Event, Clone, Debug, PartialEq)]
struct KernelStatusChanged {
    #[event(topic)]
    service: String,
    status: String,
    time: Timestamp,
    seq: u64,
}

/// ~1 KiB on the wire: a measurement batch.
#[derive(Serialize, Deserialize, Event, Clone, Debug, PartialEq)]
#[event(topic = "{rack}.{sensor}")]
struct SensorBatch {
    rack: String,
    sensor: String,
    time: Timestamp,
    unit: String,
    samples: Vec<f64>,
    labels: Vec<String>,
}

fn small() -> KernelStatusChanged {
    KernelStatusChanged {
        service: "kernel-service-1".into(),
        status: "idle".into(),
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        seq: 123_456,
    }
}

fn large() -> SensorBatch {
    SensorBatch {
        rack: "rack03".into(),
        sensor: "cryostat-temperature".into(),
        time: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        unit: "kelvin".into(),
        samples: (0..84)
            .map(|i| 0.010_f64 + f64::from(i) * 1.000_123_4e-4)
            .collect(),
        labels: (0..12).map(|i| format!("channel-{i:02}")).collect(),
    }
}

fn bench_event<E: Event + Clone>(c: &mut Criterion, label: &str, event: &E) {
    for codec in Codec::ALL {
        let payload = encode_payload(event, codec).unwrap();
        let mut group = c.benchmark_group(format!("{label}/{codec}"));
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(format!("encode ({} B)", payload.len()), |b| {
            b.iter(|| encode(black_box(event), codec).unwrap())
        });
        group.bench_function(format!("decode ({} B)", payload.len()), |b| {
            b.iter(|| decode_payload::<E>(black_box(&payload)).unwrap())
        });
        group.finish();
    }
}

fn codecs(c: &mut Criterion) {
    bench_event(c, "small", &small());
    bench_event(c, "1KiB", &large());
}

criterion_group!(benches, codecs);
criterion_main!(benches);

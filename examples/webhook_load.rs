//! Load generator for `provenant webhook`, used by scripts/bench.sh (the
//! admission latency section): CONCURRENCY clients, each on its own
//! keep-alive TLS connection as the API server keeps them, POST the same
//! AdmissionReview REQUESTS times; prints one JSON line with the latency
//! percentiles of the requests after each client's first (which also pays
//! its TLS handshake, reported apart).
//!
//! Closed loop (each client sends its next request when the last one is
//! answered, so CONCURRENCY requests are always in flight), or, with RATE,
//! open loop: the clients together send RATE requests per second on a fixed
//! schedule (latency counts from each actual send).
//!
//!   cargo run --release --example webhook_load -- URL CA.pem REVIEW.json 200 50 [RATE]
use std::time::{Duration, Instant};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 && a.len() != 7 {
        eprintln!(
            "usage: webhook_load URL CA_PEM REVIEW_JSON CONCURRENCY REQUESTS_PER_CLIENT [RATE]"
        );
        std::process::exit(2);
    }
    let url = a[1].clone();
    let ca = std::fs::read(&a[2]).expect("CA file");
    let body = std::fs::read(&a[3]).expect("review file");
    let clients: usize = a[4].parse().expect("CONCURRENCY");
    let per: usize = a[5].parse().expect("REQUESTS_PER_CLIENT");
    let rate: Option<f64> = a.get(6).map(|r| r.parse().expect("RATE"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let results = rt.block_on(async move {
        let mut tasks = Vec::new();
        let start = tokio::time::Instant::now() + Duration::from_millis(500);
        for c in 0..clients {
            let (url, ca, body) = (url.clone(), ca.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut first = None;
                let mut lat = Vec::with_capacity(per);
                let mut errors = 0usize;
                // Open loop: client c sends at start + (k * clients + c) / rate.
                let slot = |k: usize| {
                    rate.map(|r| start + Duration::from_secs_f64((k * clients + c) as f64 / r))
                };
                for i in 0..per {
                    if let Some(at) = slot(i) {
                        tokio::time::sleep_until(at).await;
                    }
                    // From the moment the request is sent: tokio's timer
                    // wakes up to a millisecond after the slot, which is
                    // the generator's slack, not the webhook's latency (the
                    // open loop runs far below the webhook's throughput, so
                    // no queue builds up that this would hide).
                    let t = Instant::now();
                    let ok = match client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    let us = t.elapsed().as_micros() as u64;
                    if !ok {
                        errors += 1;
                    } else if i == 0 {
                        first = Some(us);
                    } else {
                        lat.push(us);
                    }
                }
                (first, lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut firsts = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (f, l, e) = t.await.unwrap();
            firsts.extend(f);
            all.extend(l);
            errors += e;
        }
        (all, firsts, errors)
    });
    let wall = t0.elapsed().as_secs_f64();
    let (mut lat, mut firsts, errors) = results;
    lat.sort_unstable();
    firsts.sort_unstable();
    println!(
        "{{\"requests\":{},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"first_p50_us\":{},\"first_p99_us\":{},\"rps\":{:.0}}}",
        lat.len() + firsts.len(),
        errors,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        percentile(&firsts, 0.50),
        percentile(&firsts, 0.99),
        (lat.len() + firsts.len()) as f64 / wall
    );
}

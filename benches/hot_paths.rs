//! Micro-benchmarks of the hot paths, on the same code the binary runs:
//! hashing a tree of small files, serializing a statement with 10k
//! subjects straight from the tree, the dirHash of 10k files, DSSE signing
//! of a 1.7 MB statement. `cargo bench --bench hot_paths`; end to end
//! against the peers is `scripts/bench.sh`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use provenant::digest::{self, WalkOptions};
use provenant::provenance::{self, HashedRoot, ProductsAs, StatementRef};
use provenant::sign::{Algorithm, LocalSigner, Signed};

const FILES: usize = 10_000;

/// 10k files of 4 KiB in 200 directories, node_modules-like.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("temp dir");
    for i in 0..FILES {
        let dir = t.path().join(format!("node_modules/pkg{}/lib", i / 50));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let body: Vec<u8> = (0..4096u32).map(|b| (b ^ i as u32) as u8).collect();
        std::fs::write(dir.join(format!("mod{i}.js")), body).expect("write");
    }
    t
}

fn hashing(c: &mut Criterion) {
    let t = tree();
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes((FILES * 4096) as u64));
    g.bench_function("tree of 10k 4 KiB files", |b| {
        b.iter(|| digest::hash_tree(black_box(t.path()), &WalkOptions::default()).expect("walk"))
    });
    g.finish();
}

fn describing(c: &mut Criterion) {
    let t = tree();
    let root = provenance::hash_root(t.path(), &WalkOptions::default()).expect("walk");
    let roots = [root];
    let mut g = c.benchmark_group("describe");
    g.throughput(Throughput::Elements(FILES as u64));
    g.bench_function("10k subjects serialized from the tree", |b| {
        b.iter(|| {
            let subjects = provenance::subjects(&roots, ProductsAs::Files).expect("subjects");
            serde_json::to_vec(&StatementRef::slsa(&subjects, &serde_json::json!({})))
                .expect("json")
        })
    });
    g.bench_function("10k subjects built as descriptors, then serialized", |b| {
        b.iter(|| {
            let built: Vec<provenance::ResourceDescriptor> =
                provenance::subjects(&roots, ProductsAs::Files)
                    .expect("subjects")
                    .to_vec();
            serde_json::to_vec(&StatementRef::slsa(&built, &serde_json::json!({}))).expect("json")
        })
    });
    g.bench_function("dirHash of 10k files", |b| {
        b.iter(|| roots[0].tree.dir_hash().expect("dirhash"))
    });
    g.finish();
}

fn signing(c: &mut Criterion) {
    let t = tree();
    let root: HashedRoot = provenance::hash_root(t.path(), &WalkOptions::default()).expect("walk");
    let roots = [root];
    let subjects = provenance::subjects(&roots, ProductsAs::Files).expect("subjects");
    let predicate = serde_json::json!({});
    let statement = StatementRef::slsa(&subjects, &predicate);
    let size = serde_json::to_vec(&statement).expect("json").len();
    let mut g = c.benchmark_group("dsse");
    g.throughput(Throughput::Bytes(size as u64));
    for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
        let key = LocalSigner::generate(alg).expect("key");
        g.bench_function(
            format!("sign a {} kB statement, {alg:?}", size / 1000),
            |b| {
                b.iter(|| {
                    Signed::sign(
                        provenance::IN_TOTO_PAYLOAD_TYPE,
                        black_box(&statement),
                        size,
                        &key,
                    )
                    .expect("sign")
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().sample_size(20);
    targets = hashing, describing, signing
}
criterion_main!(hot_paths);

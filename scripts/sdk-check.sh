#!/usr/bin/env bash
# The SDK as its users get it (CI runs this after scripts/test.sh; .ci/run):
#
#   1. `cargo package` of the published crates, each verified by building it from its own
#      tarball (unpublished siblings resolve through cargo's local registry overlay); any
#      warning but "a test/bench is not in the package" fails;
#   2. `cargo doc` of the workspace with rustdoc's warnings denied;
#   3. examples/my-worker — a user's crate depending on runpod-handler and runpod-otel-layer BY
#      VERSION — copied outside the repository and pointed at the unpacked tarballs (a
#      `[patch.crates-io]`, what crates.io would serve), then built with its Dockerfile's
#      command (in dev profile), tested with runpod_handler::testing, and run with
#      --test_input and with its test_input.json.
#
# Cost on a fresh clone after scripts/test.sh: the packaging builds what each crate's own
# feature set changes (they differ from the workspace's unified set), about 90 units; the
# builds share the target directory and the workspace's dev profile (an unpacked crate is a
# workspace of its own, without the root's [profile.dev]: the same settings are passed with
# --config, so every dependency whose features agree is reused: without them the packaging
# rebuilt 267 units, three times as long). The user crate shares the packaged lockfile, so it
# compiles little more than itself. Needs the crates.io index (packaging resolves
# dependencies as a registry would).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
# The root Cargo.toml's [profile.dev], for the builds of crates outside its workspace.
dev_profile=(--config 'profile.dev.debug="line-tables-only"' --config 'profile.dev.package."*".debug=false')

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== cargo package (verified)"
cargo package -p runpod-handler -p runpod-otel-layer -p mineru-handler --locked --allow-dirty "${dev_profile[@]}" \
    2>&1 | tee "$work/package.log"
# Tests and benchmarks stay in the repository (they use its test support and fixtures).
if grep '^warning' "$work/package.log" \
    | grep -v 'as `\(tests\|benches\)/[^`]*` is not included in the published package$'; then
    echo "error: cargo package warned (above)" >&2
    exit 1
fi

echo "== cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --workspace --locked

echo "== a user's worker on the packaged crates"
mkdir -p "$work/crates"
for crate in runpod-handler runpod-otel-layer; do
    tar xzf "$CARGO_TARGET_DIR/package/$crate-$version.crate" -C "$work/crates"
done
cp -r examples/my-worker "$work/my-worker"
cd "$work/my-worker"
rm -rf target
cat >> Cargo.toml <<TOML

[patch.crates-io]
runpod-handler = { path = "../crates/runpod-handler-$version" }
runpod-otel-layer = { path = "../crates/runpod-otel-layer-$version" }
TOML
# The dependency versions the packaged crate was verified with (a user's first build would
# take the newest; these share the packaging's compiled dependencies).
cp "../crates/runpod-otel-layer-$version/Cargo.lock" Cargo.lock
cargo fetch --quiet

build='cargo build --release --locked'
grep -qF "$build" Dockerfile || { echo "error: the Dockerfile no longer runs '$build'" >&2; exit 1; }
${build/ --release/} "${dev_profile[@]}"
cargo test --locked "${dev_profile[@]}"
cargo fmt --check # users copy it

worker="$CARGO_TARGET_DIR/debug/my-worker"
expected='Job result: {\"output\": {\"words\": 5, \"keywords\": [\"milliseconds\", \"workers\"]}}'
expect_result() {
    grep -qF "$expected" <<<"$1" || { echo "error: the local job printed:" >&2; echo "$1" >&2; exit 1; }
}
expect_result "$("$worker" --test_input '{"input": {"text": "Rust workers start in milliseconds", "top": 2}}')"
expect_result "$("$worker")" # no flag: test_input.json in the working directory
echo "sdk-check: packaged crates verified, docs clean, the user's worker builds, tests and runs"

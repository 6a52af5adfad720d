#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for SECONDS each (default 60),
# starting from the checked-in seeds in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 3600       # an hour per target, by hand
#
# Needs `cargo install cargo-fuzz` and a C++ compiler. cargo-fuzz passes
# nightly-only flags (-Zsanitizer=address, sancov); on a stable toolchain
# RUSTC_BOOTSTRAP=1 lets rustc accept them. New inputs libFuzzer finds go to
# a scratch corpus (fuzz/corpus-run/), not the checked-in seeds; a crash
# lands in fuzz/artifacts/<target>/ — copy it to fuzz/regressions/<target>/
# under a name saying what it found, and fix the decoder: the normal test
# suite replays every file there (protocol/tests/it/fuzz_corpus.rs).
set -euo pipefail

seconds="${1:-60}"
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

targets=(request_frame request_body response batch batch_iter peer_frame)
cargo fuzz build -O
status=0
for target in "${targets[@]}"; do
    scratch="corpus-run/${target}"
    mkdir -p "${scratch}"
    echo "== ${target}: ${seconds}s"
    # -rss_limit_mb: a decoder that allocates from a length field without
    # checking it shows up as an out-of-memory crash.
    if ! cargo fuzz run -O "${target}" "${scratch}" "corpus/${target}" -- \
        -max_total_time="${seconds}" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1; then
        echo "!! ${target}: crash, see fuzz/artifacts/${target}/" >&2
        status=1
    fi
done
exit "${status}"

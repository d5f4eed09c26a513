#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 30); exits non-zero if any
# target crashes (an assertion, a panic, a timeout). `.ci/test` calls it after the tests.
#
#   bash fuzz/run.sh [SECONDS]
#
# Only the stable toolchain is installed, so no sanitizer (`-s none`: ASan needs nightly's
# -Zsanitizer); the parser is safe Rust, so libFuzzer's coverage and the targets'
# assertions are what matter. Each target starts from fuzz/seeds/TARGET (committed) and
# the corpus it grew before (fuzz/corpus/TARGET, not committed), with fuzz/dict/http.dict.
# A crash leaves its input in fuzz/artifacts/TARGET/; replay it with
# `cargo fuzz run -s none -O TARGET fuzz/artifacts/TARGET/crash-...`, then make it a
# regression test in tests/.
set -euo pipefail
seconds="${1:-30}"
cd "$(dirname "$0")"
targets=(request_head chunked request_head_differential)
cargo fuzz build -s none -O
status=0
passed=0
failed=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" artifacts
  log="artifacts/$target.log"
  if cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -dict=dict/http.dict -print_final_stats=1 >"$log" 2>&1; then
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    echo "fuzz: $target: ${seconds}s, ok: ${done_line:-no DONE line}"
    passed=$((passed + 1))
  else
    status=1
    failed=$((failed + 1))
    echo "fuzz: $target: CRASHED (log: fuzz/$log)"
    tail -40 "$log"
  fi
done
echo "fuzz: $passed passed, $failed failed"
exit "$status"

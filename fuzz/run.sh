#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 30); exits non-zero if any
# target crashes (an assertion, a panic, a timeout). `.ci/test` calls it after the tests.
#
#   bash fuzz/run.sh [SECONDS]
#
# Only the stable toolchain is installed, so no sanitizer (`-s none`: ASan needs nightly's
# -Zsanitizer); the parsers are safe Rust, so libFuzzer's coverage and the targets'
# assertions are what matter. Each target starts from fuzz/seeds/TARGET (committed) and
# the corpus it grew before (fuzz/corpus/TARGET, not committed), with fuzz/dict/TARGET.dict
# if there is one, else fuzz/dict/http.dict.
# Each target first runs every committed seed once (fuzz/seeds/TARGET: the regression
# check; a failing seed fails the run), then searches for SECONDS. A failing input the
# search finds fails the run too, unless FUZZ_FINDS=report: .ci/test sets that, because a
# chance find in 20 s is news about old code, not a regression of the change under test;
# it is printed in CI's log either way.
# A crash leaves its input in fuzz/artifacts/TARGET/; replay it with
# `cargo fuzz run -s none -O TARGET fuzz/artifacts/TARGET/crash-...`, then make it a
# regression test in tests/.
set -euo pipefail
seconds="${1:-30}"
cd "$(dirname "$0")"
targets=(request_head chunked request_head_differential ini xml environ)
cargo fuzz build -s none -O
status=0
passed=0
failed=0
found=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" artifacts
  log="artifacts/$target.log"
  # 1. The regression check: every committed seed (inputs that once failed among them)
  #    runs once. Deterministic: a failure here fails the run.
  if ! cargo fuzz run -s none -O "$target" "seeds/$target" -- -runs=0 >"$log.seeds" 2>&1; then
    status=1
    failed=$((failed + 1))
    echo "fuzz: $target: a committed seed fails (log: fuzz/$log.seeds)"
    tail -40 "$log.seeds"
    continue
  fi
  passed=$((passed + 1))
  # 2. The search: SECONDS of new inputs from the seeds and the corpus grown before.
  dict="dict/$target.dict"
  [ -f "$dict" ] || dict=dict/http.dict
  if cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -dict="$dict" -print_final_stats=1 >"$log" 2>&1; then
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    echo "fuzz: $target: seeds ok; ${seconds}s search: ${done_line:-no DONE line}"
  else
    found=$((found + 1))
    echo "fuzz: $target: the search FOUND A FAILING INPUT (log: fuzz/$log; input in fuzz/artifacts/$target/)"
    grep -A3 "panicked" "$log" | head -8 || true
    [ "${FUZZ_FINDS:-fail}" = report ] || status=1
  fi
done
echo "fuzz: $passed passed, $failed failed"
if [ "$found" -gt 0 ]; then
  echo "fuzz: the search found $found new failing input(s): make each a seed and a test, then fix it"
fi
exit "$status"

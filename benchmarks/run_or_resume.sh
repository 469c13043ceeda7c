# Sourced by the long benchmark scripts (calibrate_smollm2.sh, sequential_smollm2.sh, sequential_gpu.sh):
# `run_or_resume DIR ARGS...` runs `$EDITKIT run ARGS... --out DIR` unless DIR already holds a finished run
# (result.json: skipped) or an interrupted one (a journal: continued with `editkit run --resume DIR`, which
# replays its complete batches). With ONLY set (space-separated run names, the basenames of DIR), other runs
# are skipped. Output goes to DIR.log (appended); one status line per run goes to standard output.
# Needs EDITKIT and the array COMMON (the arguments every run shares) set by the caller.
run_or_resume() {
  local dir=$1; shift
  local name; name=$(basename "$dir")
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  if [ -f "$dir/result.json" ]; then echo "skip $dir (done)"; return 0; fi
  echo "=== $dir $(date '+%F %T')"
  local status start=$SECONDS  # bash's own clock: no /usr/bin/time needed (a bare GPU image lacks it)
  if [ -f "$dir/journal/manifest.json" ]; then
    "$EDITKIT" run --resume "$dir" --quiet >> "$dir.log" 2>&1
    status=$?
  else
    "$EDITKIT" run "${COMMON[@]}" --out "$dir" "$@" >> "$dir.log" 2>&1
    status=$?
  fi
  echo "exit $status, wall $((SECONDS - start)) s" >> "$dir.log"
  echo "    exit $status $(date '+%F %T'): $(tail -2 "$dir.log" | tr '\n' ' ')"
  return 0
}

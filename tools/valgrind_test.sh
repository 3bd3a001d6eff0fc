#!/usr/bin/env bash
# Runs one C test program under valgrind (make test-c-valgrind) so that a failure can be read
# from the last lines of a truncated CI log.
#
#   tools/valgrind_test.sh <program> [valgrind option...]
#
# Valgrind writes its report to <program>.<pid>.valgrind.log (one file per process: the fork
# test's child gets its own) and the program's output goes to <program>.out. Both are printed
# afterwards, the output last, then on failure a final line naming the program and why it
# failed. Only definite leaks are shown: they are the only kind that fails the run, and the
# "possibly lost" records of a program that exits on a failed CHECK with an engine still live
# (hashbrown tables are pointed to from their middle) used to bury the CHECK message.
set -uo pipefail

prog=$1
shift
name=$(basename "$prog")
rm -f "$prog".*.valgrind.log "$prog.out"

PORTWAY_UNDER_VALGRIND=1 valgrind -q --error-exitcode=99 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 \
  --suppressions=tests/c/valgrind.supp --log-file="$prog.%p.valgrind.log" "$@" \
  "$prog" >"$prog.out" 2>&1
rc=$?

failed=0
for log in "$prog".*.valgrind.log; do
  [ -s "$log" ] || continue # -q: empty unless valgrind had something to say
  echo "---- valgrind report $(basename "$log")"
  cat "$log"
  failed=1
done
cat "$prog.out"

if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]; then
  exit 0
fi
if [ "$rc" -eq 99 ]; then
  why="valgrind found memory errors or definite leaks (report above)"
elif [ "$rc" -gt 128 ]; then
  why="killed by signal $((rc - 128))"
elif [ "$rc" -ne 0 ]; then
  check=$(grep -m1 'CHECK failed' "$prog.out")
  why="the test exited with $rc${check:+: $check}"
else
  why="valgrind reported something in a process that exited 0 (report above)"
fi
echo "FAILED under valgrind: $name: $why"
exit 1

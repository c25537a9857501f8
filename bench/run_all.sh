#!/bin/sh
# The full benchmark run behind docs/BENCHMARKS.md: one configuration after another (never in
# parallel: they would measure each other). Results land in bench/results/*.json.
# Usage: bench/run_all.sh [streams|transports|scan|pages|mail|data ...]   (default: all, in this order)
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p bench/results
run() {
    name=$1; shift
    echo "== $name: $PY -m $* ($(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$PY" -m "$@" --out "bench/results/$name.json" 2>&1 | grep -v '^INFO  \[alembic' || true
}
what=${*:-streams transports scan pages mail data}
for part in $what; do
    case $part in
    streams)
        run streams-gunicorn-20000 bench.streams --server gunicorn --db postgresql --clients 20000 --processes 4 --rates 100,500 --seconds 5
        run streams-embedded-10000 bench.streams --server embedded --clients 10000 --processes 3 --rates 100,500 --seconds 5 ;;
    transports)
        run transports-1000 bench.transports --users 1000 --seconds 60 --reminders 20 --plot bench/results/transports-1000.png
        run transports-10000 bench.transports --users 10000 --seconds 60 --reminders 20 --processes 3 --plot bench/results/transports-10000.png ;;
    scan)
        run scan-100000 bench.scan --db sqlite,postgresql --users 100000 --explain
        run scan-1000000 bench.scan --db sqlite,postgresql --users 1000000 --no-first-scan --explain ;;
    pages)
        run pages-embedded bench.pages --server embedded --sessions 200 --seconds 20 --think 1
        run pages-embedded-saturated bench.pages --server embedded --sessions 200 --seconds 20 --think 0
        run pages-gunicorn bench.pages --server gunicorn --db postgresql --sessions 200 --seconds 20 --think 1
        run pages-gunicorn-saturated bench.pages --server gunicorn --db postgresql --sessions 200 --seconds 20 --think 0 ;;
    mail)
        run mail bench.mail --db sqlite,postgresql --reminders 1000,10000 ;;
    data)
        run data bench.data --db sqlite,postgresql --rows 7305,100000
        run data-untraced bench.data --db sqlite,postgresql --rows 100000 --no-trace ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
# The tables for docs/BENCHMARKS.md and its plot, from whatever results exist.
"$PY" -m bench.report --plot docs/transports.png

"""
Run the provider's benchmarks against the emulator and write ``benchmarks/RESULTS.md``.

    python benchmarks/run.py                 # everything (``make bench``)
    python benchmarks/run.py --quick         # scaled down, a few seconds a row (the test suite's smoke run)
    python benchmarks/run.py --only 3 --repeats 5
    python benchmarks/run.py --only 7         # a day through real Airflow processes (~15 min, once)

Every row compares the provider with the documentation's own sample code, in the same run, on loopback
against the emulator running in its own process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, Figure, RowResult, machine_info, setup_environment, summary, verdict

ROWS = {
    "1": "bench_polling",
    "2": "bench_triggerer",
    "3": "bench_upload",
    "4": "bench_listing",
    "5": "bench_parse",
    "6": "bench_submit_rate",
    "7": "bench_daily_volume",
    "8": "bench_shared_triggers",
}
#: Rows that start real Airflow processes: left out of ``--quick`` unless named with ``--only``.
AIRFLOW_ROWS = frozenset({"7"})


#: What the figures mean where a target is missed or a figure needs reading: the causes found, by row.
NOTES = {
    "1": (
        "Requests per cycle stay within `max_requests_per_cycle` = 5 whatever N: `BatchTracker._batch` "
        "(`callcov_provider/tracking.py`) reads the `processing` pages, then confirms departed ids from the "
        "`completed` listing and reads the `failed` listing only for ids not found there. The measured "
        "baseline falls short of its nominal count because one emulator process cannot answer hundreds of "
        "GETs a second on this machine, which stretches the docs' loop's effective interval in its favour; "
        "the ratio to the nominal count is given beside it."
    ),
    "2": (
        "Every hook on an event loop shares one `httpx.AsyncClient`, at most `MAX_IN_FLIGHT` = 32 requests "
        "per loop are in flight (`callcov_provider/hooks/async_pool.py`), and each trigger waits a random "
        "part of its poll interval (at most `max_first_poll_splay` = 10 s) before its first poll, so "
        "triggers started together do not poll, or handle their answers, in one burst. The price is a "
        "first answer up to one poll interval later. Not frozen, the stall includes Python's garbage "
        "collector: after importing Airflow and the provider about 161,000 objects are tracked, and one "
        "full collection of them takes ~100 ms on this machine (0 ms once frozen). Airflow 3.3's "
        "triggerer does not call `gc.freeze()`, so a real triggerer sees such pauses whatever its "
        "triggers do."
    ),
    "4": (
        "The full read makes 10x fewer requests, but takes longer than the baseline: the hook validates "
        "every analysis into the pydantic `Analysis` model, where the docs' loop keeps raw dicts."
    ),
    "5": (
        "Provider discovery (every Airflow process) no longer imports pydantic: the API's addresses that "
        "the connection form needs live in `callcov_provider/constants.py`. The figure is the median "
        "difference of two fresh-interpreter timings, each noisy by tens of ms on a 2-core machine."
    ),
    "6": (
        "Limit only: 200 submissions never reach 1200 a minute in the emulator's fixed one-minute windows, "
        "so there is no 429 at all and the row measures the plain submit path. Forced scenario (40 429s "
        "with `Retry-After: 1`, 5% lost answers): the hook waits what the server asked plus at most 1 s of "
        "jitter (`RetryPolicy.next_wait`, `callcov_provider/hooks/retry.py`), counts those paced 429s "
        "against `max_rate_limited_retries` = 20 and apart from failures (`RetryController`), and replays "
        "lost answers under the same idempotency key; the docs' loop loses about a quarter of the batch "
        "and never learns of some analyses it created."
    ),
    "7": (
        "The batch operator, mapped over 8 chunks of 250, submits 2,000 calls at the quota: its submission "
        "phase (first submission to last acceptance) is what the quota bounds, and it can beat calls / quota "
        "because a run starts inside a quota window, whose remainder it may use at once. The 429s are the "
        "in-flight submissions that meet a window's end before a chunk's pacer has seen a whole window and "
        "learnt the quota; each chunk's process learns it again. The per-call DAG spends one worker "
        "process per call: 32x the Airflow CPU per call, 167x the task instances, and on SQLite it can lock "
        "its metadata database (it did in an earlier run, whose scheduler died with 'database is locked')."
    ),
    "8": (
        "On Airflow 3.3+ the 500 `AnalysisCompletedTrigger`s declare one `shared_stream_key` (connection, "
        "poll interval); Airflow's `SharedStreamManager` runs one producer for the group, which drives one "
        "`BatchTracker` over every id still wanted (`callcov_provider/triggers/shared.py`), so a cycle costs "
        "at most `max_requests_per_cycle` = 5 in all. The baseline (`share_poll_loop = False`, and every "
        "Airflow below 3.3) makes one GET per trigger per cycle; its per-cycle figure varies with how the "
        "first-poll splay and the processing times spread the triggers over the windows."
    ),
}


def save_rows(path: Path, results: list[RowResult]) -> None:
    payload = {
        r.row: {"title": r.title, "details": r.details, "figures": [f.to_json() for f in r.figures]}
        for r in results
    }
    path.write_text(json.dumps(payload, indent=1))


def load_rows(path: Path) -> dict[str, RowResult]:
    rows = {}
    for row, data in json.loads(path.read_text()).items():
        figures = [Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in data["figures"]]
        rows[row] = RowResult(row, data["title"], figures, data["details"])
    return rows


def table(results: list[RowResult]) -> list[str]:
    lines = [
        "| # | what | unit | ours: median [min-max] | baseline: median [min-max] | ours / baseline "
        "| target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for fig in result.figures:
            ratio = "-" if fig.ratio is None else f"{fig.ratio:.3g}"
            lines.append(
                f"| {fig.row} | {fig.what} | {fig.unit} | {summary(fig.ours)} | {summary(fig.baseline)} | "
                f"{ratio} | {fig.target or '-'} | {verdict(fig.met)} |"
            )
    return lines


def write_results(path: Path, results: list[RowResult], args: argparse.Namespace, seconds: float) -> None:
    machine = machine_info()
    written = (
        "Rewritten from `results.json` by `python benchmarks/run.py --report-only` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; each row says when it was measured."
        if getattr(args, "report_only", False)
        else f"Written by `python benchmarks/run.py{' --quick' if args.quick else ''}"
        f"{' --only ' + ','.join(args.only) if args.only else ''} --repeats {args.repeats}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} in {seconds / 60:.1f} min."
    )
    out = [
        "# Benchmark results",
        "",
        written,
        "",
        "Every figure is the median over the repeated runs with the range [min-max] beside it; the ratio is",
        "median(ours) / median(baseline). The baselines are the documentation pages' own samples",
        "(`benchmarks/doc_samples.py`), run in the same session against the same emulator, which runs in",
        "its own process on loopback.",
        "",
        *(
            [
                f"Rows {', '.join(args.only)} were measured by this run; the other rows keep the figures of "
                "their last run (see each row's 'Measured' line).",
                "",
            ]
            if args.only
            else []
        ),
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in machine.items()),
        *([f"- note: {args.machine_note}"] if getattr(args, "machine_note", None) else []),
        "",
        "## Results",
        "",
        *table(results),
        "",
    ]
    for result in results:
        out += [f"## Row {result.row}: {result.title}", "", *result.details, ""]
        if result.row in NOTES:
            out += [f"**Reading row {result.row}.** {NOTES[result.row]}", ""]
    path.write_text("\n".join(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="scale every row down (smoke run)")
    parser.add_argument("--only", action="append", choices=sorted(ROWS), help="only this row (repeatable)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="where to write")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite RESULTS.md from the saved rows, run nothing"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="rows as JSON (default: beside --results, results.json)"
    )
    parser.add_argument(
        "--machine-note",
        default=None,
        help="a line for RESULTS.md's Machine section, e.g. how busy the machine was during the run",
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.json is None:
        args.json = args.results.with_name("results.json")
    setup_environment()
    from common import quiet_logging

    quiet_logging()
    started = time.monotonic()
    results: list[RowResult] = []
    failed: list[str] = []
    if args.report_only:
        write_results(args.results, list(load_rows(args.json).values()), args, 0.0)
        print(f"rewrote {args.results} from {args.json}")
        return 0
    chosen = args.only or [row for row in sorted(ROWS) if not (args.quick and row in AIRFLOW_ROWS)]
    for row in chosen:
        module = importlib.import_module(ROWS[row])
        print(f"== {module.__doc__.strip().splitlines()[0]}", flush=True)
        row_started = time.monotonic()
        try:
            result = module.run(args.quick, args.repeats)
        except Exception:
            traceback.print_exc()
            failed.append(row)
            continue
        took = time.monotonic() - row_started
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        result.details += ["", f"Measured {stamp}, {args.repeats} repeat(s), {took:.0f} s."]
        results.append(result)
        print("\n".join(table([result])), flush=True)
        for line in result.details:
            print("   " + line)
        print(f"   ({time.monotonic() - row_started:.0f} s)", flush=True)
    elapsed = time.monotonic() - started
    if args.only and args.json.exists():
        # A partial run keeps the other rows of the last run (their section says when they ran).
        kept = {row: rr for row, rr in load_rows(args.json).items() if row not in {r.row for r in results}}
        results = sorted([*results, *kept.values()], key=lambda r: r.row)
    print("\n".join(["", *table(results)]))
    write_results(args.results, results, args, elapsed)
    save_rows(args.json, results)
    print(f"\nwrote {args.results} and {args.json} in {elapsed:.0f} s")
    if failed:
        print(f"rows that raised: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

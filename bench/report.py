#!/usr/bin/env python3
"""Turn one benchmark run (bench/runs/<date>-enc/ from bench/enc.sh, or
bench/runs/<date>-host/ from bench/host.sh) into its section of
docs/benchmarks.md, and print its summary.

  report.py RUN_DIR OUTPUT_MD

The other sections of OUTPUT_MD are kept as they are. Only reads what the
script measured; judges each number against its target and says "missed"
plainly when it is.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report_agent  # noqa: E402
import report_changes  # noqa: E402
import report_e2e  # noqa: E402
import report_enc  # noqa: E402
import report_facts  # noqa: E402
import report_host  # noqa: E402
import report_simulate  # noqa: E402
import report_util  # noqa: E402
from report_util import load_facts, write_section  # noqa: E402


def main():
    run, out_path = sys.argv[1], sys.argv[2]
    report_util.CHART_DIR = os.path.join(os.path.dirname(os.path.abspath(out_path)), "bench")
    # Runs from before the host benchmark have no `bench` fact: ENC.
    name = load_facts(run).get("bench", "enc")
    text, summary = {"enc": report_enc, "host": report_host, "facts": report_facts,
                    "agent": report_agent, "changes": report_changes, "e2e": report_e2e,
                    "simulate": report_simulate}[name].render(run)
    write_section(out_path, name, text)
    print(summary)


if __name__ == "__main__":
    main()

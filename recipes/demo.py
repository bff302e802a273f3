"""`make demo`: the text, audio and anomaly parts on data the project makes, in minutes on a laptop CPU.

    python recipes/demo.py --out runs/demo

Each part is a recipe run with small settings; their reports are linked from OUT/report.md and a short
summary is printed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, recipe script, arguments): CPU-sized so that the whole demo stays under 10 minutes on 2 cores
PARTS = [
    ("text", "text_unconditional.py", ["--config", str(HERE / "configs" / "text_demo.yaml"),
                                       "--max-steps", "500", "--quiet"]),
    ("audio", "audio_spoken_digits.py", ["--config", str(HERE / "configs" / "audio_demo.yaml"),
                                         "--max-steps", "600"]),
    ("anomaly", "anomaly_vector.py", ["--max-steps", "400", "--methods", "ode,denoise"]),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--parts", default=",".join(p[0] for p in PARTS), help="comma-separated subset")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = a.parts.split(",")
    summary, sections, failed = [], ["# multidiff demo", ""], []
    for name, script, args in PARTS:
        if name not in wanted:
            continue
        path = HERE / script
        if not path.is_file():
            summary.append(f"{name:8s} not available in this version ({script} missing)")
            continue
        t0 = time.time()
        print(f"== {name}: {script} {' '.join(args)}", flush=True)
        proc = subprocess.run([sys.executable, str(path), "--out", str(out / name), *args],
                              stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        sys.stdout.write(proc.stdout)
        took = time.time() - t0
        last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        if proc.returncode != 0:
            failed.append(name)
            summary.append(f"{name:8s} FAILED (exit {proc.returncode}) after {took:.0f} s")
            continue
        summary.append(f"{name:8s} {took:5.0f} s  {last}")
        sections += [f"## {name}", "", f"{last}", "", f"Full report: [{name}/report.md]({name}/report.md)", ""]
    (out / "report.md").write_text("\n".join(sections))
    print("\n==== multidiff demo summary ====")
    for line in summary:
        print(line)
    print(f"report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

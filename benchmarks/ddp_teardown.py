"""How often a finished two-process DDP run (gloo, CPU) aborts at interpreter exit, with and without
a pause like the one `Dist.close` takes before destroying the process group.

Each run is `torchrun --standalone --nproc_per_node 2` of this file in worker mode: DDP around a tiny
linear layer, three backward passes, three all-reduces, a barrier, then `--pause` seconds of sleep
(the GIL released) and `destroy_process_group()`. With torch 2.14 a gloo worker thread that frees one of
DDP's finished collectives only while the interpreter shuts down aborts the process ("terminate called
without an active exception", exit code -6); a busy CPU makes it likelier (run it beside other work).

    python benchmarks/ddp_teardown.py [--runs 20] [--pauses 0,0.05] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(pause: float) -> None:
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    x = torch.ones(1, 3)
    ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
    for _ in range(3):
        ddp(x).sum().backward()
    for _ in range(3):
        dist.all_reduce(x)
    dist.barrier()
    if pause:  # even time.sleep(0) releases the GIL once, which is a (shorter) pause too
        time.sleep(pause)
    dist.destroy_process_group()


def launch(pause: float) -> int:
    """Exit code of one two-process run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, "--worker", "--pause", str(pause)]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per pause (interleaved)")
    ap.add_argument("--pauses", default="0,0.05", help="comma-separated seconds")
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.pause)
        return 0
    pauses = [float(p) for p in a.pauses.split(",")]
    failed = {p: 0 for p in pauses}
    for _ in range(a.runs):
        for p in pauses:
            failed[p] += launch(p) != 0
    rows = [{"pause_s": p, "runs": a.runs, "aborted": failed[p]} for p in pauses]
    print("| pause before destroy_process_group | runs | aborted at exit |\n|---|---|---|")
    for r in rows:
        print(f"| {r['pause_s']:g} s | {r['runs']} | {r['aborted']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One peer's runner, in that peer's virtualenv: ``python -m benchmarks.peers.run ...``.

Started by benchmarks/peer_bench.py, once for the setup and the one-off phases
and once per drain round. Prints ``RESULT {json}`` as its last line; a phase that
fails is reported in it (``errors``) and the other phases still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmarks.peers import PEERS, phases


def one_offs(adapter: Any, params: dict[str, Any], ctx: phases.Context) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    errors: dict[str, str] = {}
    steps = {
        "enqueue": lambda: phases.enqueue_cost(adapter, params["enqueue_samples"]),
        "pickup": lambda: phases.pickup(adapter, params["pickup_samples"], ctx),
        "sustained": lambda: phases.sustained(
            adapter,
            rate=params["rate"],
            seconds=params["seconds"],
            producers=params["producers"],
            ctx=ctx,
        ),
    }
    for name, step in steps.items():
        print(f"{ctx.peer}: {name} ...", file=sys.stderr, flush=True)
        try:
            figures.update(step())
        except Exception as exc:
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            try:
                adapter.reset()
            except Exception:
                traceback.print_exc()
    return {"figures": figures, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", required=True, choices=sorted(PEERS))
    parser.add_argument("--phase", required=True, choices=("setup", "one-offs", "drain"))
    parser.add_argument("--params", default="{}")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--marker", required=True)
    args = parser.parse_args()
    # A stopped runner goes through the finally blocks that stop its workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    params = json.loads(args.params)
    peer = PEERS[args.peer]
    module = importlib.import_module(f"benchmarks.peers.{peer.adapter}")
    adapter = module.make(args.peer, Path(args.workdir))
    ctx = phases.Context(peer=args.peer, workdir=Path(args.workdir), marker=args.marker)
    if args.phase == "setup":
        adapter.setup()
        adapter.reset()
        result: dict[str, Any] = {"versions": adapter.versions()}
    elif args.phase == "one-offs":
        result = one_offs(adapter, params, ctx)
    else:
        result = phases.drain(adapter, params["count"], ctx, label=f"drain{params['round']}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

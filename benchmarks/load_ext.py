"""How long `%load_ext hfmagic` takes, against the IPython shell start-up it adds to.

Each round starts a fresh interpreter that creates an InteractiveShell, then times
`%load_ext hfmagic` alone (what a user waits for in a kernel that is already running) and checks
that no heavy library was imported. Prints the median time last (target: at most 0.3 s).
"""

import json
import statistics
import subprocess
import sys

ROUNDS = 7
CODE = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", "hfmagic")
dt = time.perf_counter() - t
heavy = [m for m in ("torch", "transformers", "optimum", "onnxruntime", "evaluate", "datasets", "pandas")
         if m in sys.modules]
print(json.dumps({"seconds": dt, "heavy": heavy}))
"""


def main() -> None:
    times = []
    for i in range(ROUNDS):
        out = json.loads(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                        check=True).stdout)
        if out["heavy"]:
            raise SystemExit(f"%load_ext imported {', '.join(out['heavy'])}")
        times.append(out["seconds"])
        print(f"round {i + 1}: {out['seconds'] * 1000:.1f} ms")
    print(f"%load_ext hfmagic, median of {ROUNDS} fresh processes (target <= 0.3 s): "
          f"{statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()

"""Benchmark: validation MAE of float32 vs mixed bfloat16 training on the demo data.

Trains the same model (default: the demo config's D-GEX, one partition) on the
demo split twice, in float32 and in bf16, with the same seed, evaluates both on
the validation profiles (``streamgex evaluate``) and prints both MAEs and their
relative difference (target: within 1%).

    python tools/bench_precision.py                 # needs the demo: tools/demo.sh first
    python tools/bench_precision.py --model autoencoder --workdir streamgex-demo
"""

import argparse
import subprocess
import sys
from pathlib import Path

from streamgex.evaluation.evaluate import evaluate

OPTIONS = {
    "dgex": ["hidden=512,512,512", "batch=64", "max_epochs=30", "learning_rate=0.01"],
    "autoencoder": ["hidden=256,64,256", "batch=64", "max_epochs=30", "learning_rate=0.01"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(OPTIONS), default="dgex")
    parser.add_argument("--workdir", default="streamgex-demo")
    args = parser.parse_args()
    split = Path(args.workdir) / "work" / "split"
    if not (split / "train").exists():
        sys.exit(f"{split}: no demo split; run tools/demo.sh first")
    results = {}
    for precision in ("float32", "bf16"):
        run = Path(args.workdir) / "bench-precision" / f"{args.model}-{precision}"
        sets = [a for o in OPTIONS[args.model] for a in ("--set", o)]
        subprocess.run([sys.executable, "-m", "streamgex", "train", args.model, "--data", str(split),
                        "--run-dir", str(run), "--precision", precision, "--restart", "--quiet",
                        *sets], check=True)
        results[precision] = evaluate(run, split / "val")["mae"]
    f32, b16 = results["float32"], results["bf16"]
    print(f"{args.model}: val MAE float32 {f32:.4f}, bf16 {b16:.4f}, "
          f"relative difference {(b16 - f32) / f32:+.2%}")


if __name__ == "__main__":
    main()

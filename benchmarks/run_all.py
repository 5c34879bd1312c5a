"""`make bench`: every benchmark, each in its own process, each printing ratios measured in that run.

Sizes are the issues' targets (merge >= 1 GB, reader >= 1.6 GB, start-up merge 2 x 0.7 GB); the
work files go under bench-out/ and are deleted by each benchmark when it is done (bench_decode keeps
its generated video there, to be reused).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path("bench-out")

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("start-up: lfbtool --help wall time, lfbtool merge peak RSS (two 0.7 GB banks)",
     ["bench_startup.py", "--size-gb", "0.7", "--workdir", str(OUT / "startup")]),
    ("extract: end to end vs bare forward", ["bench_extract.py", "--workdir", str(OUT / "extract"), "--seconds", "30"]),
    ("merge: streaming vs MMAction2 in-memory", ["bench_merge.py", "--size-gb", "1.0", "--workdir", str(OUT / "merge")]),
    ("reader: FeatureBank vs torch.load pickle", ["bench_reader.py", "--size-gb", "1.6", "--workdir", str(OUT / "reader")]),
    ("recognize: full path vs bare forward", ["bench_recognize.py", "--workdir", str(OUT / "recognize")]),
    ("backbones: extract vs bare forward per backbone", ["bench_backbones.py", "--workdir", str(OUT / "backbones")]),
    ("backbones (transformers, tiny clips): extract vs bare forward",
     ["bench_backbones.py", "--workdir", str(OUT / "transformers"), "--tiny", "--backbones",
      "vit_s_videomae,vit_b_videomae,vit_l_videomae,mvit_v2_s,swin3d_t,swin3d_s,swin3d_b"]),
    ("detect: detect loop vs bare detector forward", ["bench_detect.py", "--workdir", str(OUT / "detect")]),
    ("decode: frames decoded per spanned frame, seek per clip vs decode once", ["bench_decode.py", "--workdir", str(OUT / "decode")]),
    ("precision: fp32 vs bf16 feature forward", ["bench_precision.py"]),
    ("pickle: AVA-train proposals, load_plain and read_proposals vs pickle.load",
     ["bench_pickle.py", "--workdir", str(OUT / "pickle")]),
    ("precision: ViT-B attention under bf16, fused vs written out", ["bench_vit_attention.py"]),
]


def main() -> int:
    failures = []
    for title, command in BENCHMARKS:
        script = HERE / command[0]
        print(f"\n=== {title} ===", flush=True)
        if not script.exists():
            print(f"(missing {script.name})")
            failures.append(title)
            continue
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), *command[1:]])
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        if done.returncode != 0:
            failures.append(title)
    if failures:
        print(f"\nbenchmarks that failed to run: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes tests/fixtures/sampler/guidance_linspace.tsv: torch.linspace(min, max, F) in float32 (torch 2.1 CPU) for
the per-frame guidance scales, F = 1..31, as hex float32 bit patterns (column `bits`) and decimals.
Run with /work/venv-ref/bin/python from the repository root."""
import numpy as np
import torch

rows = ["min\tmax\tframes\tindex\tvalue_f32\tbits\tvalue_f16"]
for lo, hi in [(1.0, 3.0), (0.5, 2.5), (1.0, 1.7), (2.0, 7.5), (0.1, 9.3), (3.0, 1.0)]:
    for frames in range(1, 32):
        t = torch.linspace(lo, hi, frames)
        h = t.half().float()
        for i in range(frames):
            v = np.float32(t[i].item())
            rows.append(f"{lo}\t{hi}\t{frames}\t{i}\t{float(v)!r}\t{v.view(np.uint32):08x}\t{float(h[i])!r}")
open("tests/fixtures/sampler/guidance_linspace.tsv", "w").write("\n".join(rows) + "\n")

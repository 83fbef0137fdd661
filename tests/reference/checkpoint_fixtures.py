"""Small PyTorch `.pth` files for the restricted checkpoint reader's tests (tests/checkpoint.rs).

Run with torch 2.1.0 (tests/reference/requirements.txt):  python tests/reference/checkpoint_fixtures.py
Writes tests/fixtures/checkpoint/. Each file's expected values go to expected.json (nested lists, float64 text)
so the Rust tests need no Python.
"""
import json
import os
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint"


class Evil:
    """An object whose unpickling would run a shell command: the reader must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo trajattn-must-not-run-this",))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    a = torch.randn(2, 3, generator=g)
    b = torch.randn(5, generator=g)
    base = torch.randn(3, 4, generator=g)
    c = base.t()  # non-contiguous view: stride (1, 4) into a 12-element storage
    d = base[1:, 1:3]  # offset view into the same storage
    expected = {}

    torch.save([a, b, c, d], OUT / "list.pth")
    expected["list.pth"] = [x.tolist() for x in (a, b, c, d)]

    h = torch.randn(4, 3, generator=g).half()
    torch.save([h, b.double()], OUT / "mixed_dtypes.pth")
    expected["mixed_dtypes.pth"] = [h.float().tolist(), b.double().tolist()]

    torch.save([h], OUT / "half.pth")
    expected["half.pth"] = [h.float().tolist()]

    named = {"to_q.weight": a, "to_out.0.bias": b}
    torch.save(named, OUT / "named.pth")
    expected["named.pth"] = {k: v.tolist() for k, v in named.items()}

    torch.save({0: a, 1: b}, OUT / "int_keys.pth")
    expected["int_keys.pth"] = [a.tolist(), b.tolist()]

    torch.save([a, Evil()], OUT / "evil.pth")
    expected["evil.pth"] = "refused"

    (OUT / "expected.json").write_text(json.dumps(expected, indent=1))
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()

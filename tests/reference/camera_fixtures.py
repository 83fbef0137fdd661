#!/usr/bin/env python3
"""Regenerates tests/fixtures/camera/: camera-path trajectories (four modes) and a merge, computed with NumPy
directly from the reference facts (docs/reference/trajectory-sources.md §4.2–§4.6, §4.8 and §7), as an
independent port of the official `utils/cameractrl_.py` and `merge_trajectory.py` (which are not on PyPI).

Requirements: numpy (1.26.4 in the reference set; any recent version gives the same results here).
Run from the repository root:  python3 tests/reference/camera_fixtures.py
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "camera")
W, H, F = 48, 28, 4
MODES = {"horizontal": 0.9, "vertical": -0.7, "zoomin": 3.0, "zoomout": 2.0}


def inverse_depth():
    # Smooth, non-constant relative inverse depth (larger = nearer) with a near disk; values like Depth-Anything's.
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    d = 6.0 + 2.0 * np.sin(x / 7.0) + 1.5 * np.cos(y / 5.0) + 0.05 * x
    d[(x - 30) ** 2 + (y - 12) ** 2 < 36] += 25.0
    return d.astype(np.float32)


def centres(mode, deg, frames, R=200.0, r=200.0):
    out = []
    for i in range(frames):
        a = np.deg2rad(i * deg)
        out.append({
            "horizontal": (R * np.sin(a), 0.0, r * np.cos(a)),
            "vertical": (0.0, R * np.sin(a), r * np.cos(a)),
            "zoomin": (0.0, 0.0, r * np.cos(a)),
            "zoomout": (0.0, 0.0, r * (1 + np.sin(a))),
        }[mode])
    return np.array(out, dtype=np.float64)


def normalize(v):
    n = np.linalg.norm(v)
    return v if n == 0 else v / n


def look_at(c):
    fwd = normalize(-c)
    right = normalize(np.cross(np.array([0.0, 1.0, 0.0]), fwd))
    up = np.cross(fwd, right)
    R = np.eye(4)
    R[:3, 0], R[:3, 1], R[:3, 2] = right, up, fwd
    T = np.eye(4)
    T[:3, 3] = -c
    return R.T @ T


def trajectories(invd, mode, deg):
    K = np.array([[260.0, 0, W / 2], [0, 260.0, H / 2], [0, 0, 1]])
    Kinv = np.linalg.inv(K)
    d = invd.astype(np.float32).copy()
    d[d < 1e-5] = 1e-5
    z = np.clip(np.float32(10000) / d, 1e-4, 1e4).astype(np.float32)
    cs = centres(mode, deg, F)
    V0inv = np.linalg.inv(look_at(cs[0]))
    ys, xs = np.mgrid[0:H, 0:W]
    pix = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64)       # (H, W, 3)
    P = z.astype(np.float64)[..., None] * (pix @ Kinv.T)                     # camera-0 points
    coords = [np.stack([xs, ys], -1).astype(np.float64)]
    valid = [np.ones((H, W), bool)]
    for t in range(1, F):
        T = look_at(cs[t]) @ V0inv
        Pt = P @ T[:3, :3].T + T[:3, 3]
        q = Pt @ K.T
        c = q[..., :2] / q[..., 2:3]
        depth = q[..., 2]
        c[depth < 0] = 100000.0
        v = depth > 0
        # Coarse z-buffer, docs/reference/trajectory-sources.md §4.6.
        Znew = np.full((H, W), 10086.0)
        for hh in range(1, H):
            for ww in range(1, W):
                x1, y1 = int(c[hh - 1, ww - 1, 0]), int(c[hh - 1, ww - 1, 1])
                x2, y2 = int(c[hh, ww, 0]), int(c[hh, ww, 1])
                if not (0 <= x1 < W and 0 <= x2 < W and 0 <= y1 < H and 0 <= y2 < H):
                    continue
                a, b = z[hh, ww], z[hh - 1, ww - 1]
                if abs((a - b) / a / b) >= np.float32(0.1):
                    continue
                r0, r1 = min(y1, y2), max(y1, y2)
                c0, c1 = min(x1, x2), max(x1, x2)
                Znew[r0:r1, c0:c1] = np.minimum(Znew[r0:r1, c0:c1], depth[hh, ww])
        for hh in range(1, H):
            for ww in range(1, W):
                x1, y1 = int(c[hh, ww, 0]), int(c[hh, ww, 1])
                if 0 <= x1 < W and 0 <= y1 < H and depth[hh, ww] - Znew[y1, x1] > 0.6:
                    v[hh, ww] = False
        coords.append(c)
        valid.append(v)
    return np.stack(coords), np.stack(valid)


def merge(V, vis, C, Cv):
    V = V.copy()
    xi, yi = np.trunc(V[..., 0]).astype(np.int64), np.trunc(V[..., 1]).astype(np.int64)
    video_valid = vis & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    cam_valid = Cv[:, ::4, ::4].reshape(F, -1)
    for f in range(1, F):
        flow = C[f] - C[0]
        for n in np.nonzero(video_valid[0, f])[0]:
            V[0, f, n] = (V[0, f, n].astype(np.float64) + flow[yi[0, f, n], xi[0, f, n]]).astype(np.float32)
    xi, yi = np.trunc(V[..., 0]).astype(np.int64), np.trunc(V[..., 1]).astype(np.int64)
    mv = video_valid & cam_valid[None] & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    return V, mv


def main():
    os.makedirs(OUT, exist_ok=True)
    invd = inverse_depth()
    np.save(os.path.join(OUT, "inverse_depth.npy"), invd)
    meta = {"width": W, "height": H, "frames": F, "modes": MODES}
    for mode, deg in MODES.items():
        c, v = trajectories(invd, mode, deg)
        np.save(os.path.join(OUT, f"{mode}_coords.npy"), c)
        np.save(os.path.join(OUT, f"{mode}_valid.npy"), v)
    # Merge: synthetic tracks (1, F, N, 2) with N = (W/4)(H/4), drifting and partly invisible, merged with the
    # horizontal camera file.
    rng = np.random.default_rng(12345)
    n = (W // 4) * (H // 4)
    start = np.stack([rng.uniform(0, W, n), rng.uniform(0, H, n)], -1)
    V = np.stack([start + f * rng.normal(0, 0.8, (n, 2)) for f in range(F)])[None].astype(np.float32)
    vis = rng.uniform(size=(1, F, n)) > 0.15
    C = np.load(os.path.join(OUT, "horizontal_coords.npy"))
    Cv = np.load(os.path.join(OUT, "horizontal_valid.npy"))
    Vm, mv = merge(V, vis, C, Cv)
    np.save(os.path.join(OUT, "tracks_coords.npy"), V)
    np.save(os.path.join(OUT, "tracks_valid.npy"), vis)
    np.save(os.path.join(OUT, "merged_coords.npy"), Vm)
    np.save(os.path.join(OUT, "merged_valid.npy"), mv)
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()

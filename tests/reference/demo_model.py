#!/usr/bin/env python3
"""Trains the bundled demo model (assets/demo/model/): a tiny Stable Video Diffusion with the trajectory branch that
really follows trajectories, on synthetic videos this script renders.

Everything is the real layout the runtime loads for real weights: a diffusers folder (UNetSpatioTemporalConditionModel,
AutoencoderKLTemporalDecoder, CLIPVisionModelWithProjection, EulerDiscreteScheduler, CLIPImageProcessor) plus the
trajectory branch in the official `trajattn_temp.pth` form (a list of tensors in named_parameters order).

Data: 64x64 videos of 8 frames. A smooth textured background (still camera) and 2-4 coloured discs and squares; some
move along random polylines at uniform speed (as `trajattn drag` moves a dragged region), some stay. Trajectories
come from the known motion on a grid of step 2 (1,024 points): moving pixels follow their shape, all others are
identity tracks; visibility is either the true occlusion (a track hidden while a shape above it covers it) or
"everything visible" as the drag builder writes it (half the samples each), so the model accepts both.

Training (the sampler it must match: docs/reference/pipeline.md §7 and §10):
  1. the VAE: the encoder's posterior mode regressed onto a fixed code (the image averaged over 2x2 pixels, a 4th
     channel zero) and the temporal decoder trained to reconstruct the frames (L1 + L2) from that code;
     `scaling_factor` is then set to 1 / std of the latents;
  2. the UNet with the trajectory branch (Q/K/V copied from each temporal attention, output projection zero, as the
     paper initialises it): SVD's objective, EDM preconditioning with v-prediction (c_skip = 1/(s^2+1),
     c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = log(s)/4), log-normal sigmas, first-frame conditioning
     through the (noise-augmented, unscaled) image latents concatenated to every frame and the CLIP image embedding,
     added time ids (fps-1, motion bucket, noise augmentation) = (6, 127, 0.02). The CLIP encoder stays random and
     frozen (its embedding is a fixed function of the image; the demo does not need semantics).
The demo runs without classifier-free guidance (guidance 1), so no conditioning dropout is trained.

Deterministic: fixed seeds, CPU, float32, torch.use_deterministic_algorithms; 2 threads. The weights are written in
float16 (the runtime upcasts where the adapter lacks f16). Requirements: tests/reference/requirements.txt.

    python tests/reference/demo_model.py train          # all phases (about 60 minutes on 2 shared cores)
    python tests/reference/demo_model.py check          # the trained model through the diffusers pipeline
    python tests/reference/demo_model.py fixture        # tests/fixtures/demo/: the pipeline's frames for parity
Options: --work DIR (intermediate files; default ./target/demo-train), --videos 1600, --vae-steps 600,
--unet-steps 1034, --unet-minutes (an early stop). The committed model: --videos 1600 --vae-steps 600 and a
45-minute UNet budget (1,034 steps).
"""
import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import unet_fixtures as uf  # noqa: E402  (trajectory branch as the official code adds it)
import pipeline_fixtures as pf  # noqa: E402  (folder layout, scheduler config, pipeline runner)

from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,  # noqa: E402
                       StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "demo"
MODEL = ASSETS / "model"
FIXTURE = ROOT / "tests" / "fixtures" / "demo"

W = H = 64
FRAMES = 8
GRID = 2
FPS, MOTION_BUCKET, NOISE_AUG = 7, 127, 0.02
SEED = 20261203

VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                  block_out_channels=[32, 64], layers_per_block=1, latent_channels=4, sample_size=64,
                  scaling_factor=1.0, force_upcast=True)
UNET_CONFIG = dict(uf.SMALL, block_out_channels=[32, 64], num_attention_heads=[2, 4], layers_per_block=1,
                   num_frames=FRAMES, sample_size=32,
                   down_block_types=[uf.CROSS_DOWN, uf.DOWN], up_block_types=[uf.UP, uf.CROSS_UP])
CLIP_CONFIG = pf.CLIP_CONFIG
ADDED_TIME_IDS = (FPS - 1, MOTION_BUCKET, NOISE_AUG)

# The bundled demo: a disc dragged along a curve, a square held still (positions in pixels of the 64x64 frame).
DEMO_SCENE = dict(seed=77, shapes=[
    dict(kind="disc", r=7.0, color=(0.95, 0.25, 0.15), path=[[16.0, 44.0], [30.0, 20.0], [48.0, 16.0]]),
    dict(kind="square", r=6.0, color=(0.15, 0.35, 0.95), path=[[46.0, 46.0]]),
])
DEMO_DRAG = {"width": W, "height": H, "frames": FRAMES, "grid_step": GRID, "static_background": True,
             "drags": [{"path": [[16, 44], [30, 20], [48, 16]], "radius": 8},
                       {"path": [[46, 46], [46, 46]], "radius": 8}]}


# ------------------------------------------------------------------------------------------------------------------
# Synthetic videos
# ------------------------------------------------------------------------------------------------------------------
def along(path, s):
    """Position at fraction s of a polyline's length (uniform speed; as src/trajectory/build.rs does)."""
    path = np.asarray(path, dtype=np.float64)
    if len(path) == 1:
        return path[0]
    seg = np.linalg.norm(path[1:] - path[:-1], axis=1)
    total = seg.sum()
    if total == 0:
        return path[0]
    d = min(max(s, 0.0), 1.0) * total
    for i, l in enumerate(seg):
        if d <= l or i + 1 == len(seg):
            t = min(d / l, 1.0) if l > 0 else 0.0
            return path[i] + t * (path[i + 1] - path[i])
        d -= l
    return path[-1]


def background(rng):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W, 3))
    base = rng.uniform(0.3, 0.7, 3)
    for c in range(3):
        v = np.full((H, W), base[c])
        for _ in range(3):
            k = rng.uniform(0.05, 0.35, 2) * rng.choice([-1, 1], 2)
            v += rng.uniform(0.03, 0.1) * np.sin(k[0] * xx + k[1] * yy + rng.uniform(0, 2 * np.pi))
        img[..., c] = v
    return np.clip(img, 0.05, 0.95)


def coverage(kind, r, center):
    """Anti-aliased coverage of a shape on the pixel grid (pixel (x, y) sampled at integer coordinates)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    dx, dy = xx - center[0], yy - center[1]
    if kind == "disc":
        return np.clip(r + 0.5 - np.sqrt(dx * dx + dy * dy), 0.0, 1.0)
    return np.clip(r + 0.5 - np.abs(dx), 0.0, 1.0) * np.clip(r + 0.5 - np.abs(dy), 0.0, 1.0)


def random_scene(rng):
    shapes = []
    n = rng.integers(2, 5)
    n_moving = 0
    for i in range(n):
        kind = "disc" if rng.random() < 0.6 else "square"
        r = rng.uniform(4.5, 8.5)
        color = rng.uniform(0.0, 1.0, 3)
        color[rng.integers(3)] = rng.choice([0.05, 0.95])  # saturated: stands out from the background
        lo, hi = r + 1, W - 2 - r
        start = rng.uniform(lo, hi, 2)
        moving = rng.random() < 0.6 or (i == n - 1 and n_moving == 0)
        if moving:
            n_moving += 1
            pts = [start]
            for _ in range(rng.integers(1, 3)):
                step = rng.uniform(6, 22) * np.array([math.cos(a := rng.uniform(0, 2 * np.pi)), math.sin(a)])
                pts.append(np.clip(pts[-1] + step, lo, hi))
            path = [p.tolist() for p in pts]
        else:
            path = [start.tolist()]
        shapes.append(dict(kind=kind, r=r, color=color.tolist(), path=path))
    return dict(shapes=shapes)


def render(scene, bg):
    """frames (F, H, W, 3) in [0, 1] and per frame the coverage of every shape (F, K, H, W); list order = depth
    order (later shapes on top)."""
    frames, covs = [], []
    for f in range(FRAMES):
        s = f / (FRAMES - 1)
        img = bg.copy()
        cf = []
        for sh in scene["shapes"]:
            c = coverage(sh["kind"], sh["r"], along(sh["path"], s))
            img = img * (1 - c[..., None]) + np.asarray(sh["color"])[None, None] * c[..., None]
            cf.append(c)
        frames.append(img)
        covs.append(np.stack(cf))
    return np.stack(frames), np.stack(covs)


def trajectories(scene, covs, occlusion):
    """(F, N, 2) float32 tracks on the grid of step GRID and (F, N) bool visibility."""
    ys, xs = np.mgrid[0:H:GRID, 0:W:GRID]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)  # row-major, as the drag builder
    k = len(scene["shapes"])
    owner = np.full(len(pts), -1)
    for i in range(k):  # topmost shape covering the point in frame 0
        hit = covs[0, i, pts[:, 1].astype(int), pts[:, 0].astype(int)] > 0.5
        owner[hit] = i
    coords = np.zeros((FRAMES, len(pts), 2))
    vis = np.ones((FRAMES, len(pts)), dtype=bool)
    for f in range(FRAMES):
        s = f / (FRAMES - 1)
        shift = np.zeros((len(pts), 2))
        for i, sh in enumerate(scene["shapes"]):
            shift[owner == i] = along(sh["path"], s) - np.asarray(sh["path"][0])
        p = pts + shift
        coords[f] = p
        if occlusion:
            xi = np.clip(np.round(p[:, 0]).astype(int), 0, W - 1)
            yi = np.clip(np.round(p[:, 1]).astype(int), 0, H - 1)
            for i in range(k):
                above = owner < i  # shape i lies above the owner (background = -1 lies below every shape)
                vis[f] &= ~(above & (covs[f, i, yi, xi] > 0.5))
    return coords.astype(np.float32), vis


def make_video(seed, occlusion=None):
    rng = np.random.default_rng(seed)
    scene = random_scene(rng)
    bg = background(rng)
    frames, covs = render(scene, bg)
    occ = rng.random() < 0.5 if occlusion is None else occlusion
    tr, vis = trajectories(scene, covs, occ)
    u8 = np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
    return u8, tr, vis


def demo_video():
    rng = np.random.default_rng(DEMO_SCENE["seed"])
    bg = background(rng)
    return render(DEMO_SCENE, bg)


# ------------------------------------------------------------------------------------------------------------------
# Trajectory attention, batched over videos with their own tracks (training only; inference uses uf's processor,
# the official one, and on B = 1 they agree: checked in check_batched_processor)
# ------------------------------------------------------------------------------------------------------------------
class Batch:
    traj = None  # (B, F, N, 2)
    vis = None  # (B, F, N) bool


def traj_attention_batched(attn, n, height, width, traj, vis, generator=None):
    bs, frames, chans = n.shape
    s = height * width
    batch = traj.shape[0]
    x = n.reshape(batch, height, width, frames, chans)
    n_total = traj.shape[2]
    idx = torch.randperm(n_total, generator=generator)[:8 * int(width * height / 4)]
    m = idx.numel()
    p = traj[:, :, idx, :].clone()
    p[..., 0] *= width / W
    p[..., 1] *= height / H
    xi = p[..., 0].long().clamp(0, width - 1)
    yi = p[..., 1].long().clamp(0, height - 1)
    valid = vis[:, :, idx]
    bi = torch.arange(batch)[:, None, None]
    fi = torch.arange(frames)[None, :, None]
    g = x[bi, yi, xi, fi] * valid[..., None].to(x.dtype)  # (B, F, M, C)
    g = g.permute(0, 2, 1, 3)
    q, k, v = attn.to_q(g), attn.to_k(g), attn.to_v(g)
    inner = q.shape[-1]
    heads = attn.heads
    hd = inner // heads
    assert (m * frames) % s == 0, (m, frames, s)
    nseq, seq_len = batch * s, m * frames // s

    def split(t):
        return t.reshape(nseq, seq_len, heads, hd).transpose(1, 2)

    a = F.scaled_dot_product_attention(split(q), split(k), split(v))
    a = a.transpose(1, 2).reshape(batch, m, frames, inner)
    o = attn.to_out[0](a).permute(0, 2, 1, 3).reshape(-1, chans)  # (B*F*M, C)
    cell = (bi * frames * s + fi * s + yi * width + xi).reshape(-1)
    sel = valid.reshape(-1)
    acc = torch.zeros(batch * frames * s, chans, dtype=o.dtype).index_add(0, cell[sel], o[sel])
    cnt = torch.bincount(cell[sel], minlength=batch * frames * s).to(o.dtype)
    out = acc / cnt.clamp(min=1)[:, None]
    out = out.reshape(batch, frames, height, width, chans).permute(0, 2, 3, 1, 4)
    return out.reshape(bs, frames, chans)


class BatchedTrajProcessor:
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 height=None, width=None):
        return traj_attention_batched(attn, hidden_states, height, width, Batch.traj, Batch.vis)


def add_branch(unet):
    """The trajectory branch after every temporal attn1, initialised as the paper does: Q/K/V from attn1, zero
    output projection (docs/reference/trajectory-attention.md §10)."""
    uf.add_trajectory_branch(unet)
    for name, mod in unet.named_modules():
        if name.endswith("attn_trajectory"):
            parent = unet.get_submodule(name.rsplit(".", 1)[0])
            with torch.no_grad():
                for k in ("to_q", "to_k", "to_v"):
                    getattr(mod, k).weight.copy_(getattr(parent.attn1, k).weight)
                mod.to_out[0].weight.zero_()
                mod.to_out[0].bias.zero_()
    return unet


def check_batched_processor():
    g = torch.Generator().manual_seed(1)
    attn = uf.Attention(query_dim=32, heads=2, dim_head=16, cross_attention_dim=None)
    h, w = 8, 8
    u8, tr, vis = make_video(5)
    n = torch.randn(h * w, FRAMES, 32, generator=g)
    trt, vist = torch.from_numpy(tr), torch.from_numpy(vis)
    a = traj_attention_batched(attn, n, h, w, trt[None], vist[None], generator=torch.Generator().manual_seed(3))
    idx = torch.randperm(tr.shape[1], generator=torch.Generator().manual_seed(3))[:8 * int(w * h / 4)]
    b = uf.trajectory_attention(attn, n, h, w, trt, vist.to(torch.uint8), (W, H), idx, "pairs")
    err = (a - b).abs().max().item()
    assert err < 1e-5, err


# ------------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------------
def build_clip():
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIG)).eval()
    uf.reinit(clip, torch.Generator().manual_seed(SEED + 1))
    for p in clip.parameters():
        p.requires_grad_(False)
    return clip


def feature_extractor():
    return CLIPImageProcessor(**{k: v for k, v in pf.FEATURE_EXTRACTOR_CONFIG.items()
                                 if k not in ("feature_extractor_type", "image_processor_type")})


def pipe_of(vae, clip, unet):
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=clip, unet=unet,
                                        scheduler=EulerDiscreteScheduler.from_config(pf.SCHEDULER_CONFIG),
                                        feature_extractor=feature_extractor())


def to_pixels(u8):
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1] (the pipeline's image processor)."""
    t = torch.from_numpy(u8).float() / 255.0
    return (t * 2 - 1).movedim(-1, -3)


# ------------------------------------------------------------------------------------------------------------------
# Phases
# ------------------------------------------------------------------------------------------------------------------
def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def phase_data(work, n_videos):
    path = work / "data.pt"
    if path.exists():
        return torch.load(path)
    t0 = time.time()
    vids, trs, viss = [], [], []
    for i in range(n_videos):
        u8, tr, vis = make_video(SEED * 10 + i)
        vids.append(u8)
        trs.append(tr)
        viss.append(vis)
    data = dict(video=torch.from_numpy(np.stack(vids)), traj=torch.from_numpy(np.stack(trs)),
                vis=torch.from_numpy(np.stack(viss)))
    torch.save(data, path)
    log(f"data: {n_videos} videos in {time.time() - t0:.0f} s")
    return data


def latent_code(x):
    """The VAE's target code: 2x2 average of the image in [-1, 1], and a zero 4th channel."""
    p = F.avg_pool2d(x, 2)
    return torch.cat([p, torch.zeros_like(p[:, :1])], 1)


def phase_vae(work, data, steps):
    path = work / "vae"
    if path.exists():
        return AutoencoderKLTemporalDecoder.from_pretrained(path)
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKLTemporalDecoder(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED + 3)
    n = data["video"].shape[0]
    t0 = time.time()
    for step in range(steps):
        lr = 2e-3 * min(1.0, (step + 1) / 10) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        # two videos' frames, one random 32x32 crop of them (the convolutions do not care; 4x cheaper)
        i = torch.randint(n, (2,), generator=g)
        cy, cx = torch.randint(0, H - 31, (2,), generator=g).tolist()
        x = to_pixels(data["video"][i].numpy()).reshape(-1, 3, H, W)[:, :, cy:cy + 32, cx:cx + 32]
        # The pipeline only ever uses the posterior's mode. Trained end to end from random weights this VAE learns
        # slowly (about 18 dB after 100 steps); with a fixed latent code, the image averaged over 2x2 pixels (3
        # channels, the 4th zero), each half learns a regression with a direct target and the pair reaches
        # ~23 dB in 80 steps. A little noise on the code keeps the decoder tolerant of the UNet's small errors.
        mean = vae.encode(x).latent_dist.mode()
        code = latent_code(x)
        rec = vae.decode(code + 0.02 * torch.randn(code.shape, generator=g), num_frames=FRAMES).sample
        loss = F.mse_loss(mean, code) + F.l1_loss(rec, x) + F.mse_loss(rec, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            with torch.no_grad():
                psnr = 10 * math.log10(4 / F.mse_loss(vae.decode(mean, num_frames=FRAMES).sample, x).item())
            log(f"vae step {step}/{steps}: loss {loss.item():.4f}, PSNR {psnr:.1f} dB, {time.time() - t0:.0f} s")
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(to_pixels(data["video"][i].numpy())).latent_dist.mode() for i in range(min(64, n))])
    vae.register_to_config(scaling_factor=float(1.0 / zs.std()))
    log(f"vae scaling_factor {vae.config.scaling_factor:.5f} (latent mean {zs.mean():.3f})")
    vae.save_pretrained(path)
    return AutoencoderKLTemporalDecoder.from_pretrained(path)


def phase_latents(work, data, vae, clip):
    """x0 (scaled latents of every frame), image latents (noise-augmented first frame, unscaled) and the CLIP
    embedding of the first frame, all as the pipeline computes them."""
    path = work / "latents.pt"
    if path.exists():
        return torch.load(path)
    pipe = pipe_of(vae, clip, None)
    g = torch.Generator().manual_seed(SEED + 4)
    n = data["video"].shape[0]
    x0s, conds, embs = [], [], []
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, n, 16):
            v = data["video"][i:i + 16].numpy()
            b = v.shape[0]
            x = to_pixels(v).reshape(-1, 3, H, W)
            x0s.append((vae.encode(x).latent_dist.mode() * vae.config.scaling_factor).reshape(b, FRAMES, 4, 32, 32))
            first = to_pixels(v[:, 0])
            first = first + NOISE_AUG * torch.randn(first.shape, generator=g)
            conds.append(vae.encode(first).latent_dist.mode())
            embs.append(pipe._encode_image([PIL.Image.fromarray(f) for f in v[:, 0]], "cpu", 1, False))
    lat = dict(x0=torch.cat(x0s), cond=torch.cat(conds), emb=torch.cat(embs))
    torch.save(lat, path)
    log(f"latents: {n} videos in {time.time() - t0:.0f} s; x0 std {lat['x0'].std():.3f}")
    return lat


def precond(sigma):
    c_skip = 1 / (sigma ** 2 + 1)
    c_out = -sigma / (sigma ** 2 + 1).sqrt()
    c_in = 1 / (sigma ** 2 + 1).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def phase_unet(work, data, lat, steps, minutes, batch=4):
    """`steps` optimiser steps (the learning rate annealed over the last 30 %), stopping early after `minutes`.
    The committed weights came from a run budgeted by time (45 minutes, which gave 1,034 steps on a shared 2-core
    VM, the annealing then following elapsed time); a step budget makes reruns reproducible."""
    path = work / "unet.pt"
    torch.manual_seed(SEED + 5)
    unet = UNetSpatioTemporalConditionModel(**UNET_CONFIG)
    add_branch(unet)
    for name, mod in unet.named_modules():
        if name.endswith("attn_trajectory"):
            mod.set_processor(BatchedTrajProcessor())
    opt = torch.optim.AdamW(unet.parameters(), lr=7e-4, weight_decay=0.0)
    state_path = work / "unet_state.pt"
    step = 0
    if state_path.exists():
        st = torch.load(state_path)
        unet.load_state_dict(st["unet"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
    g = torch.Generator().manual_seed(SEED + 6 + step)
    n = lat["x0"].shape[0]
    ati = torch.tensor([ADDED_TIME_IDS] * batch, dtype=torch.float32)
    uf.CONTROL["use_traj"] = True
    t0 = time.time()
    budget = minutes * 60
    ema = None
    unet.train()
    while step < steps and time.time() - t0 < budget:
        lr = 7e-4 * min(1.0, (step + 1) / 100)
        frac = max((time.time() - t0) / budget, step / steps)
        if frac > 0.7:  # anneal over the last 30 % of the budget
            lr *= max(0.05, 1 - (frac - 0.7) / 0.3)
        for grp in opt.param_groups:
            grp["lr"] = lr
        i = torch.randint(n, (batch,), generator=g)
        x0 = lat["x0"][i]
        if torch.rand((), generator=g) < 0.2:
            log_sigma = torch.empty(batch).uniform_(math.log(0.002), math.log(700.0), generator=g)
        else:
            log_sigma = 0.7 + 1.6 * torch.randn(batch, generator=g)
        sigma = log_sigma.exp()[:, None, None, None, None]
        noise = torch.randn(x0.shape, generator=g)
        x = x0 + sigma * noise
        c_skip, c_out, c_in, c_noise = precond(sigma)
        inp = torch.cat([c_in * x, lat["cond"][i][:, None].expand(-1, FRAMES, -1, -1, -1)], dim=2)
        Batch.traj, Batch.vis = data["traj"][i], data["vis"][i]
        # c_noise per sample: the UNet accepts a (B,) timestep tensor
        out = unet(inp, c_noise.reshape(batch), lat["emb"][i], ati, return_dict=False)[0]
        target = (x0 - c_skip * x) / c_out
        loss = F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        if step % 25 == 0:
            log(f"unet step {step}: loss {ema:.4f} lr {lr:.2e} ({time.time() - t0:.0f} s)")
        if step % 200 == 0:
            torch.save(dict(unet=unet.state_dict(), opt=opt.state_dict(), step=step), state_path)
    uf.CONTROL["use_traj"] = False
    torch.save(dict(unet=unet.state_dict(), opt=opt.state_dict(), step=step), state_path)
    torch.save(unet.state_dict(), path)
    log(f"unet: {step} steps, loss {ema:.4f}")
    return unet


def export(work, vae, clip):
    """The model folder in the real layout, weights in float16; the trajectory branch as trajattn_temp.pth."""
    import shutil
    unet = UNetSpatioTemporalConditionModel(**UNET_CONFIG)
    add_branch(unet)
    sd = torch.load(work / "unet.pt")
    unet.load_state_dict(sd)
    tparams = [(k, p.detach().clone()) for k, p in uf.trajectory_params(unet)]
    base = UNetSpatioTemporalConditionModel(**UNET_CONFIG)
    base.load_state_dict({k: v for k, v in sd.items() if "trajectory" not in k})
    if MODEL.exists():
        shutil.rmtree(MODEL)
    pipe = pipe_of(vae.to(torch.float16), clip.to(torch.float16), base.to(torch.float16))
    pipe.save_pretrained(MODEL, safe_serialization=True, variant=None)
    pf.write_json(MODEL / "scheduler" / "scheduler_config.json", pf.SCHEDULER_CONFIG)
    pf.write_feature_extractor(MODEL / "feature_extractor")
    mi = json.loads((MODEL / "model_index.json").read_text())
    pf.write_json(MODEL / "model_index.json", mi)
    torch.save([p.to(torch.float16).contiguous() for _, p in tparams], MODEL / "trajattn_temp.pth")
    frames, _ = demo_video()
    PIL.Image.fromarray(np.round(frames[0] * 255).astype(np.uint8)).save(ASSETS / "image.png")
    pf.write_json(ASSETS / "drag.json", DEMO_DRAG)
    size = pf.finish_dir(MODEL)
    log(f"exported {MODEL} ({size / 1e6:.2f} MB)")


def drag_tracks(spec):
    """The tracks `trajattn drag` builds from a drag file (src/trajectory/build.rs, same order and arithmetic)."""
    w, h, f, step = spec["width"], spec["height"], spec["frames"], spec["grid_step"]
    starts, owner = [], []
    for y in range(0, h, step):
        for x in range(0, w, step):
            hit = next((k for k, d in enumerate(spec["drags"])
                        if (x - d["path"][0][0]) ** 2 + (y - d["path"][0][1]) ** 2 <= d["radius"] ** 2), None)
            if hit is not None or spec["static_background"]:
                starts.append((float(x), float(y)))
                owner.append(hit)
    coords = np.zeros((f, len(starts), 2))
    for fr in range(f):
        shift = [along(d["path"], fr / (f - 1)) - np.asarray(d["path"][0], dtype=np.float64) for d in spec["drags"]]
        for i, (p, o) in enumerate(zip(starts, owner)):
            coords[fr, i] = (p[0] + shift[o][0], p[1] + shift[o][1]) if o is not None else p
    return coords, np.ones((f, len(starts)), dtype=bool)


DEMO_STEPS = 6  # src/demo.rs STEPS
DEMO_PIPE_ARGS = dict(height=H, width=W, num_frames=FRAMES, num_inference_steps=DEMO_STEPS, min_guidance_scale=1.0,
                      max_guidance_scale=1.0, fps=FPS, motion_bucket_id=MOTION_BUCKET, noise_aug_strength=NOISE_AUG,
                      decode_chunk_size=8, num_videos_per_prompt=1)


def run_demo(traj_dir, steps=DEMO_STEPS):
    """The demo through diffusers' pipeline with the official trajectory branch (pipeline_fixtures' runner)."""
    pf.PIPE_ARGS = dict(DEMO_PIPE_ARGS, num_inference_steps=steps)
    image = PIL.Image.open(ASSETS / "image.png").convert("RGB")
    traj = None
    if traj_dir is not None:
        traj = {"pth": MODEL / "trajattn_temp.pth", "coords": traj_dir / "trans_coordinates.npy",
                "valid": traj_dir / "trans_valid.npy"}
    return pf.run_pipeline(MODEL, image, traj=traj, redirect_scheduler_noise=True)


def write_demo_tracks(d):
    coords, valid = drag_tracks(DEMO_DRAG)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "trans_coordinates.npy", coords.astype(np.float32)[None])
    np.save(d / "trans_valid.npy", valid[None])
    return coords


def track_disc(frames_u8, start, radius):
    """Centre of the best match of the first frame's disk in each frame (integer search; a coarse Python check,
    the runtime's `eval drag` is the measurement)."""
    f0 = frames_u8[0].astype(np.float64)
    yy, xx = np.mgrid[-int(radius):int(radius) + 1, -int(radius):int(radius) + 1]
    m = (xx ** 2 + yy ** 2) <= radius ** 2
    cx, cy = int(round(start[0])), int(round(start[1]))
    tpl = f0[cy + yy[m], cx + xx[m]]
    out = []
    for fr in frames_u8:
        fr = fr.astype(np.float64)
        best = None
        r = int(radius)
        for y in range(r, H - r):
            for x in range(r, W - r):
                c = ((fr[y + yy[m], x + xx[m]] - tpl) ** 2).mean()
                if best is None or c < best[0]:
                    best = (c, x, y)
        out.append((best[1], best[2]))
    return np.asarray(out, dtype=np.float64)


def phase_check(work, steps):
    """The exported model through diffusers: path error of the demo's drag with and without trajectories."""
    d = work / "check_tracks"
    coords = write_demo_tracks(d)
    for name, td in (("with the drag", d), ("without trajectories", None)):
        res = run_demo(td, steps)
        u8 = (res["frames"][0] * 255).round().astype(np.uint8)
        for k, drag in enumerate(DEMO_DRAG["drags"]):
            want = np.asarray([along(drag["path"], f / (FRAMES - 1)) for f in range(FRAMES)])
            got = track_disc(u8, drag["path"][0], drag["radius"])
            err = np.linalg.norm(got - want, axis=1)[1:]
            log(f"{name}, {steps} steps, drag {k}: mean {err.mean():.2f} px, max {err.max():.2f} px")
        PIL.Image.fromarray(np.concatenate(list(u8), axis=1)).save(work / f"check_{td is not None}_{steps}.png")


def phase_fixture():
    """tests/fixtures/demo/: the demo's tracks and the pipeline's frames and latents (float32, seed 12345)."""
    if FIXTURE.exists():
        import shutil
        shutil.rmtree(FIXTURE)
    coords = write_demo_tracks(FIXTURE / "trajectories")
    res = run_demo(FIXTURE / "trajectories")
    frames = res["frames"][0]
    q = (frames * 255).round().astype("uint8")
    t = {"frames_uint8": torch.from_numpy(q), "latents": res["rec"].t["latents"][0].contiguous(),
         "tracks": torch.from_numpy(coords.astype(np.float32))}
    meta = pf.pipeline_meta(res["log"], {"model_folder": "assets/demo/model",
                                          "input_image": "assets/demo/image.png (64x64, no resize)",
                                          "tracks": "assets/demo/drag.json through drag_tracks()"})
    pf.save(t, FIXTURE / "demo_io.safetensors", meta)
    log(f"fixture: {pf.finish_dir(FIXTURE)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["train", "export", "check", "fixture"])
    ap.add_argument("--work", type=pathlib.Path, default=ROOT / "target" / "demo-train")
    ap.add_argument("--videos", type=int, default=1600)
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--unet-steps", type=int, default=1034)
    ap.add_argument("--unet-minutes", type=float, default=80, help="stop the UNet phase early after this long")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=DEMO_STEPS, help="check: denoising steps")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    a.work.mkdir(parents=True, exist_ok=True)
    ASSETS.mkdir(parents=True, exist_ok=True)
    check_batched_processor()
    if a.phase in ("train", "export"):
        data = phase_data(a.work, a.videos)
        vae = phase_vae(a.work, data, a.vae_steps).eval()
        clip = build_clip()
        if a.phase == "train":
            lat = phase_latents(a.work, data, vae, clip)
            phase_unet(a.work, data, lat, a.unet_steps, a.unet_minutes, a.batch)
        export(a.work, vae, clip)
    elif a.phase == "check":
        phase_check(a.work, a.steps)
    elif a.phase == "fixture":
        phase_fixture()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fixtures for the Depth-Anything-V2 port: a second reduced, random-weight vits-layout model run through the
official code (`DepthAnythingV2.infer_image`), and matplotlib's `Spectral_r` table with the official preview.

Usage:
    python tests/reference/depth_fixtures.py [--repo DIR] [--out DIR]

--repo: a checkout of DepthAnything/Depth-Anything-V2 at commit a561b849 (the commit of the spec's reference
        data). Without it the script clones the repository into a temporary folder and checks that commit out.
        The official code is never copied into this repository.
--out:  default tests/fixtures/depth.

Environment: tests/reference/requirements-depth.txt (torch 2.1.0, opencv-python-headless 4.5.5.64, numpy 1.26.4,
safetensors, matplotlib 3.8.2), CPU, float32, one thread, no xformers. torchvision is not needed: dpt.py only
imports `Compose` from it, which is replaced by a stand-in.

Writes (all reproducible byte for byte):
    vits_small.safetensors        weights only, official key names, float32
    vits_small_input.png          61x83 RGB input
    vits_small_depth.npy          infer_image(cv2.imread(png), input_size=70): float32 (61, 83)
    vits_small_debug.safetensors  per-stage tensors, names as in the spec data (debug.*)
    vits_small.json               configuration, seed, hashes, stats
    spectral_r_lut.npy            matplotlib Spectral_r, 256x3 uint8 as run.py applies it ((lut*255).astype(uint8))
    vits_small_preview.png        run.py's colour preview (--pred-only) of vits_small_depth.npy
    upsample_cases.safetensors    torch bilinear align_corners=True on random maps (up and down, both CPU kernels)
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from functools import partial

COMMIT = "a561b849ebae10a6f5ef49e26c83cbbcd36c71bf"
CLONE_URL = "https://github.com/DepthAnything/Depth-Anything-V2"

# Reduced vits-layout configuration (official key names and layer structure, smaller widths).
EMBED_DIM, DEPTH, HEADS, MLP_RATIO = 32, 4, 2, 4
FEATURES, OUT_CHANNELS = 8, [8, 16, 24, 32]
TAKEN = [0, 1, 2, 3]
SEED = 1
IN_H, IN_W, INPUT_SIZE = 61, 83, 70
SIZE_BUDGET = 1_500_000


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", help="checkout of the official repository at commit " + COMMIT[:8])
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "depth"))
    return ap.parse_args()


def official_repo(path):
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix="da2-"), "Depth-Anything-V2")
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", CLONE_URL, path], check=True)
        subprocess.run(["git", "-C", path, "checkout", "--quiet", COMMIT, "--", "depth_anything_v2"], check=True)
    elif os.path.isdir(os.path.join(path, ".git")):
        head = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
        if head.stdout.strip() != COMMIT:
            sys.exit(f"{path} is at {head.stdout.strip()}, expected {COMMIT}")
    if not os.path.isfile(os.path.join(path, "depth_anything_v2", "dpt.py")):
        sys.exit(f"{path}: no depth_anything_v2/dpt.py")
    return path


def stub_torchvision():
    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

        def __call__(self, x):
            for t in self.transforms:
                x = t(x)
            return x

    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")
    tvt.Compose = Compose
    tv.transforms = tvt
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tvt


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    args = parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    repo = official_repo(args.repo)
    stub_torchvision()
    sys.path.insert(0, repo)

    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F
    import matplotlib
    from safetensors.torch import save_file
    import depth_anything_v2.dinov2 as dinov2
    from depth_anything_v2.dinov2_layers import MemEffAttention, NestedTensorBlock
    from depth_anything_v2.dpt import DepthAnythingV2

    torch.set_num_threads(1)

    # The official vit_small builder with smaller widths; DINOv2() looks it up by name when the model is built.
    def reduced_vit_small(patch_size=16, num_register_tokens=0, **kw):
        return dinov2.DinoVisionTransformer(
            patch_size=patch_size, embed_dim=EMBED_DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP_RATIO,
            block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention),
            num_register_tokens=num_register_tokens, **kw)

    dinov2.vit_small = reduced_vit_small
    torch.manual_seed(SEED)
    model = DepthAnythingV2(encoder="vits", features=FEATURES, out_channels=OUT_CHANNELS)
    model.intermediate_layer_idx["vits"] = TAKEN
    model.eval()

    # Every parameter re-drawn from U(-1, 1) (one global generator, registration order), scaled per kind so that
    # activations stay O(1); the last bias is offset so most of the depth map is positive after the ReLUs.
    rules = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            u = torch.rand(p.shape, dtype=torch.float32) * 2 - 1
            if name.endswith(("cls_token", "mask_token", "pos_embed")):
                v, rule = 0.5 * u, "0.5*U"
            elif name.endswith(".gamma"):
                v, rule = 0.6 + 0.4 * u, "0.6+0.4*U"
            elif "norm" in name and name.endswith("weight"):
                v, rule = 1.0 + 0.25 * u, "1+0.25*U"
            elif name == "depth_head.scratch.output_conv2.2.bias":
                v, rule = 1.0 + 0.1 * u, "1+0.1*U"
            elif name.endswith("bias"):
                v, rule = 0.1 * u, "0.1*U"
            else:
                # ConvTranspose2d weights are [C_in, C_out, k, k]: their fan-in per output is C_in.
                fan_in = p.shape[0] if ("resize_layers.0" in name or "resize_layers.1" in name) \
                    else int(np.prod(p.shape[1:]))
                v, rule = math.sqrt(3.0 / fan_in) * u, f"sqrt(3/{fan_in})*U"
            p.copy_(v)
            rules[name] = rule
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    # Input: odd size, a formula different from the spec's image.
    yy, xx = np.meshgrid(np.arange(IN_H), np.arange(IN_W), indexing="ij")
    rgb = np.stack([(7 * xx + 2 * yy) % 256, (xx * xx + 5 * yy + 31) % 256, (250 - 3 * xx - yy * yy) % 256],
                   -1).astype(np.uint8)
    png = os.path.join(out, "vits_small_input.png")
    cv2.imwrite(png, np.ascontiguousarray(rgb[..., ::-1]))
    raw = cv2.imread(png)  # BGR, as run.py reads it
    assert raw.shape == (IN_H, IN_W, 3) and (raw[..., ::-1] == rgb).all()

    # Per-stage tensors through forward hooks (names as in the spec's reference data).
    dbg = {}

    def keep(name):
        def hook(_mod, _inp, res):
            dbg[name] = res.detach().clone()
        return hook

    bb, head = model.pretrained, model.depth_head
    bb.patch_embed.register_forward_hook(keep("debug.patch_embed"))
    for i, blk in enumerate(bb.blocks):
        blk.register_forward_hook(keep(f"debug.block_out.{i}"))
    wrap_ipe, wrap_prep, wrap_gil = bb.interpolate_pos_encoding, bb.prepare_tokens_with_masks, \
        bb.get_intermediate_layers

    def ipe(x, w, h):
        r = wrap_ipe(x, w, h)
        dbg["debug.pos_embed_interp"] = r.detach().clone()
        return r

    def prep(x, masks=None):
        r = wrap_prep(x, masks)
        dbg["debug.tokens_in"] = r.detach().clone()
        return r

    def gil(*a, **kw):
        r = wrap_gil(*a, **kw)
        for j, (f, c) in enumerate(r):
            dbg[f"debug.feature.{j}"] = f.detach().clone()
            dbg[f"debug.cls.{j}"] = c.detach().clone()
        return r

    bb.interpolate_pos_encoding, bb.prepare_tokens_with_masks, bb.get_intermediate_layers = ipe, prep, gil
    for j in range(4):
        head.projects[j].register_forward_hook(keep(f"debug.project.{j}"))
        head.resize_layers[j].register_forward_hook(keep(f"debug.resize.{j}"))
        getattr(head.scratch, f"layer{j + 1}_rn").register_forward_hook(keep(f"debug.layer_rn.{j}"))
        getattr(head.scratch, f"refinenet{j + 1}").register_forward_hook(keep(f"debug.path_{j + 1}"))
    head.scratch.output_conv1.register_forward_hook(keep("debug.output_conv1"))
    head.scratch.output_conv2.register_forward_pre_hook(
        lambda _m, inp: dbg.__setitem__("debug.output_interp", inp[0].detach().clone()))
    head.scratch.output_conv2.register_forward_hook(keep("debug.output_conv2"))

    # The official path: image2tensor -> forward (ReLU) -> bilinear align_corners=True to the input size.
    image, (h0, w0) = model.image2tensor(raw, INPUT_SIZE)
    depth = model.infer_image(raw, INPUT_SIZE)
    assert depth.dtype == np.float32 and depth.shape == (IN_H, IN_W)
    hp, wp = image.shape[-2:]
    dbg["debug.input"] = image.clone()
    dbg["debug.depth"] = torch.from_numpy(depth.copy())

    # The float64 resize output (docs/reference/depth-anything-v2.md §3.3), recomputed with the official transform's own pieces; only its hash is
    # stored (the Rust test recomputes it bit for bit).
    from depth_anything_v2.util.transform import Resize
    rs = Resize(width=INPUT_SIZE, height=INPUT_SIZE, resize_target=False, keep_aspect_ratio=True,
                ensure_multiple_of=14, resize_method="lower_bound", image_interpolation_method=cv2.INTER_CUBIC)
    img01 = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB) / 255.0
    tw, th = rs.get_size(IN_W, IN_H)
    resized = cv2.resize(img01, (int(tw), int(th)), interpolation=cv2.INTER_CUBIC)
    normed = (resized - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.array_equal(np.ascontiguousarray(normed.transpose(2, 0, 1)).astype(np.float32)[None], image.numpy())

    npy = os.path.join(out, "vits_small_depth.npy")
    np.save(npy, depth)
    st_w = os.path.join(out, "vits_small.safetensors")
    save_file(weights, st_w, metadata={"format": "pt"})
    st_d = os.path.join(out, "vits_small_debug.safetensors")
    save_file({k: v.float().contiguous() for k, v in sorted(dbg.items())}, st_d, metadata={"format": "pt"})

    # run.py's preview (--pred-only): min-max to [0, 255] in float32, uint8, Spectral_r, BGR for cv2.imwrite.
    cmap = matplotlib.colormaps.get_cmap("Spectral_r")
    lut = (cmap(np.arange(256, dtype=np.uint8))[:, :3] * 255).astype(np.uint8)
    np.save(os.path.join(out, "spectral_r_lut.npy"), lut)
    d8 = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    preview = (cmap(d8)[:, :, :3] * 255)[:, :, ::-1].astype(np.uint8)
    prev_png = os.path.join(out, "vits_small_preview.png")
    cv2.imwrite(prev_png, preview)

    # The post-processing on its own: torch's bilinear (align_corners=True) on random maps, upscaling as in the
    # TrajectoryAttention case (518x924 -> 576x1024) and downscaling. Torch takes its generic kernel when
    # out_h + out_w > 128, a channels-last one otherwise (the last two cases).
    gen = torch.Generator().manual_seed(SEED + 1)
    up = {}
    for j, (h, w, oh, ow) in enumerate([(37, 53, 61, 90), (53, 37, 50, 161), (40, 56, 75, 54), (9, 13, 20, 30),
                                        (9, 13, 5, 7)]):
        src = torch.rand((h, w), generator=gen, dtype=torch.float32) * 4.0
        up[f"case{j}.src"] = src.contiguous()
        up[f"case{j}.out"] = F.interpolate(src[None, None], (oh, ow), mode="bilinear",
                                           align_corners=True)[0, 0].contiguous()
    up_st = os.path.join(out, "upsample_cases.safetensors")
    save_file(up, up_st, metadata={"format": "pt"})

    # float64 run of the same weights and float32 input: the rounding-error yardstick for a float32 port.
    with torch.no_grad():
        d64 = model.double().forward(image.double())
        d64 = F.interpolate(d64[:, None], (IN_H, IN_W), mode="bilinear", align_corners=True)[0, 0].numpy()

    info = {
        "description": "Depth-Anything-V2 official infer_image on a reduced random-weight vits-layout model "
                       "(tests/reference/depth_fixtures.py)",
        "source": f"DepthAnything/Depth-Anything-V2 @ {COMMIT}; torch {torch.__version__}, opencv "
                  f"{cv2.__version__}, numpy {np.__version__}, matplotlib {matplotlib.__version__}; CPU "
                  f"({torch.backends.cpu.get_cpu_capability()}), float32, 1 thread, no xformers",
        "config": {"patch_size": 14, "img_size_for_pos_embed": 518, "pos_grid": 37, "embed_dim": EMBED_DIM,
                   "depth": DEPTH, "num_heads": HEADS, "head_dim": EMBED_DIM // HEADS, "mlp_ratio": MLP_RATIO,
                   "features": FEATURES, "out_channels": OUT_CHANNELS, "intermediate_layer_idx": TAKEN,
                   "layerscale": True, "layernorm_eps": 1e-6, "interpolate_offset": 0.1, "use_bn": False,
                   "use_clstoken": False},
        "param_count": int(sum(v.numel() for v in weights.values())),
        "state_dict_keys": len(weights),
        "seed": SEED,
        "weight_init": "torch.manual_seed(seed); build; each named_parameter in order: U=torch.rand*2-1, rule",
        "weight_init_rules": rules,
        "input_png": os.path.basename(png),
        "input_formula_rgb_uint8": f"H={IN_H}, W={IN_W}: R=(7x+2y)%256, G=(x*x+5y+31)%256, B=(250-3x-y*y)%256",
        "input_size_arg": INPUT_SIZE,
        "resized_hw": [int(hp), int(wp)],
        "patch_grid_hw": [int(hp) // 14, int(wp) // 14],
        "resized_f64_hwc_le_sha256": hashlib.sha256(resized.astype("<f8").tobytes()).hexdigest(),
        "output_npy": os.path.basename(npy),
        "output_shape": [IN_H, IN_W],
        "output_stats": {"min": float(depth.min()), "max": float(depth.max()), "mean": float(depth.mean())},
        "output_fraction_zero": float((depth == 0).mean()),
        "f32_vs_f64_same_weights_max_abs": float(np.abs(depth.astype(np.float64) - d64).max()),
        "debug_tensors": {k: list(v.shape) for k, v in sorted(dbg.items())},
        "preview_png": os.path.basename(prev_png),
        "spectral_r_lut": "spectral_r_lut.npy: (matplotlib.colormaps['Spectral_r'](np.arange(256, dtype=uint8))"
                          "[:, :3] * 255).astype(uint8)",
        "upsample_cases": "upsample_cases.safetensors: caseJ.src (h, w) U(0,4) and caseJ.out = F.interpolate(src, "
                          "(oh, ow), bilinear, align_corners=True) for (h, w, oh, ow) = (37,53,61,90), (53,37,50,161), "
                          "(40,56,75,54), (9,13,20,30), (9,13,5,7)",
        "sha256": {os.path.basename(p): sha256(p) for p in [st_w, st_d, png, npy, prev_png, up_st]},
    }
    with open(os.path.join(out, "vits_small.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")

    names = ["vits_small.safetensors", "vits_small_debug.safetensors", "vits_small_input.png",
             "vits_small_depth.npy", "vits_small.json", "spectral_r_lut.npy", "vits_small_preview.png",
             "upsample_cases.safetensors"]
    total = sum(os.path.getsize(os.path.join(out, n)) for n in names)
    print(json.dumps({k: info[k] for k in ["param_count", "resized_hw", "output_stats", "output_fraction_zero",
                                           "f32_vs_f64_same_weights_max_abs"]}, indent=1))
    print(f"wrote {len(names)} files, {total} bytes, to {out}")
    assert total <= SIZE_BUDGET, f"fixtures are {total} bytes, over the budget of {SIZE_BUDGET}"


if __name__ == "__main__":
    main()

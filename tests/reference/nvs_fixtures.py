#!/usr/bin/env python3
"""NVS-solver guidance fixture (docs/reference/nvs-guidance.md §1), produced by the OFFICIAL code path.

Runs `My_SVD.__call__` of the official TrajectoryAttention repository (models/my_svd_pipeline_clean.py) with its
`use_nvs_solver=True` scheduler (utils/nvs_solver_schedule.py) and its λ search (utils/nvs_solver_utils.py) on a
tiny random SVD, on the CPU in float32, and writes what our runtime must reproduce.

    python tests/reference/nvs_fixtures.py --official PATH/TO/TrajectoryAttention

Environment: tests/reference/requirements.txt plus einops 0.7.0 and scipy 1.11.4 (imported by the official modules).
The official modules also import xformers and matplotlib at the top but never use them on this path; stub modules
stand in for them. The pipeline's one `mask.cuda()` is made a no-op (CPU run).

Model: the VAE and CLIP of tests/fixtures/pipeline/svd (unchanged) and a new tiny UNet whose attention sits on the
half-resolution level only (so a 44×76 latent stays cheap), written to tests/fixtures/pipeline/nvs/unet.
Sizes: the official crops are hard-coded latent rows [0,40) / [24,h) and columns [0,72) / [56,w); a 44×76 latent
(88×152 pixels, VAE factor 2) is the smallest even size where all four crops contribute to the stitched gradient.
25 frames (the official index list and λ table are for 25), 2 steps.

Inputs we make (the official `generate` reads them from the camera folder): 24 conditioning frames NNNN.png and hole
masks NNNN_mask.png. The official `generate()` turns a mask into a latent-resolution hole map with a hard-coded
reshape(72, 8, 128, 8) (VAE factor 8); here the same steps run with the tiny VAE's factor 2 (our runtime uses the
VAE's factor). The resulting `hole` tensor is saved so the runtime's mask reading is checked separately.

Random stream: `torch.manual_seed(12345)` (the global CPU generator, as the official `generate`); the scheduler's
unused noise is drawn from it as well (stock behaviour on the CPU): per step four crop-shaped draws in the guidance
pass, then one full-size draw in the ordinary pass.
"""
import argparse
import json
import pathlib
import sys
import types

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pipeline_fixtures as pf  # noqa: E402
import unet_fixtures as uf  # noqa: E402

from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler  # noqa: E402
from diffusers.models import UNetSpatioTemporalConditionModel  # noqa: E402
from diffusers.utils import load_image  # noqa: E402
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection  # noqa: E402

OUT = pf.OUT / "nvs"
MODEL = pf.OUT / "svd"
UNET_CONFIG = dict(uf.SMALL, block_out_channels=[32, 32], num_attention_heads=[1, 2], layers_per_block=1,
                   num_frames=25, sample_size=16,
                   down_block_types=[uf.DOWN, uf.CROSS_DOWN], up_block_types=[uf.CROSS_UP, uf.UP])
UNET_SEED = 9009
COND_SEED = 9109
ARGS = dict(height=88, width=152, num_frames=25, num_inference_steps=2, min_guidance_scale=1.0,
            max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02, decode_chunk_size=5)
SEED = 12345
VAE_FACTOR = 2


def import_official(path):
    for name in ("xformers", "matplotlib", "matplotlib.pyplot"):  # imported at the top, unused on this path
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(path))
    from models.my_svd_pipeline_clean import My_SVD  # noqa: E402
    from utils import nvs_solver_schedule, nvs_solver_utils  # noqa: E402
    return My_SVD, nvs_solver_schedule, nvs_solver_utils


def make_conditioning(image_arr, g):
    """24 frames: the first frame shifted right by τ pixels and down by τ//3 (uncovered band = hole), plus a noise
    disc per frame as an extra hole; masks are 0/255 RGB like the official `NNNN_mask.png`."""
    h, w, _ = image_arr.shape
    frames, masks = [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for tau in range(1, 25):
        dx, dy = tau, tau // 3
        img = np.zeros_like(image_arr)
        img[dy:, dx:] = image_arr[:h - dy, :w - dx]
        hole = np.zeros((h, w), bool)
        hole[:dy, :] = True
        hole[:, :dx] = True
        cx, cy = float(torch.randint(0, w, (1,), generator=g)), float(torch.randint(0, h, (1,), generator=g))
        r = 4 + 6 * float(torch.rand(1, generator=g))
        hole |= (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        noise = torch.randint(-12, 13, (h, w, 3), generator=g).numpy()
        img = np.clip(img.astype(np.int64) + noise, 0, 255).astype(np.uint8)
        img[hole] = 0
        frames.append(img)
        masks.append(np.repeat((hole * 255).astype(np.uint8)[..., None], 3, axis=2))
    return frames, masks


def hole_map(mask_png, h, w, k):
    """utils/generate.py's mask steps with block k (the official hard-codes 72, 8, 128, 8)."""
    m = np.array(mask_png) / 255.
    m[m < 0.5] = 0
    m[m >= 0.5] = 1
    m = np.mean(m, axis=-1)
    m = m.reshape(h, k, w, k).transpose(0, 2, 1, 3).reshape(h, w, k * k)
    m = np.mean(m, axis=2)
    m[m < 0.2] = 0
    m[m >= 0.2] = 1
    return torch.from_numpy(m).unsqueeze(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, type=pathlib.Path, help="checkout of xizaoqu/TrajectoryAttention")
    a = ap.parse_args()
    torch.set_num_threads(1)  # deterministic CPU reductions
    My_SVD, sched_mod, utils_mod = import_official(a.official)
    torch.Tensor.cuda = lambda self, *args, **kw: self  # the pipeline's one mask.cuda(); CPU run

    pf.fresh(OUT)
    unet = UNetSpatioTemporalConditionModel(**UNET_CONFIG).eval()
    uf.reinit(unet, torch.Generator().manual_seed(UNET_SEED))
    unet.save_pretrained(OUT / "unet", safe_serialization=True)
    unet = UNetSpatioTemporalConditionModel.from_pretrained(OUT / "unet").eval()
    calls = []
    plain_forward = unet.forward

    def forward(*args, use_traj=False, **kw):  # the official UNet's extra flag; this UNet has no branch
        out = plain_forward(*args, **kw)
        calls.append({"input": args[0].detach().clone(), "output": out[0].detach().clone(), "use_traj": use_traj})
        return out
    unet.forward = forward

    vae = AutoencoderKLTemporalDecoder.from_pretrained(MODEL / "vae").eval()
    clip = CLIPVisionModelWithProjection.from_pretrained(MODEL / "image_encoder").eval()
    fe = CLIPImageProcessor.from_pretrained(MODEL / "feature_extractor")
    sched = EulerDiscreteScheduler.from_pretrained(MODEL / "scheduler")
    pipe = My_SVD(vae, clip, unet, sched, fe, use_nvs_solver=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__module__.endswith("nvs_solver_schedule")

    h, w = ARGS["height"], ARGS["width"]
    image = load_image(str(MODEL / "input.png")).resize((w, h), resample=PIL.Image.BICUBIC)
    image_arr = np.asarray(image).copy()
    cond_dir = OUT / "cond"
    cond_dir.mkdir()
    frames, masks = make_conditioning(image_arr, torch.Generator().manual_seed(COND_SEED))
    for i, (f, m) in enumerate(zip(frames, masks)):
        PIL.Image.fromarray(f, "RGB").save(cond_dir / f"{i:04d}.png", compress_level=9)
        PIL.Image.fromarray(m, "RGB").save(cond_dir / f"{i:04d}_mask.png", compress_level=9)
    cond = [PIL.Image.open(cond_dir / f"{i:04d}.png") for i in range(24)]
    lh, lw = h // VAE_FACTOR, w // VAE_FACTOR
    hole = torch.concat([hole_map(PIL.Image.open(cond_dir / f"{i:04d}_mask.png"), lh, lw, VAE_FACTOR)
                         for i in range(24)])

    pipe.scheduler.set_timesteps(ARGS["num_inference_steps"])
    sigma_list = pipe.scheduler.sigmas.tolist()
    lambda_ts = utils_mod.search_hypers(sigma_list)

    # capture every step_single call (guidance crops with their gradient, then the ordinary step)
    steps = []
    plain_step = pipe.scheduler.step_single

    def step_single(model_output, timestep, sample, *args, **kw):
        out = plain_step(model_output, timestep, sample, *args, **kw)
        steps.append({"sample": sample.detach().clone(), "v": model_output.detach().clone(),
                      "grad": out.grad.detach().clone() if kw.get("compute_grad") else None,
                      "prev": out.prev_sample.detach().clone()})
        return out
    pipe.scheduler.step_single = step_single

    generator = torch.manual_seed(SEED)
    res = pipe(image, temp_cond=cond, mask=hole, lambda_ts=lambda_ts, generator=generator, output_type="np", **ARGS)
    frames_np = np.asarray(res.frames[0])
    q = np.clip(np.round(frames_np * 255), 0, 255).astype(np.uint8)  # what a saved PNG holds

    n_steps = ARGS["num_inference_steps"]
    assert len(steps) == n_steps * 5 and len(calls) == n_steps * 5, (len(steps), len(calls))
    t = {"hole": hole.float(), "lambda": lambda_ts.clone(), "sigmas": torch.tensor(sigma_list),
         "frames_uint8": torch.from_numpy(q), "latents": steps[-1]["prev"][0].float().clone(),
         "image_resized_uint8": torch.from_numpy(image_arr)}
    # size budget: the guided latents of every step are saved; the crops are checked here
    moved = []
    for i in range(n_steps):
        st = steps[i * 5:(i + 1) * 5]
        assert all(st[k]["grad"] is not None for k in range(4)) and st[4]["grad"] is None
        assert not any(c["use_traj"] for c in calls[i * 5:i * 5 + 4]) and calls[i * 5 + 4]["use_traj"]
        t[f"step.{i}.latents_guided"] = st[4]["sample"][0].float().clone()
        # the pipeline's stitch, redone from the captured crops, explains the guided latents exactly
        gr = [st[k]["grad"] for k in range(4)]
        sm = [st[k]["sample"] for k in range(4)]
        stitch = lambda a: torch.cat((torch.cat((a[0], a[1][:, :, :, 16:, :]), -2),  # noqa: E731
                                      torch.cat((a[2], a[3][:, :, :, 16:, :]), -2)[:, :, :, :, 16:]), -1)
        before = stitch(sm)
        assert torch.equal(before - stitch(gr).half(), st[4]["sample"]), f"step {i}: guided latents"
        moved.append((st[4]["sample"] - before).abs().max().item())
    assert min(moved) > 0, moved
    meta = {f"param.{k}": v for k, v in ARGS.items()}
    meta.update({"seed": SEED, "vae_factor": VAE_FACTOR, "lr": 0.02, "weight_clamp": 0.6, "factor_s": 5.6,
                 "dtype": "float32", "scheduler_noise": "global CPU generator (stock)",
                 "unet_calls_per_step": "4 crops (batch 1, uncond context, use_traj False) + 1 ordinary (batch 2)"})
    pf.save(t, OUT / "nvs_io.safetensors", meta)
    pf.write_json(OUT / "args.json", ARGS)
    nb = pf.finish_dir(OUT)
    print(f"nvs: frames {tuple(q.shape)} std {frames_np.std():.4f}; latents std {t['latents'].std():.4f}; "
          f"hole mean {hole.mean():.3f}; λ {tuple(lambda_ts.shape)}; max guidance move {moved}; bytes {nb}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerates tests/fixtures/pipeline/: reference fixtures for the SVD pipeline around the UNet.

Cases (see tests/fixtures/pipeline/README.md for every file, tensor and check):
  vae       tiny AutoencoderKLTemporalDecoder: encode (posterior mode), full decode, chunked decode as the pipeline does
  clip      tiny CLIPVisionModelWithProjection: pixel values -> image_embeds
  svd       the whole diffusers 0.27.0 StableVideoDiffusionPipeline with tiny models in a real folder layout
  svd_traj  the same pipeline with the trajectory-attention branch (as tests/reference/unet_fixtures.py adds it),
            its randperm draws taken from the global CPU generator, interleaved with the pipeline's randn draws

Requirements: tests/reference/requirements.txt (torch 2.1.0, diffusers 0.27.0, transformers 4.33.2, ...) plus
pillow (13.0.0 used). Run from anywhere:
    python tests/reference/pipeline_fixtures.py            # all cases; or name some: ... vae clip
Everything is deterministic (fixed seeds, CPU, float32); files are byte-reproducible.
"""
import inspect
import json
import math
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import PIL
import PIL.Image
import torch
from safetensors.torch import load_file

import diffusers
import transformers
from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                       UNetSpatioTemporalConditionModel)
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import scheduling_euler_discrete
from diffusers.utils import load_image
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

sys.dont_write_bytecode = True  # no __pycache__ in tests/reference
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import unet_fixtures as uf  # noqa: E402  (reinit, save_safetensors, trajectory branch, trajectory maker)

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "pipeline"
SPEC_DATA = pathlib.Path("/work/shared/spec/data")
SIZE_LIMIT = 12_000_000

VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                  block_out_channels=[32, 64], layers_per_block=1, latent_channels=4, sample_size=64,
                  scaling_factor=0.18215, force_upcast=True)
VAE_SEED = 4004
CLIP_CONFIG = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, image_size=224,
                   patch_size=32, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5, num_channels=3,
                   attention_dropout=0.0, dropout=0.0)
CLIP_SEED = 5005
UNET_CONFIG = dict(uf.SMALL, block_out_channels=[32, 32], num_attention_heads=[2, 1], layers_per_block=1,
                   num_frames=4, sample_size=16,
                   down_block_types=[uf.CROSS_DOWN, uf.DOWN], up_block_types=[uf.UP, uf.CROSS_UP])
UNET_SEED = 6006
TRAJ_WEIGHT_SEED = 7007
TRAJ_INPUT_SEED = 8008
N_TRAJ = 1024

# docs/reference/svd-architecture.md §2.5, verbatim values
SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0.dev0",
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
    "set_alpha_to_one": False, "sigma_max": 700.0, "sigma_min": 0.002, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "timestep_type": "continuous", "trained_betas": None, "use_karras_sigmas": True,
}
# docs/reference/svd-architecture.md §2.4 (SVD's preprocessor_config.json)
FEATURE_EXTRACTOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}
# pipeline call (svd and svd_traj); height/width: latent 16x24 (VAE factor 2), UNet levels 16x24 and 8x12
PIPE_ARGS = dict(height=32, width=48, num_frames=4, num_inference_steps=3, min_guidance_scale=1.0,
                 max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02, decode_chunk_size=2,
                 num_videos_per_prompt=1)
SEED = 12345
INPUT_WH = (72, 40)


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def save(tensors, path, meta):
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    uf.save_safetensors(tensors, path, {k: str(v) for k, v in meta.items()})


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def capture(module, key, store):
    def hook(_m, _a, out):
        t = out[0] if isinstance(out, (tuple, list)) else out
        store[key] = getattr(t, "sample", t).detach().clone()
    return module.register_forward_hook(hook)


def build_vae():
    vae = AutoencoderKLTemporalDecoder(**VAE_CONFIG).eval()
    uf.reinit(vae, torch.Generator().manual_seed(VAE_SEED + 100))
    return vae


def build_clip():
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIG)).eval()
    uf.reinit(clip, torch.Generator().manual_seed(CLIP_SEED + 100))
    return clip


def build_unet():
    unet = UNetSpatioTemporalConditionModel(**UNET_CONFIG).eval()
    uf.reinit(unet, torch.Generator().manual_seed(UNET_SEED + 100))
    return unet


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb), "state dict keys differ"
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"weights differ: {k}"


def write_feature_extractor(d):
    write_json(d / "preprocessor_config.json", FEATURE_EXTRACTOR_CONFIG)
    CLIPImageProcessor.from_pretrained(d)  # must load


def finish_dir(d):
    for f in d.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def fresh(d):
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)


# ----------------------------------------------------------------------------------------------------------------
# 1. VAE
# ----------------------------------------------------------------------------------------------------------------
def decode_chunked(vae, z, chunk):
    """The chunk loop of StableVideoDiffusionPipeline.decode_latents (without its 1/scaling_factor multiply)."""
    outs = []
    for i in range(0, z.shape[0], chunk):
        part = z[i:i + chunk]
        outs.append(vae.decode(part, num_frames=part.shape[0]).sample)
    return torch.cat(outs, dim=0)


def case_vae():
    d = OUT / "vae"
    fresh(d)
    vae = build_vae()
    folder = OUT / "svd" / "vae"  # the pipeline folder's VAE (one copy of the weights, size budget)
    same_weights(vae, AutoencoderKLTemporalDecoder.from_pretrained(folder))
    g = torch.Generator().manual_seed(VAE_SEED + 300)
    image = torch.rand(2, 3, 40, 56, generator=g) * 2 - 1
    n, chunk = 5, 2
    latents = torch.randn(n, 4, 12, 16, generator=g)
    dbg = {}
    with torch.no_grad():
        hooks = [capture(vae.encoder.mid_block, "debug.encoder.mid_block", dbg),
                 capture(vae.encoder.conv_out, "debug.encoder.conv_out", dbg)]
        mean = vae.encode(image).latent_dist.mode()
        for h in hooks:
            h.remove()
        hooks = [capture(vae.decoder.mid_block, "debug.decoder.mid_block", dbg),
                 capture(vae.decoder.conv_out, "debug.decoder.conv_out", dbg)]
        decoded = vae.decode(latents, num_frames=n).sample
        for h in hooks:
            h.remove()
        chunked = decode_chunked(vae, latents, chunk)
        # the pipeline's own method on latents/ scaled as diffusion latents: [1, n, 4, h, w] -> [1, 3, n, H, W]
        fake = type("P", (), {"vae": vae})()
        via_pipe = StableVideoDiffusionPipeline.decode_latents(fake, latents[None], n, chunk)[0].permute(1, 0, 2, 3)
        # checks
        re = AutoencoderKLTemporalDecoder.from_pretrained(folder).eval()
        assert torch.equal(re.encode(image).latent_dist.mode(), mean), "vae reload: encode mismatch"
        assert torch.equal(re.decode(latents, num_frames=n).sample, decoded), "vae reload: decode mismatch"
        ref = decode_chunked(vae, latents * (1 / vae.config.scaling_factor), chunk)
        assert torch.equal(via_pipe, ref), "decode_latents differs from the chunk loop"
    cdiff = (chunked - decoded).abs().max().item()
    assert cdiff > 1e-3, f"chunked decode equals full decode ({cdiff})"
    # frames of a chunk boundary differ; a frame's result depends on its chunk only
    tensors = {"image": image, "posterior_mean": mean, "latents": latents, "decoded": decoded,
               "decoded_chunked": chunked, "decode_latents": via_pipe, **dbg}
    save(tensors, d / "vae_io.safetensors", {"num_frames": n, "decode_chunk_size": chunk,
                                             "scaling_factor": vae.config.scaling_factor, "seed": VAE_SEED,
                                             "model_folder": "../svd/vae"})
    nb = finish_dir(d)
    print(f"vae: params {sum(p.numel() for p in vae.parameters())}; posterior_mean {tuple(mean.shape)} std "
          f"{mean.std():.4f}; decoded {tuple(decoded.shape)} std {decoded.std():.4f}; max|chunked-full| {cdiff:.4f}; "
          f"decode_latents std {via_pipe.std():.4f}; bytes {nb}")
    for k, v in dbg.items():
        print(f"    {k}: {tuple(v.shape)} std {v.std():.4f}")
    for k in ("posterior_mean", "decoded", "decode_latents"):
        assert 0.05 < tensors[k].std().item() < 50, (k, tensors[k].std().item())


# ----------------------------------------------------------------------------------------------------------------
# 2. CLIP
# ----------------------------------------------------------------------------------------------------------------
def case_clip():
    d = OUT / "clip"
    fresh(d)
    clip = build_clip()
    folder = OUT / "svd" / "image_encoder"  # the pipeline folder's CLIP (one copy of the weights, size budget)
    same_weights(clip, CLIPVisionModelWithProjection.from_pretrained(folder))
    g = torch.Generator().manual_seed(CLIP_SEED + 300)
    x = torch.rand(2, 3, 224, 224, generator=g)
    mean = torch.tensor(FEATURE_EXTRACTOR_CONFIG["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(FEATURE_EXTRACTOR_CONFIG["image_std"]).view(1, 3, 1, 1)
    pixel_values = (x - mean) / std
    dbg = {}
    with torch.no_grad():
        hooks = [capture(clip.vision_model.embeddings, "debug.embeddings", dbg),
                 capture(clip.vision_model.pre_layrnorm, "debug.pre_layrnorm", dbg)]
        out = clip(pixel_values)
        for h in hooks:
            h.remove()
        dbg["debug.last_hidden_state"] = out.last_hidden_state
        re = CLIPVisionModelWithProjection.from_pretrained(folder).eval()
        assert torch.equal(re(pixel_values).image_embeds, out.image_embeds), "clip reload mismatch"
    keys = sorted(load_file(folder / "model.safetensors"))
    assert not any("position_ids" in k for k in keys)
    tensors = {"pixel_values": pixel_values, "image_embeds": out.image_embeds, **dbg}
    save(tensors, d / "clip_io.safetensors", {"seed": CLIP_SEED, "model_folder": "../svd/image_encoder"})
    nb = finish_dir(d)
    print(f"clip: params {sum(p.numel() for p in clip.parameters())} ({len(keys)} tensors); image_embeds "
          f"{tuple(out.image_embeds.shape)} std {out.image_embeds.std():.4f}; bytes {nb}")
    for k, v in dbg.items():
        print(f"    {k}: {tuple(v.shape)} std {v.std():.4f}")
    assert 0.05 < out.image_embeds.std().item() < 50


# ----------------------------------------------------------------------------------------------------------------
# 3./4. pipeline
# ----------------------------------------------------------------------------------------------------------------
def call_site():
    """The innermost caller outside torch and this helper: 'file.py:function'."""
    for fr in inspect.stack()[2:]:
        fn = pathlib.Path(fr.filename)
        if "torch" in fn.parts or fr.function in ("wrapper", "rt"):
            continue
        if fn.name == "torch_utils.py" and fr.function == "randn_tensor":
            continue
        return f"{fn.name}:{fr.function}"
    return "?"


class DrawLog:
    """Wraps torch's random functions; logs every call with its generator and keeps randn results."""
    NAMES = ["randn", "randperm", "rand", "randint", "randn_like", "rand_like", "randint_like", "normal",
             "multinomial", "bernoulli", "poisson"]

    def __init__(self):
        self.entries, self.tensors, self.orig = [], [], {}
        self.named = {}  # id(generator) -> name

    def gen_name(self, g):
        if g is None or g is torch.default_generator:
            return "global"
        return self.named.get(id(g), "other")

    def __enter__(self):
        for name in self.NAMES:
            fn = getattr(torch, name)
            self.orig[name] = fn

            def wrapper(*args, _fn=fn, _name=name, **kwargs):
                out = _fn(*args, **kwargs)
                e = {"fn": _name, "generator": self.gen_name(kwargs.get("generator")),
                     "shape": list(out.shape), "dtype": str(out.dtype).replace("torch.", "")}
                if _name == "randperm":
                    e["n"] = int(args[0])
                e["site"] = call_site()
                self.entries.append(e)
                self.tensors.append(out.detach().clone())
                return out
            setattr(torch, name, wrapper)
        return self

    def __exit__(self, *exc):
        for name, fn in self.orig.items():
            setattr(torch, name, fn)

    def replay_state(self, seed):
        """Re-draws the logged global-generator calls on a fresh generator; returns its final state."""
        g = torch.Generator().manual_seed(seed)
        for e in self.entries:
            if e["generator"] != "global":
                continue
            if e["fn"] == "randn":
                torch.randn(e["shape"], dtype=getattr(torch, e["dtype"]), generator=g)
            elif e["fn"] == "randperm":
                torch.randperm(e["n"], generator=g)
            else:
                raise RuntimeError(f"unexpected draw {e}")
        return g.get_state()

    def summary(self):
        """Consecutive identical draws merged: [{fn, generator, shape/n, dtype, count, words}]."""
        out = []
        for e in self.entries:
            words = (e["n"] - 1) if e["fn"] == "randperm" else int(np.prod(e["shape"]))
            key = {k: v for k, v in e.items()}
            if out and {k: v for k, v in out[-1].items() if k not in ("count", "words")} == key:
                out[-1]["count"] += 1
                out[-1]["words"] += words
            else:
                out.append(dict(key, count=1, words=words))
        return out


def make_input_png(path):
    """72x40 RGB: gradients + a disc + a rectangle + a diagonal stripe, deterministic."""
    w, h = INPUT_WH
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * xx / (w - 1)
    gch = 255 * yy / (h - 1)
    b = 128 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = np.stack([r, gch, b], -1)
    disc = (xx - 20) ** 2 + (yy - 22) ** 2 < 10 ** 2
    img[disc] = [250, 240, 30]
    img[5:15, 45:65] = [20, 30, 200]
    stripe = np.abs(xx - 1.5 * yy - 10) < 2
    img[stripe] = [255, 255, 255]
    arr = np.clip(np.round(img), 0, 255).astype(np.uint8)
    PIL.Image.fromarray(arr, "RGB").save(path, format="PNG", optimize=False, compress_level=9)
    return arr


def build_svd_folder(d):
    """model folder: the vae/clip of cases 1/2 (same seeds) and a tiny UNet, written into d."""
    pipe = StableVideoDiffusionPipeline(vae=build_vae(), image_encoder=build_clip(), unet=build_unet(),
                                        scheduler=EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
                                        feature_extractor=CLIPImageProcessor(**{
                                            k: v for k, v in FEATURE_EXTRACTOR_CONFIG.items()
                                            if k not in ("feature_extractor_type", "image_processor_type")}))
    pipe.save_pretrained(d, safe_serialization=True)
    write_json(d / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)
    write_feature_extractor(d / "feature_extractor")
    mi = json.loads((d / "model_index.json").read_text())
    write_json(d / "model_index.json", mi)  # sorted keys


def karras_sigmas(steps):
    smin, smax, rho = 0.002, 700.0, 7.0
    ramp = np.linspace(0, 1, steps)
    s = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.concatenate([s.astype(np.float32), np.zeros(1, np.float32)])


def check_scheduler_tables():
    sch = EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG)
    checked, ulp = [], {}
    for steps in (14, 25, 50, 100):
        p = SPEC_DATA / f"scheduler_{steps}_steps.tsv"
        if not p.exists():
            continue
        rows = [ln.split("\t") for ln in p.read_text().strip().splitlines()[1:]]
        sch.set_timesteps(steps)
        sig = sch.sigmas.numpy()
        want = np.array([float(r[1]) for r in rows] + [0.0], np.float32)
        assert np.array_equal(sig, want), f"sigmas differ from {p.name}"
        ts = np.array([float(r[3]) for r in rows], np.float32)
        # diffusers: 0.25 * torch.log(0-d float32 sigma) on the CPU; the spec table holds a float32 log that
        # differs from it by one ulp for a few steps (reported in README.md)
        a = sch.timesteps.numpy()
        assert np.all(np.abs(a - ts) <= np.spacing(np.abs(ts))), f"timesteps differ from {p.name} by > 1 ulp"
        ulp[steps] = int((a != ts).sum())
        assert np.array_equal(karras_sigmas(steps), want)
        assert float(sch.init_noise_sigma) == 700.000732421875, sch.init_noise_sigma
        checked.append(steps)
    print(f"scheduler: sigmas/timesteps equal spec tables for steps {checked}; init_noise_sigma "
          f"{float(sch.init_noise_sigma)!r}; timesteps 1 ulp off the tables (count per table) {ulp}")


class Recorder:
    """Wraps pipeline methods to capture intermediates."""

    def __init__(self, pipe):
        self.t = {}
        self.steps = []
        self.unet_calls = []
        p = pipe
        orig_enc, orig_vae, orig_ids, orig_dec = p._encode_image, p._encode_vae_image, p._get_add_time_ids, \
            p.decode_latents
        orig_pre = p.image_processor.preprocess
        orig_step = p.scheduler.step

        def enc(*a, **k):
            r = orig_enc(*a, **k)
            self.t["image_embeddings"] = r.clone()
            return r

        def vae_enc(image, *a, **k):
            self.t["vae_input"] = image.clone()
            r = orig_vae(image, *a, **k)
            self.t["image_latents"] = r.clone()
            return r

        def ids(*a, **k):
            r = orig_ids(*a, **k)
            self.t["added_time_ids"] = r.clone()
            return r

        def dec(latents, *a, **k):
            self.t["latents"] = latents.clone()
            r = orig_dec(latents, *a, **k)
            self.t["decoded"] = r.clone()
            return r

        def pre(*a, **k):
            r = orig_pre(*a, **k)
            self.t["image_preprocessed"] = r.clone()
            return r

        def step(model_output, timestep, sample, *a, **k):
            r = orig_step(model_output, timestep, sample, *a, **k)
            self.steps.append({"guided_v": model_output.clone(), "latents_in": sample.clone(),
                               "latents_out": r.prev_sample.clone()})
            return r

        p._encode_image, p._encode_vae_image, p._get_add_time_ids, p.decode_latents = enc, vae_enc, ids, dec
        p.image_processor.preprocess = pre
        p.scheduler.step = step

        def clip_pre(_m, args):
            self.t["clip_pixel_values"] = args[0].clone()
        p.image_encoder.register_forward_pre_hook(clip_pre)

        def unet_hook(_m, args, kwargs, out):
            self.unet_calls.append({"input": args[0].clone(), "timestep": torch.as_tensor(args[1]).clone(),
                                    "output": out[0].clone()})
        p.unet.register_forward_hook(unet_hook, with_kwargs=True)


class GlobalTrajProcessor(uf.TrajProcessor):
    """As uf.TrajProcessor, but the subset comes from torch.randperm on the GLOBAL generator (official processor)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 height=None, width=None):
        st = self.state
        n_total = st.trajectory.shape[1]
        m_req = 8 * int(width * height / 4)
        idx = torch.randperm(n_total)[:m_req]
        m = idx.numel()
        seq = m * st.trajectory.shape[0] // (height * width) if st.grouping == "pairs" else st.trajectory.shape[0]
        st.calls.append((self.name, idx.clone(), height, width, m, seq))
        return uf.trajectory_attention(attn, hidden_states, height, width, st.trajectory, st.visibility,
                                       st.origin_wh, idx, st.grouping)


def run_pipeline(folder, image, traj=None, redirect_scheduler_noise=False, output_type="np"):
    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert all(p.dtype == torch.float32 for m in (pipe.unet, pipe.vae, pipe.image_encoder) for p in m.parameters())
    state = None
    if traj is not None:
        uf.add_trajectory_branch(pipe.unet)
        plist = torch.load(traj["pth"])  # official loader: positional, named_parameters order
        it = 0
        with torch.no_grad():
            for k, p in pipe.unet.named_parameters():
                if "trajectory" in k:
                    assert p.shape == plist[it].shape, (k, p.shape, plist[it].shape)
                    p.copy_(plist[it])
                    it += 1
        assert it == len(plist)
        coords = np.load(traj["coords"])
        valid = np.load(traj["valid"])
        f = PIPE_ARGS["num_frames"]
        trajectory = torch.from_numpy(coords.reshape(f, -1, 2))  # generate(): reshape(F, -1, 2)
        visibility = torch.from_numpy(valid.reshape(f, -1))
        state = uf.TrajState(trajectory, visibility, (PIPE_ARGS["width"], PIPE_ARGS["height"]), "pairs", 0)
        for k, m in pipe.unet.named_modules():
            if k.endswith("attn_trajectory"):
                m.set_processor(GlobalTrajProcessor(state, k))
    uf.CONTROL["use_traj"] = traj is not None
    rec = Recorder(pipe)
    sched_gen = torch.Generator().manual_seed(0)
    orig_rt = scheduling_euler_discrete.randn_tensor
    if redirect_scheduler_noise:
        def rt(shape, generator=None, **k):
            return orig_rt(shape, generator=generator if generator is not None else sched_gen, **k)
        scheduling_euler_discrete.randn_tensor = rt
    try:
        with DrawLog() as log:
            log.named[id(sched_gen)] = "scheduler_private"
            generator = torch.manual_seed(SEED)
            with torch.no_grad():
                frames = pipe(image, generator=generator, output_type=output_type, **PIPE_ARGS).frames
            final_state = torch.default_generator.get_state()
    finally:
        scheduling_euler_discrete.randn_tensor = orig_rt
        uf.CONTROL["use_traj"] = False
    assert torch.equal(log.replay_state(SEED), final_state), "draw log does not account for the global stream"
    return dict(pipe=pipe, frames=frames, rec=rec, log=log, state=state)


def pipeline_meta(log, extra=None):
    meta = {f"param.{k}": v for k, v in PIPE_ARGS.items()}
    meta.update({"seed": SEED, "generator": f"torch.manual_seed({SEED}) (the global CPU generator)",
                 "output_type": "np", "dtype": "float32 (all modules)", "vae_scale_factor": 2,
                 "input_image": f"input.png {INPUT_WH[0]}x{INPUT_WH[1]}, resized to "
                                f"{PIPE_ARGS['width']}x{PIPE_ARGS['height']} with PIL BICUBIC before the call",
                 "random_draws": json.dumps(log.summary(), separators=(",", ":")),
                 "versions": f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
                             f"{transformers.__version__}, numpy {np.__version__}, pillow {PIL.__version__}"})
    meta.update(extra or {})
    return meta


def pipeline_tensors(res, image_uint8, resized_uint8):
    rec, log = res["rec"], res["log"]
    frames = res["frames"][0]  # [F, H, W, 3]
    f = PIPE_ARGS["num_frames"]
    q = (frames * 255).round().astype("uint8")
    assert np.array_equal(q, np.stack([np.asarray(p) for p in VaeImageProcessor.numpy_to_pil(frames)]))
    sch = res["pipe"].scheduler
    draws = [(e, t) for e, t in zip(log.entries, log.tensors) if e["generator"] == "global"]
    assert draws[0][0]["fn"] == "randn" and draws[1][0]["fn"] == "randn"
    gs = res["pipe"]._guidance_scale
    t = {
        "input_uint8": torch.from_numpy(image_uint8.copy()),
        "image_resized_uint8": torch.from_numpy(resized_uint8.copy()),
        "clip_pixel_values": rec.t["clip_pixel_values"],
        "image_embeddings": rec.t["image_embeddings"],
        "image_preprocessed": rec.t["image_preprocessed"],
        "noise_aug": draws[0][1],
        "vae_input": rec.t["vae_input"],
        "image_latents": rec.t["image_latents"],
        "added_time_ids": rec.t["added_time_ids"],
        "sigmas": sch.sigmas.clone(),
        "timesteps": sch.timesteps.clone(),
        "init_noise_sigma": torch.tensor([float(sch.init_noise_sigma)], dtype=torch.float32),
        "initial_noise": draws[1][1],
        "guidance_scale": gs.reshape(-1).clone(),
        "latents": rec.t["latents"][0],
        "decoded": rec.t["decoded"][0].permute(1, 0, 2, 3),
        "frames": torch.from_numpy(frames.copy()),
        "frames_uint8": torch.from_numpy(q),
    }
    assert t["guidance_scale"].shape == (f,)
    for i, (s, u) in enumerate(zip(rec.steps, rec.unet_calls)):
        t[f"step.{i}.unet_input"] = u["input"]
        t[f"step.{i}.unet_output"] = u["output"]
        t[f"step.{i}.guided_v"] = s["guided_v"]
        t[f"step.{i}.latents_out"] = s["latents_out"]
    return t


def pipeline_checks(res, t):
    sch = res["pipe"].scheduler
    steps = PIPE_ARGS["num_inference_steps"]
    assert np.array_equal(t["sigmas"].numpy(), karras_sigmas(steps)), "sigmas differ from the spec formula"
    want_t = torch.from_numpy(np.float32(0.25) * np.log(t["sigmas"][:-1].numpy()))
    assert torch.allclose(t["timesteps"], want_t, rtol=2e-7, atol=0), (t["timesteps"], want_t)
    assert float(sch.init_noise_sigma) == 700.000732421875
    assert torch.equal(t["latents"], t["step.%d.latents_out" % (steps - 1)][0])
    n0 = t["initial_noise"] * sch.init_noise_sigma
    u0 = torch.cat([n0] * 2) / ((t["sigmas"][0] ** 2 + 1) ** 0.5)
    assert torch.allclose(t["step.0.unet_input"][:, :, :4], u0, rtol=1e-6, atol=1e-6)
    il = t["image_latents"]
    assert torch.equal(il[0], torch.zeros_like(il[0]))
    assert torch.equal(t["step.0.unet_input"][:, :, 4:], il.unsqueeze(1).repeat(1, PIPE_ARGS["num_frames"], 1, 1, 1))
    assert torch.equal(t["vae_input"], t["image_preprocessed"] + 0.02 * t["noise_aug"])
    ie = t["image_embeddings"]
    assert ie.shape == (2, 1, 32) and torch.equal(ie[0], torch.zeros_like(ie[0]))
    fr = t["frames"]
    assert torch.equal(fr, (t["decoded"].permute(0, 2, 3, 1) / 2 + 0.5).clamp(0, 1))
    # the image reaches the pipeline already at the target size: VaeImageProcessor's resize is a no-op
    pre = ((t["image_resized_uint8"].permute(2, 0, 1)[None].float() / 255.0) * 2 - 1)
    assert torch.equal(t["image_preprocessed"], pre)


def check_loop(t):
    """Re-runs the denoising loop's arithmetic (docs/reference/pipeline.md §7.4, §7.5, §9, §10) from the stored
    tensors with plain float32 torch ops; every step must match the pipeline bit for bit."""
    f = PIPE_ARGS["num_frames"]
    sig = t["sigmas"]
    g = t["guidance_scale"].view(1, f, 1, 1, 1)
    x = t["initial_noise"] * t["init_noise_sigma"][0]
    il = t["image_latents"].unsqueeze(1).repeat(1, f, 1, 1, 1)
    for i in range(PIPE_ARGS["num_inference_steps"]):
        s, s_next = sig[i], sig[i + 1]
        inp = torch.cat([torch.cat([x, x]) / ((s ** 2 + 1) ** 0.5), il], dim=2)
        assert torch.equal(inp, t[f"step.{i}.unet_input"]), f"step {i}: unet input"
        v_u, v_c = t[f"step.{i}.unet_output"].chunk(2)
        v = v_u + g * (v_c - v_u)
        assert torch.equal(v, t[f"step.{i}.guided_v"]), f"step {i}: guidance"
        x0 = v * (-s / (s ** 2 + 1) ** 0.5) + x / (s ** 2 + 1)
        x = x + (x - x0) / s * (s_next - s)
        assert torch.equal(x, t[f"step.{i}.latents_out"]), f"step {i}: euler step"
    assert torch.equal(x[0], t["latents"])


def case_svd():
    d = OUT / "svd"
    fresh(d)
    build_svd_folder(d)
    arr = make_input_png(d / "input.png")
    image = load_image(str(d / "input.png"))  # exif_transpose + RGB, as the official load_image
    assert np.array_equal(np.asarray(image), arr)
    image = image.resize((PIPE_ARGS["width"], PIPE_ARGS["height"]), resample=PIL.Image.BICUBIC)
    resized = np.asarray(image).copy()
    res = run_pipeline(d, image)
    t = pipeline_tensors(res, arr, resized)
    pipeline_checks(res, t)
    check_loop(t)
    lat = run_pipeline(d, image, output_type="latent")
    assert torch.equal(lat["frames"][0], t["latents"]), "output_type='latent' differs from the decoded run's latents"
    assert lat["log"].entries == res["log"].entries
    meta = pipeline_meta(res["log"], {"scheduler_noise": "stock: EulerDiscreteScheduler.step draws its unused noise "
                                                         "from the global CPU generator (a CPU run)"})
    save(t, d / "svd_io.safetensors", meta)
    nb = finish_dir(d)
    print(f"svd: frames {tuple(t['frames'].shape)} mean {t['frames'].mean():.4f} std {t['frames'].std():.4f}; "
          f"latents std {t['latents'].std():.4f}; image_latents std {t['image_latents'][1].std():.4f}; "
          f"image_embeds std {t['image_embeddings'][1].std():.4f}; bytes {nb}")
    print("    sigmas", t["sigmas"].tolist(), "timesteps", t["timesteps"].tolist())
    print("    guidance", t["guidance_scale"].tolist(), "added_time_ids", t["added_time_ids"].tolist())
    print("    draws", json.dumps(res["log"].summary()))
    u8 = t["frames_uint8"]
    print(f"    frames_uint8 range {u8.min().item()}..{u8.max().item()}, distinct {u8.unique().numel()}")
    assert 0.02 < t["frames"].std().item() and u8.unique().numel() > 50
    return res, t


def case_svd_traj(svd_t=None):
    d = OUT / "svd_traj"
    fresh(d)
    model = OUT / "svd"
    assert model.exists(), "run the svd case first"
    f, width, height = PIPE_ARGS["num_frames"], PIPE_ARGS["width"], PIPE_ARGS["height"]
    # trajectory weights: a UNet with the branch, parameters in named_parameters order (official file layout)
    unet = UNetSpatioTemporalConditionModel.from_pretrained(model / "unet")
    uf.add_trajectory_branch(unet)
    tparams = uf.trajectory_params(unet)
    g_t = torch.Generator().manual_seed(TRAJ_WEIGHT_SEED)
    vals = []
    for _, p in tparams:
        if p.ndim == 2:
            vals.append(torch.randn(p.shape, generator=g_t) * (0.5 / math.sqrt(p.shape[1])))
        else:
            vals.append(0.1 * torch.randn(p.shape, generator=g_t))
    torch.save([v.contiguous() for v in vals], d / "trajattn_temp.pth")
    with open(d / "trajectory_order.tsv", "w") as fh:
        fh.write("index\tunet_parameter\tshape\n")
        for i, (k, p) in enumerate(tparams):
            fh.write(f"{i}\t{k}\t[{','.join(str(s) for s in p.shape)}]\n")
    # trajectories: CoTracker-style files (1, F, N, 2) float32 / (1, F, N) bool, pixel units of width x height
    g_in = torch.Generator().manual_seed(TRAJ_INPUT_SEED)
    tr, vis = uf.make_trajectories(f, N_TRAJ, (width, height), g_in)
    (d / "trajectories").mkdir()
    np.save(d / "trajectories" / "trans_coordinates.npy", tr.numpy()[None])
    np.save(d / "trajectories" / "trans_valid.npy", vis.numpy().astype(bool)[None])

    image = load_image(str(OUT / "svd" / "input.png")).resize((width, height), resample=PIL.Image.BICUBIC)
    arr = np.asarray(load_image(str(OUT / "svd" / "input.png"))).copy()
    traj = {"pth": d / "trajattn_temp.pth", "coords": d / "trajectories" / "trans_coordinates.npy",
            "valid": d / "trajectories" / "trans_valid.npy"}
    res = run_pipeline(model, image, traj=traj, redirect_scheduler_noise=True)
    t = pipeline_tensors(res, arr, np.asarray(image).copy())
    pipeline_checks(res, t)
    check_loop(t)
    calls = res["state"].calls
    for i, c in enumerate(calls):
        t[f"trajectory_indices.{i}"] = c[1].to(torch.int64)
    t["trajectories"] = tr
    t["visibility"] = vis
    same_as_svd = ["input_uint8", "image_resized_uint8", "clip_pixel_values", "image_embeddings", "image_preprocessed",
                   "noise_aug", "vae_input", "image_latents", "added_time_ids", "sigmas", "timesteps",
                   "init_noise_sigma", "initial_noise", "guidance_scale"]
    # the randperm results in the draw log are the full permutations; indices = their first M entries
    perms = [(e, x) for e, x in zip(res["log"].entries, res["log"].tensors) if e["fn"] == "randperm"]
    assert len(perms) == len(calls)
    for (e, x), c in zip(perms, calls):
        assert torch.equal(x[:c[4]], c[1])
    # the no-traj run of the same stream: first two draws identical to svd's
    assert svd_t is not None, "run the svd case first"
    if svd_t is not None:
        assert torch.equal(t["noise_aug"], svd_t["noise_aug"]) and torch.equal(t["initial_noise"],
                                                                               svd_t["initial_noise"])
        for k in same_as_svd:
            assert torch.equal(t[k], svd_t[k]), k
        dv = (t["frames"] - svd_t["frames"]).abs().max().item()
        dl = (t["latents"] - svd_t["latents"]).abs().max().item()
        print(f"svd_traj: max|frames - svd frames| {dv:.4f}, max|latents - svd latents| {dl:.4f}")
        assert dl > 1e-3
    # replay check of the indices from a fresh generator: 2 randn, then per step the UNet's randperm calls
    g = torch.Generator().manual_seed(SEED)
    torch.randn(t["noise_aug"].shape, generator=g)
    torch.randn(t["initial_noise"].shape, generator=g)
    for i, c in enumerate(calls):
        assert torch.equal(torch.randperm(N_TRAJ, generator=g)[:c[4]], c[1]), i
    # the branch with zero output projections must give svd's result exactly
    # (docs/reference/trajectory-attention.md §3)
    with tempfile.TemporaryDirectory() as tmp:
        zero = [torch.zeros_like(v) if ".to_out." in k else v for (k, _), v in zip(tparams, vals)]
        torch.save(zero, pathlib.Path(tmp) / "zero.pth")
        zres = run_pipeline(model, image, traj=dict(traj, pth=pathlib.Path(tmp) / "zero.pth"),
                            redirect_scheduler_noise=True)
    assert np.array_equal(zres["frames"], svd_t["frames"].numpy()[None]), "zeroed branch changed the frames"
    assert [e for e in zres["log"].entries] == [e for e in res["log"].entries]
    per_step = len(calls) // PIPE_ARGS["num_inference_steps"]
    meta = pipeline_meta(res["log"], {
        "scheduler_noise": "redirected: EulerDiscreteScheduler.step's unused noise is drawn from a private generator "
                           "(as on a GPU, where it uses the CUDA generator), so the global stream holds only the "
                           "pipeline's two randn draws and the trajectory randperm draws",
        "trajectory_calls": len(calls), "trajectory_calls_per_step": per_step,
        "trajectory_call_modules": ",".join(c[0] for c in calls[:per_step]),
        "trajectory_call_hw": ",".join(f"{c[2]}x{c[3]}" for c in calls[:per_step]),
        "trajectory_call_M": ",".join(str(c[4]) for c in calls[:per_step]),
        "trajectory_call_L": ",".join(str(c[5]) for c in calls[:per_step]),
        "n_trajectories": N_TRAJ, "origin_width": width, "origin_height": height, "grouping": "pairs",
        "model_folder": "../svd"})
    meta["omitted_same_as_svd"] = ",".join(same_as_svd)
    save({k: v for k, v in t.items() if k not in same_as_svd}, d / "svd_traj_io.safetensors", meta)
    nb = finish_dir(d)
    print(f"svd_traj: frames std {t['frames'].std():.4f}; {len(calls)} trajectory calls "
          f"({per_step}/step: {[(c[0].split('.temporal')[0], c[2], c[3], c[4], c[5]) for c in calls[:per_step]]}); "
          f"bytes {nb}")
    print("    draws", json.dumps(res["log"].summary()))


def main():
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
          f"numpy {np.__version__}, pillow {PIL.__version__}")
    torch.set_num_threads(1)  # deterministic CPU reductions
    names = sys.argv[1:] or ["scheduler", "svd", "vae", "clip", "svd_traj"]  # svd writes the model folder
    OUT.mkdir(parents=True, exist_ok=True)
    svd_t = None
    for name in names:
        if name == "scheduler":
            check_scheduler_tables()
        elif name == "vae":
            case_vae()
        elif name == "clip":
            case_clip()
        elif name == "svd":
            svd_t = case_svd()[1]
        elif name == "svd_traj":
            if svd_t is None and (OUT / "svd" / "svd_io.safetensors").exists():
                svd_t = load_file(OUT / "svd" / "svd_io.safetensors")
            case_svd_traj(svd_t)
        else:
            raise SystemExit(f"unknown case {name}")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"total bytes under {OUT}: {total}")
    assert total < SIZE_LIMIT, "fixtures exceed 12 MB"


if __name__ == "__main__":
    main()

//! `trajattn::sampler` against the spec's scheduler tables (data/scheduler_{14,25,50,100}_steps.tsv), torch's
//! linspace (tests/reference/sampler_fixtures.py) and the tiny-model pipeline run of diffusers 0.27.0
//! (tests/fixtures/pipeline/svd/svd_io.safetensors, float32 CPU run).
//!
//! Tolerances: sigmas, sigma_next, c_in, c_skip, c_out and init_noise_sigma bit-exact (the reference computes
//! them in float64→float32 / float32 with a fixed operation order that we reproduce); c_noise bit-exact against
//! the tables (they hold the correctly rounded float32 of ¼·ln σ; diffusers' own torch CPU log is within 1 ulp,
//! checked on the pipeline fixture); guidance bit-exact; the whole f32 Euler loop of the fixture bit-exact.

// The reference values below are float32 numbers written with every digit the reference printed.
#![allow(clippy::excessive_precision)]

use std::path::{Path, PathBuf};

use half::f16;
use safetensors::SafeTensors;
use trajattn::sampler::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn tsv(rel: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(fixture(rel)).unwrap();
    let mut lines = text.lines();
    let head = lines.next().unwrap().split('\t').map(String::from).collect();
    (head, lines.map(|l| l.split('\t').map(String::from).collect()).collect())
}

#[test]
fn schedule_matches_spec_tables() {
    for steps in [14usize, 25, 50, 100] {
        let (head, rows) = tsv(&format!("spec/scheduler_{steps}_steps.tsv"));
        let col = |name: &str| head.iter().position(|h| h == name).unwrap_or_else(|| panic!("column {name}"));
        let s = Schedule::svd(steps).unwrap();
        assert_eq!(rows.len(), steps);
        assert_eq!(s.steps(), steps);
        assert_eq!(s.sigmas.len(), steps + 1);
        assert_eq!(s.sigmas[steps], 0.0);
        assert_eq!(s.init_noise_sigma, 700.000732421875);
        for (i, r) in rows.iter().enumerate() {
            let v = |name: &str| r[col(name)].parse::<f64>().unwrap() as f32;
            let p = s.precondition(i).unwrap();
            let ctx = format!("{steps} steps, row {i}");
            assert_eq!(r[col("step")].parse::<usize>().unwrap(), i);
            assert_eq!(s.sigmas[i].to_bits(), v("sigma_f32").to_bits(), "sigma {ctx}");
            assert_eq!(s.sigmas[i + 1].to_bits(), v("sigma_next_f32").to_bits(), "sigma_next {ctx}");
            assert_eq!(p.c_noise.to_bits(), v("c_noise_timestep_f32").to_bits(), "c_noise {ctx}");
            assert_eq!(p.c_in.to_bits(), v("c_in_f32").to_bits(), "c_in {ctx}");
            assert_eq!(p.c_skip.to_bits(), v("c_skip_f32").to_bits(), "c_skip {ctx}");
            assert_eq!(p.c_out.to_bits(), v("c_out_f32").to_bits(), "c_out {ctx}");
        }
    }
    let s = Schedule::svd(25).unwrap();
    assert_eq!(s.timesteps[0], 1.6377700567245483);
    assert_eq!(s.timesteps[24], -1.553652048110962);
}

#[test]
fn schedule_edge_cases_and_errors() {
    assert_eq!(Schedule::svd(0), Err(SamplerError::Steps(0)));
    let one = Schedule::svd(1).unwrap();
    assert_eq!(one.sigmas, vec![700.0, 0.0]);
    let two = Schedule::svd(2).unwrap();
    assert_eq!(two.sigmas, vec![700.0, 0.002, 0.0]);
    assert!(matches!(Schedule::karras(5, 1.0, 0.5, 7.0), Err(SamplerError::Range { .. })));
    assert!(matches!(Schedule::karras(5, 0.0, 1.0, 7.0), Err(SamplerError::Range { .. })));
    for steps in 1..200 {
        let s = Schedule::svd(steps).unwrap();
        assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]), "{steps} steps not descending");
    }
    let s = Schedule::svd(3).unwrap();
    assert_eq!(s.precondition(3), Err(SamplerError::Index { index: 3, steps: 3 }));
    assert!(s.step(3, &[0.0], &[0.0], DType::F32).is_err());
    assert!(matches!(s.step(0, &[0.0; 2], &[0.0; 3], DType::F32), Err(SamplerError::Len { .. })));
    let msg = SamplerError::Steps(0).to_string();
    assert!(msg.contains("at least 1"), "{msg}");
}

#[test]
fn guidance_matches_torch_linspace() {
    let (head, rows) = tsv("sampler/guidance_linspace.tsv");
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let mut n = 0;
    // (min, max, frames) of the rows read so far, their f32 values and f16 values.
    type Group = ((String, String, usize), Vec<f32>, Vec<f32>);
    let mut cache: Option<Group> = None;
    for r in &rows {
        let key = (r[col("min")].clone(), r[col("max")].clone(), r[col("frames")].parse::<usize>().unwrap());
        if cache.as_ref().map(|c| &c.0) != Some(&key) {
            let (lo, hi) = (key.0.parse::<f32>().unwrap(), key.1.parse::<f32>().unwrap());
            let g32 = guidance_scales(lo, hi, key.2, DType::F32).unwrap();
            let g16 = guidance_scales(lo, hi, key.2, DType::F16).unwrap();
            cache = Some((key.clone(), g32, g16));
        }
        let (_, g32, g16) = cache.as_ref().unwrap();
        let i: usize = r[col("index")].parse().unwrap();
        let bits = u32::from_str_radix(&r[col("bits")], 16).unwrap();
        assert_eq!(g32[i].to_bits(), bits, "linspace {:?} index {i}", key);
        assert_eq!(g16[i], r[col("value_f16")].parse::<f32>().unwrap(), "fp16 {:?} index {i}", key);
        n += 1;
    }
    assert!(n > 2000);
    assert_eq!(guidance_scales(1.0, 3.0, 0, DType::F32), Err(SamplerError::Frames));
    assert!(cfg_enabled(3.0) && !cfg_enabled(1.0));
}

struct St<'a>(SafeTensors<'a>);
impl St<'_> {
    fn f32(&self, name: &str) -> Vec<f32> {
        let t = self.0.tensor(name).unwrap();
        t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }
    fn shape(&self, name: &str) -> Vec<usize> {
        self.0.tensor(name).unwrap().shape().to_vec()
    }
}

#[test]
fn pipeline_loop_matches_diffusers_f32() {
    let bytes = std::fs::read(fixture("pipeline/svd/svd_io.safetensors")).unwrap();
    let st = St(SafeTensors::deserialize(&bytes).unwrap());
    let steps = st.f32("timesteps").len();
    let s = Schedule::svd(steps).unwrap();
    assert_eq!(s.sigmas, st.f32("sigmas"));
    for (a, b) in s.timesteps.iter().zip(st.f32("timesteps")) {
        assert!((a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1, "timestep {a} vs diffusers {b}");
    }
    assert_eq!(s.init_noise_sigma, st.f32("init_noise_sigma")[0]);
    // Noise augmentation and conditioning values.
    let aug = noise_augment(&st.f32("image_preprocessed"), &st.f32("noise_aug"), 0.02).unwrap();
    assert_eq!(aug, st.f32("vae_input"));
    assert_eq!(added_time_ids(7, 127, 0.02, DType::F32, true), st.f32("added_time_ids"));
    let il = st.f32("image_latents");
    assert_eq!(cfg_image_latents(&il[il.len() / 2..], DType::F32, true), il);
    let frames = st.shape("latents")[0];
    let g = guidance_scales(1.0, 3.0, frames, DType::F32).unwrap();
    assert_eq!(g, st.f32("guidance_scale"));
    // The Euler loop.
    let mut x = s.init_latents(&st.f32("initial_noise"), DType::F32);
    let per_frame = x.len() / frames;
    let lc = per_frame / (st.shape("latents")[2] * st.shape("latents")[3]);
    let hw = per_frame / lc;
    for i in 0..steps {
        let inp = st.f32(&format!("step.{i}.unet_input"));
        let mut u: Vec<f32> = [x.clone(), x.clone()].concat();
        s.scale_model_input(i, &mut u, DType::F32).unwrap();
        // unet_input is [2, F, 2·lc, h, w]: the scaled latents are channels 0..lc of each frame.
        for b in 0..2 {
            for f in 0..frames {
                let ours = &u[(b * frames + f) * per_frame..][..per_frame];
                let theirs = &inp[(b * frames + f) * 2 * lc * hw..][..per_frame];
                assert_eq!(ours, theirs, "step {i} unet input b{b} f{f}");
            }
        }
        let v = st.f32(&format!("step.{i}.unet_output"));
        let guided = cfg_combine(&v, &g, per_frame, DType::F32).unwrap();
        assert_eq!(guided, st.f32(&format!("step.{i}.guided_v")), "step {i} guidance");
        x = s.step(i, &guided, &x, DType::F32).unwrap();
        assert_eq!(x, st.f32(&format!("step.{i}.latents_out")), "step {i} latents");
    }
    assert_eq!(x, st.f32("latents"));
}

#[test]
fn fp16_roundings() {
    // added time ids in fp16 (docs/reference/pipeline.md §6).
    assert_eq!(
        added_time_ids(7, 127, 0.02, DType::F16, true),
        vec![6.0, 127.0, 0.0200042724609375, 6.0, 127.0, 0.0200042724609375]
    );
    assert_eq!(added_time_ids(7, 127, 0.02, DType::F16, false).len(), 3);
    // Initial latents: the f32 product rounded once (not × fp16(700.0007) = 700): find a value where they differ.
    let s = Schedule::svd(25).unwrap();
    let noise: Vec<f32> = (0..4096).map(|i| f16::from_bits(0x3c00 + i as u16).to_f32()).collect();
    let ours = s.init_latents(&noise, DType::F16);
    let naive: Vec<f32> = noise.iter().map(|&n| f16::from_f32(n * 700.0).to_f32()).collect();
    assert!(ours.iter().zip(&naive).any(|(a, b)| a != b));
    for (o, n) in ours.iter().zip(&noise) {
        assert_eq!(*o, f16::from_f32(n * 700.000732421875).to_f32());
    }
    // CFG in fp16 rounds each op: (c − u), g·d, u + ….
    let v = [1.0f32, 1000.0, 1.5, 1003.0];
    let g = [1.0f32, 1.0830078125];
    let out = cfg_combine(&v, &g, 1, DType::F16).unwrap();
    let d = f16::from_f32(1003.0 - 1000.0).to_f32();
    let p = f16::from_f32(1.0830078125 * d).to_f32();
    assert_eq!(out, vec![1.5, f16::from_f32(1000.0 + p).to_f32()]);
    // The f16 step rounds v·c_out and the result.
    let x = [f16::from_f32(123.4).to_f32(); 3];
    let vv = [0.25f32, -0.5, 1.0];
    let y = s.step(24, &vv, &x, DType::F16).unwrap();
    assert!(y.iter().all(|&v| f16::from_f32(v).to_f32() == v));
}

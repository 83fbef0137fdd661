//! The runtime pieces under the kernels: pool reuse, pipeline cache keys, windows, fallbacks, errors.

mod common;

use trajattn_kernels::gpu::{Gpu, GpuOptions};
use trajattn_kernels::ops::elementwise::{self, Binary};
use trajattn_kernels::shaders::ELEMENTWISE;
use trajattn_kernels::testing::{assert_close, rand_vec, to_f64};
use trajattn_kernels::{DType, KernelError, Tensor};

#[test]
fn pool_reuses_a_dropped_buffer_of_the_same_class() {
    // A private device so other tests' allocations don't interfere with the counters.
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let t = Tensor::empty(&gpu, &[1000, 77], DType::F32).unwrap();
    let before = gpu.pool().stats();
    drop(t);
    let _t2 = Tensor::empty(&gpu, &[1001, 77], DType::F32).unwrap(); // same size class
    let after = gpu.pool().stats();
    assert_eq!(after.creations, before.creations, "no new buffer for the same class");
    assert_eq!(after.reuses, before.reuses + 1);
    assert!(after.peak_in_use >= after.in_use);
}

#[test]
fn pipeline_cache_keys_on_entry_dtype_and_constants() {
    let gpu = common::gpu();
    let pc = gpu.pipelines();
    let a = pc.get(&gpu.device, &ELEMENTWISE, "add", DType::F32, &[]).unwrap();
    let b = pc.get(&gpu.device, &ELEMENTWISE, "add", DType::F32, &[]).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "same key gives the cached pipeline");
    let c = pc.get(&gpu.device, &ELEMENTWISE, "add", DType::F32, &[("WG", 64.0)]).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c), "override constants are part of the key");
    let bad = pc.get(&gpu.device, &ELEMENTWISE, "no_such_entry", DType::F32, &[]);
    assert!(matches!(bad, Err(KernelError::Wgpu(_))), "a bad entry point is an Err, not a panic");
}

#[test]
fn workgroup_override_changes_nothing_numerically() {
    // The same op with a different WG override (a tile-size constant) gives identical results.
    let gpu = common::gpu();
    let n = 1237;
    let (a, b) = (rand_vec(3, n), rand_vec(4, n));
    let ta = Tensor::from_f32(&gpu, &a, &[n], DType::F32).unwrap();
    let tb = Tensor::from_f32(&gpu, &b, &[n], DType::F32).unwrap();
    let y = elementwise::binary(&gpu, Binary::Mul, &ta, &tb).unwrap();
    let want = elementwise::reference::binary(Binary::Mul, &to_f64(&a), &to_f64(&b));
    assert_close("mul", &y.to_f32(&gpu).unwrap(), &want, 1e-6);
}

#[test]
fn f16_tensors_are_refused_without_shader_f16() {
    let gpu = Gpu::new(&GpuOptions { disable: vec!["f16".into(), "subgroup".into()], ..Default::default() })
        .unwrap();
    assert!(!gpu.caps.shader_f16 && !gpu.caps.subgroup);
    let err = Tensor::empty(&gpu, &[4], DType::F16).unwrap_err();
    assert!(matches!(err, KernelError::MissingFeature { .. }), "{err}");
    // f32 still works on the fallback device.
    let ta = Tensor::from_f32(&gpu, &rand_vec(1, 33), &[33], DType::F32).unwrap();
    let y = elementwise::binary(&gpu, Binary::Add, &ta, &ta).unwrap();
    let want: Vec<f64> = rand_vec(1, 33).iter().map(|&x| 2.0 * x as f64).collect();
    assert_close("fallback add", &y.to_f32(&gpu).unwrap(), &want, 1e-6);
}

#[test]
fn uploads_of_the_wrong_length_and_oversized_tensors_are_errors() {
    let gpu = common::gpu();
    let e = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0], &[2, 2], DType::F32).unwrap_err().to_string();
    assert!(e.contains("[4]") && e.contains("[3]"), "{e}");
    let e = Tensor::empty(&gpu, &[1 << 20, 1 << 13], DType::F32).unwrap_err();
    assert!(matches!(e, KernelError::Invalid { .. } | KernelError::TooLarge { .. }), "{e}");
    let t = Tensor::from_f32(&gpu, &rand_vec(2, 12), &[3, 4], DType::F32).unwrap();
    assert!(t.reshape(&[5, 2]).is_err());
    assert!(t.narrow0(2, 2).is_err());
}

#[test]
fn odd_f16_counts_round_trip() {
    let gpu = common::gpu();
    if !gpu.caps.shader_f16 {
        return;
    }
    let v = trajattn_kernels::testing::round_f16(&rand_vec(9, 7));
    let t = Tensor::from_f32(&gpu, &v, &[7], DType::F16).unwrap();
    assert_eq!(t.to_f32(&gpu).unwrap(), v);
}

#[test]
fn unknown_adapter_names_the_available_ones() {
    let err =
        Gpu::new(&GpuOptions { adapter: Some("no-such-gpu-xyz".into()), ..Default::default() }).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no-such-gpu-xyz") && msg.contains("available"), "{msg}");
}

#[test]
fn a_lowered_binding_limit_is_reported_and_enforced_by_wgpu() {
    use trajattn_kernels::gpu::parse_bytes;
    assert_eq!(parse_bytes("64K"), Some(65536));
    assert_eq!(parse_bytes("3MiB"), Some(3 << 20));
    assert_eq!(parse_bytes("1000"), Some(1000));
    assert_eq!(parse_bytes("12 parsecs"), None);
    let full = Gpu::new(&GpuOptions::default()).unwrap();
    let limit = 64 * 1024 + 100; // rounded down to a multiple of 256
    let gpu = Gpu::new(&GpuOptions { max_binding: Some(limit), ..Default::default() }).unwrap();
    assert!(full.max_binding() > 65536);
    assert_eq!(gpu.max_binding(), 65536);
    assert_eq!(gpu.limits.max_storage_buffer_binding_size, 65536);
    assert!(Gpu::new(&GpuOptions { max_binding: Some(100), ..Default::default() }).is_err());
    // Our windows refuse a larger binding...
    let t = Tensor::empty(&gpu, &[65536 / 4 + 64], DType::F32).unwrap();
    assert!(matches!(t.whole(&gpu).unwrap_err(), KernelError::TooLarge { .. }));
    assert!(t.window(&gpu, 0, 1024).is_ok());
    // ...and wgpu's validation does too: the device really has the lowered limit.
    let layout = gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &[wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: true },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }],
    });
    let bind = |size: u64| {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let _bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: t.buffer(),
                    offset: 0,
                    size: std::num::NonZeroU64::new(size),
                }),
            }],
        });
        pollster::block_on(scope.pop())
    };
    assert!(bind(65536).is_none(), "a binding at the limit is valid");
    assert!(bind(65536 + 256).is_some(), "a binding above the lowered limit must fail validation");
}

//! What wgpu allows when two bindings of one dispatch are windows of one buffer — the fact that decides whether
//! graph intermediates can live at offsets inside a few shared buffers.
//!
//! wgpu 30 tracks usage per buffer per dispatch (`wgpu-core` `track::invalid_resource_state`: an exclusive usage
//! such as `STORAGE_READ_WRITE` must be the only usage), and a bind group layout must match the shader's access
//! exactly (`validation.rs`: `var<storage, read>` needs a read-only layout entry). So disjoint windows of one
//! buffer bound `read` + `read_write` in one dispatch are a validation error, while two `read_write` windows are
//! accepted.

use trajattn_kernels::{DType, Gpu, Tensor};

fn run(gpu: &Gpu, input_access: &str) -> (Option<String>, Vec<f32>) {
    let src = format!(
        "@group(0) @binding(0) var<storage, {input_access}> a: array<f32>;
         @group(0) @binding(1) var<storage, read_write> b: array<f32>;
         @compute @workgroup_size(1) fn main() {{ b[0] = a[0] + 1.0; }}"
    );
    let align = gpu.storage_align().max(256);
    let n = (2 * align / 4) as usize;
    let mut host = vec![0f32; n];
    host[0] = 41.0;
    let t = Tensor::from_f32(gpu, &host, &[n], DType::F32).unwrap();
    let d = &gpu.device;
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("aliasing"),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
    let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("aliasing"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let binding = |offset: u64| {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: t.buffer(),
            offset,
            size: wgpu::BufferSize::new(align),
        })
    };
    let bg = d.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: binding(0) },
            wgpu::BindGroupEntry { binding: 1, resource: binding(align) },
        ],
    });
    let mut enc = d.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    let cmd = enc.finish();
    let err = pollster::block_on(scope.pop()).map(|e| e.to_string());
    if err.is_none() {
        gpu.queue.submit([cmd]);
    }
    (err, t.to_f32(gpu).unwrap())
}

#[test]
fn read_only_and_read_write_windows_of_one_buffer_conflict_in_a_dispatch() {
    let gpu = Gpu::shared().unwrap();
    let (err, _) = run(&gpu, "read");
    let err = err.expect("wgpu accepted a read-only and a read-write window of one buffer in one dispatch");
    eprintln!("wgpu: {err}");
    assert!(err.to_lowercase().contains("usage") || err.contains("conflict"), "{err}");
}

#[test]
fn two_read_write_windows_of_one_buffer_share_a_dispatch() {
    let gpu = Gpu::shared().unwrap();
    let align = (gpu.storage_align().max(256) / 4) as usize;
    let (err, out) = run(&gpu, "read_write");
    assert!(err.is_none(), "{err:?}");
    assert_eq!(out[align], 42.0);
}

//! The adapters wgpu offers: listing them as `trajattn info` shows them, and ranking them for the default choice.

use super::GpuOptions;
use serde::Serialize;

/// One adapter, as `trajattn info` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub features: Vec<String>,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size: [u32; 3],
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub min_uniform_buffer_offset_alignment: u32,
}

impl AdapterReport {
    pub(super) fn new(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        let mut features: Vec<String> = f.iter_names().map(|(n, _)| n.to_string()).collect();
        features.sort();
        AdapterReport {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            vendor: info.vendor,
            device: info.device,
            features,
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size: [
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z,
            ],
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        }
    }
}

pub(super) const NO_DRIVER_HELP: &str = "no GPU adapter found: install a Vulkan driver (Debian/Ubuntu: \
`apt-get install mesa-vulkan-drivers` gives lavapipe, a CPU Vulkan driver; on a GPU install the vendor's driver), \
or run on macOS (Metal) or Windows (DX12)";

pub(super) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

pub(super) fn backends_of(opts: &GpuOptions) -> wgpu::Backends {
    opts.backend.map(|b| b.backends()).unwrap_or(wgpu::Backends::all())
}

/// Lists every adapter of the allowed backends.
pub fn list_adapters(opts: &GpuOptions) -> Vec<AdapterReport> {
    let backends = backends_of(opts);
    let inst = instance(backends);
    pollster::block_on(inst.enumerate_adapters(backends)).iter().map(AdapterReport::new).collect()
}

pub(super) fn rank(adapter: &wgpu::Adapter) -> u32 {
    let info = adapter.get_info();
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let be = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    be * 10 + ty
}

//! Reading a UNet's weight files: the diffusers weights (every key and shape checked against the config's
//! parameter list), the trajectory branch (the official `.pth` or converted safetensors) and its conversion.
//! This layer sits above both `checkpoint` (file formats, no model knowledge) and `models::unet_keys` (what a
//! config's files must hold).

use std::path::Path;

use crate::checkpoint::{self, write_safetensors, HostDType, HostTensor, Result, SafetensorsFile};
use crate::models::config::UNetConfig;
use crate::models::unet_keys::{expected_unet_keys, trajectory_keys};

/// Load the trajectory-branch weights for `cfg` from either the official `.pth` (positional list of
/// 80 tensors, mapped through registration order) or a safetensors file with the real UNet key names
/// (as written by [`convert_trajectory_checkpoint`]). Every shape is checked. Output is in registration
/// order with real names.
pub fn load_trajectory_weights(path: &Path, cfg: &UNetConfig, host: HostDType) -> Result<Vec<HostTensor>> {
    let expected = trajectory_keys(cfg);
    if checkpoint::is_zip(path)? {
        checkpoint::pth::load_trajectory_pth(path, &expected, host)
    } else {
        let file = SafetensorsFile::open(path)?;
        file.check(&expected, &[])?;
        expected.iter().map(|(name, _)| file.read(name, host)).collect()
    }
}

/// `trajattn convert`: read the official `trajattn_temp.pth` (or an already converted safetensors file)
/// for the SVD UNet and write the 80 trajectory tensors as float32 safetensors with their real names.
/// Returns the number of tensors written.
pub fn convert_trajectory_checkpoint(input: &Path, output: &Path) -> Result<usize> {
    convert_trajectory_checkpoint_with_config(input, output, &UNetConfig::svd_xt())
}

/// [`convert_trajectory_checkpoint`] for a UNet of another configuration.
pub fn convert_trajectory_checkpoint_with_config(
    input: &Path,
    output: &Path,
    cfg: &UNetConfig,
) -> Result<usize> {
    let tensors = load_trajectory_weights(input, cfg, HostDType::F32)?;
    write_safetensors(output, &tensors)?;
    Ok(tensors.len())
}

/// Load a UNet safetensors file, check every key and shape against `cfg` (without the trajectory branch,
/// which diffusers files never contain) and return the open file for per-tensor reads.
pub fn open_unet(path: &Path, cfg: &UNetConfig) -> Result<SafetensorsFile> {
    let file = SafetensorsFile::open(path)?;
    file.check(&expected_unet_keys(cfg, false), &[])?;
    Ok(file)
}

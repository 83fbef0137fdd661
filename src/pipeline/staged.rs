//! Models on the device only while a stage of the generation needs them.
//!
//! A generation runs CLIP, the VAE encoder, the UNet steps and the VAE decoder one after the other. A
//! [`Staged`] model is read from its folder when a stage asks for it ([`Staged::get`]) and leaves the device
//! when the stage releases it ([`Staged::release`]): its weights go back to the buffer pool once the last
//! holder of the `Arc` drops, and the pool is trimmed so the driver gets the memory back before the next stage
//! allocates. The UNet is loaded with the model and stays through conditioning and denoising; it leaves for
//! the VAE decoder and is read again when a later generation asks for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use trajattn_kernels::{DType, Gpu};

use crate::models::clip::ClipVision;
use crate::models::config::{ClipVisionConfig, UNetConfig, VaeConfig};
use crate::models::unet::{UNet, UNetError};
use crate::models::vae::{Vae, VaePart};

type Loader<M> = Box<dyn Fn(&Gpu) -> Result<M, UNetError> + Send + Sync>;

/// A model of config `C` loaded on demand (see the module documentation).
pub struct Staged<M, C> {
    /// The model's config (known without its weights).
    pub cfg: C,
    load: Loader<M>,
    slot: Mutex<Option<Arc<M>>>,
}

impl<M, C> Staged<M, C> {
    /// A model read by `load` when first asked for.
    pub fn new(cfg: C, load: impl Fn(&Gpu) -> Result<M, UNetError> + Send + Sync + 'static) -> Self {
        Staged { cfg, load: Box::new(load), slot: Mutex::new(None) }
    }

    /// A model already on the device (it still leaves it on [`Staged::release`], and is then read again by
    /// `load` when asked for).
    pub fn resident(
        cfg: C,
        model: M,
        load: impl Fn(&Gpu) -> Result<M, UNetError> + Send + Sync + 'static,
    ) -> Self {
        Staged { cfg, load: Box::new(load), slot: Mutex::new(Some(Arc::new(model))) }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<M>>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model on the device, read from its folder if it is not there.
    pub fn get(&self, gpu: &Gpu) -> Result<Arc<M>, UNetError> {
        let mut slot = self.lock();
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let m = Arc::new((self.load)(gpu)?);
        *slot = Some(m.clone());
        Ok(m)
    }

    /// Lets the model leave the device (once the holders of [`Staged::get`]'s `Arc` drop it) and trims the
    /// pool.
    pub fn release(&self, gpu: &Gpu) {
        drop(self.lock().take());
        gpu.pool().trim();
    }
}

impl<C> Staged<Vae, C> {
    /// Device bytes of the weights while resident (0 when not).
    pub fn resident_bytes(&self) -> u64 {
        self.lock().as_ref().map_or(0, |m| m.weight_bytes())
    }
}

impl Staged<Vae, VaeConfig> {
    /// Half `part` of the VAE of the diffusers `vae/` folder `dir` in `dtype`: the config and the names of
    /// the weights file are checked now, the weights are read when a stage asks for them.
    pub fn vae(dir: &Path, dtype: DType, part: VaePart) -> Result<Self, UNetError> {
        let cfg = Vae::check_dir(dir)?;
        let dir: PathBuf = dir.to_path_buf();
        Ok(Staged::new(cfg, move |gpu: &Gpu| Vae::load_dir_part(gpu, &dir, dtype, part)))
    }

    /// Spatial downsampling factor (`2^(blocks − 1)`).
    pub fn scale_factor(&self) -> usize {
        1 << (self.cfg.block_out_channels.len() - 1)
    }
}

impl Staged<ClipVision, ClipVisionConfig> {
    /// The image encoder of the transformers `image_encoder/` folder `dir` in `dtype` (config and names
    /// checked now, weights read when asked for).
    pub fn clip(dir: &Path, dtype: DType) -> Result<Self, UNetError> {
        let cfg = ClipVision::check_dir(dir)?;
        let dir: PathBuf = dir.to_path_buf();
        Ok(Staged::new(cfg, move |gpu: &Gpu| ClipVision::load_dir(gpu, &dir, dtype)))
    }

    /// Device bytes of the weights while resident (0 when not).
    pub fn resident_bytes(&self) -> u64 {
        self.lock().as_ref().map_or(0, |m| m.weight_bytes())
    }
}

impl Staged<UNet, UNetConfig> {
    /// The UNet of the diffusers `unet/` folder `dir` (with the trajectory weights `trajectory`), loaded now
    /// and read again from the same files after a release.
    pub fn unet(gpu: &Gpu, dir: &Path, trajectory: Option<&Path>, dtype: DType) -> Result<Self, UNetError> {
        let unet = UNet::load_dir(gpu, dir, trajectory, dtype)?;
        let (dir, traj) = (dir.to_path_buf(), trajectory.map(Path::to_path_buf));
        Ok(Staged::resident(unet.cfg.clone(), unet, move |gpu: &Gpu| {
            UNet::load_dir(gpu, &dir, traj.as_deref(), dtype)
        }))
    }
}

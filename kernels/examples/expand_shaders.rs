//! Writes every shader of `shaders/` as the device receives it (includes expanded; f32, and f16 where the file
//! has a dtype alias) into a folder, with `manifest.tsv` listing every entry point at its default override
//! constants, for `../shared/tools/radvstats/run.sh --manifest DIR/manifest.tsv`.
//!
//! `cargo run --release -p trajattn-kernels --example expand_shaders -- DIR`
//!
//! (`trajattn shaders --dump` lists the pipelines one adapter would really get, constants included.)

use trajattn_kernels::shaders::ALL;
use trajattn_kernels::DType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: expand_shaders DIR")?;
    std::fs::create_dir_all(&dir)?;
    let mut manifest = String::from("# label\tentry\tfile\tconstants\n");
    for sh in ALL {
        let mut dtypes = vec![DType::F32];
        if sh.has_dtype_alias() {
            dtypes.push(DType::F16);
        }
        for d in dtypes {
            let src = sh.source(d)?;
            let file = format!("{}.{d}.wgsl", sh.name);
            std::fs::write(std::path::Path::new(&dir).join(&file), &src)?;
            let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
            for ep in &module.entry_points {
                if ep.stage == naga::ShaderStage::Compute {
                    manifest.push_str(&format!("{}::{} {d}\t{}\t{file}\t\n", sh.name, ep.name, ep.name));
                }
            }
        }
    }
    std::fs::write(std::path::Path::new(&dir).join("manifest.tsv"), manifest)?;
    println!("wrote {dir}/manifest.tsv");
    Ok(())
}

//! Reading Depth-Anything-V2 weights: the official `.pth` (through the restricted pickle reader: nothing in
//! the file is executed), a safetensors file with the official key names, or a transformers `-hf` folder /
//! `model.safetensors` (keys renamed to the official ones, q/k/v concatenated; docs/reference/depth-anything-v2.md §8).
//! Every tensor's name and shape is checked against the configuration before any data is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::pth::{Container, PthFile};
use crate::checkpoint::{check_keys, HostDType, HostData, HostTensor, SafetensorsFile};
use crate::depth::config::{DepthConfig, Encoder};
use crate::depth::DepthError;

/// Where the weights come from.
enum Source {
    Pth(PthFile),
    Safetensors(SafetensorsFile),
}

/// Weights read from a file, with official names, as f32 on the host.
pub struct HostWeights {
    /// The file they came from.
    pub path: PathBuf,
    /// The configuration (inferred or given).
    pub cfg: DepthConfig,
    /// Tensors by official name.
    pub tensors: HashMap<String, HostTensor>,
    /// Whether the file used the transformers (`-hf`) layout.
    pub hf_layout: bool,
}

fn is_zip(path: &Path) -> Result<bool, DepthError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| DepthError::Weights { path: path.display().to_string(), msg: e.to_string() })?;
    let mut magic = [0u8; 4];
    let n = f
        .read(&mut magic)
        .map_err(|e| DepthError::Weights { path: path.display().to_string(), msg: e.to_string() })?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}

/// The official name of a transformers (`-hf`) key, or `None` for q/k/v parts (handled separately) and for
/// keys that have no official counterpart.
fn official_name(hf: &str) -> Option<String> {
    if let Some(r) = hf.strip_prefix("backbone.embeddings.") {
        return Some(match r {
            "cls_token" => "pretrained.cls_token".into(),
            "mask_token" => "pretrained.mask_token".into(),
            "position_embeddings" => "pretrained.pos_embed".into(),
            _ => format!("pretrained.patch_embed.proj.{}", r.strip_prefix("patch_embeddings.projection.")?),
        });
    }
    if let Some(r) = hf.strip_prefix("backbone.encoder.layer.") {
        let (i, rest) = r.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let rest = match rest {
            "layer_scale1.lambda1" => "ls1.gamma".to_string(),
            "layer_scale2.lambda1" => "ls2.gamma".to_string(),
            _ if rest.starts_with("attention.attention.") => return None,
            _ => {
                if let Some(x) = rest.strip_prefix("attention.output.dense.") {
                    format!("attn.proj.{x}")
                } else if rest.starts_with("norm1.")
                    || rest.starts_with("norm2.")
                    || rest.starts_with("mlp.fc1.")
                    || rest.starts_with("mlp.fc2.")
                {
                    rest.to_string()
                } else {
                    return None;
                }
            }
        };
        return Some(format!("pretrained.blocks.{i}.{rest}"));
    }
    if let Some(r) = hf.strip_prefix("backbone.layernorm.") {
        return Some(format!("pretrained.norm.{r}"));
    }
    if let Some(r) = hf.strip_prefix("neck.reassemble_stage.layers.") {
        let (k, rest) = r.split_once('.')?;
        if let Some(x) = rest.strip_prefix("projection.") {
            return Some(format!("depth_head.projects.{k}.{x}"));
        }
        if let Some(x) = rest.strip_prefix("resize.") {
            return Some(format!("depth_head.resize_layers.{k}.{x}"));
        }
        return None;
    }
    if let Some(r) = hf.strip_prefix("neck.convs.") {
        let (k, rest) = r.split_once('.')?;
        let k: usize = k.parse().ok()?;
        return Some(format!("depth_head.scratch.layer{}_rn.{rest}", k + 1));
    }
    if let Some(r) = hf.strip_prefix("neck.fusion_stage.layers.") {
        let (j, rest) = r.split_once('.')?;
        let j: usize = j.parse().ok()?;
        if j > 3 {
            return None;
        }
        let n = 4 - j;
        let p = format!("depth_head.scratch.refinenet{n}");
        if let Some(x) = rest.strip_prefix("projection.") {
            return Some(format!("{p}.out_conv.{x}"));
        }
        let (unit, rest) = rest.split_once('.')?;
        let u = unit.strip_prefix("residual_layer")?;
        let (conv, x) = rest.split_once('.')?;
        let c = conv.strip_prefix("convolution")?;
        return Some(format!("{p}.resConfUnit{u}.conv{c}.{x}"));
    }
    if let Some(r) = hf.strip_prefix("head.") {
        let (conv, x) = r.split_once('.')?;
        let off = match conv {
            "conv1" => "output_conv1",
            "conv2" => "output_conv2.0",
            "conv3" => "output_conv2.2",
            _ => return None,
        };
        return Some(format!("depth_head.scratch.{off}.{x}"));
    }
    None
}

/// One tensor to read: its name in the file, and the rows it fills of an official tensor.
#[derive(Clone, Debug)]
struct Part {
    file_name: String,
    shape: Vec<usize>,
}

/// Opens `path` (a `.pth`, a `.safetensors`, or a folder holding `model.safetensors`), maps its keys to the
/// official names, settles the configuration (inferred from the shapes; `encoder` must agree when given),
/// checks every name and shape, and reads the tensors as f32.
pub fn read(path: &Path, encoder: Option<Encoder>) -> Result<HostWeights, DepthError> {
    read_with(path, encoder, None)
}

/// Like [`read`], with an explicit configuration (the reduced test model, whose head count shapes cannot
/// tell).
pub fn read_with(
    path: &Path,
    encoder: Option<Encoder>,
    cfg: Option<DepthConfig>,
) -> Result<HostWeights, DepthError> {
    let file = if path.is_dir() {
        let f = path.join("model.safetensors");
        if !f.is_file() {
            return Err(DepthError::Weights {
                path: path.display().to_string(),
                msg: "a folder must hold a transformers `model.safetensors` (Depth-Anything-V2-*-hf); pass the \
                      official depth_anything_v2_<encoder>.pth file otherwise"
                    .into(),
            });
        }
        f
    } else {
        path.to_path_buf()
    };
    let werr = |msg: String| DepthError::Weights { path: file.display().to_string(), msg };
    let mut source = if is_zip(&file)? {
        let p = PthFile::open(&file)?;
        if p.container != Container::Named {
            return Err(werr("the .pth holds a list of tensors, not a state dict with names".into()));
        }
        Source::Pth(p)
    } else {
        Source::Safetensors(SafetensorsFile::open(&file)?)
    };
    let listing: Vec<(String, Vec<usize>)> = match &source {
        Source::Pth(p) => p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), p.shape(i).unwrap_or_default()))
            .collect(),
        Source::Safetensors(s) => s.entries().iter().map(|e| (e.name.clone(), e.shape.clone())).collect(),
    };
    let hf_layout = listing.iter().any(|(n, _)| n.starts_with("backbone."));
    // Official name → the file tensors that make it (one, or q/k/v for the -hf layout).
    let mut plan: HashMap<String, Vec<Part>> = HashMap::new();
    let mut unknown = Vec::new();
    if hf_layout {
        for (n, s) in &listing {
            if let Some(o) = official_name(n) {
                plan.insert(o, vec![Part { file_name: n.clone(), shape: s.clone() }]);
            } else if let Some((pre, rest)) = n.split_once(".attention.attention.") {
                let i = pre.strip_prefix("backbone.encoder.layer.").unwrap_or("?");
                let (which, kind) = rest.split_once('.').unwrap_or((rest, ""));
                let slot = match which {
                    "query" => 0,
                    "key" => 1,
                    "value" => 2,
                    _ => {
                        unknown.push(n.clone());
                        continue;
                    }
                };
                let e = plan.entry(format!("pretrained.blocks.{i}.attn.qkv.{kind}")).or_default();
                if e.len() < 3 {
                    e.resize(3, Part { file_name: String::new(), shape: Vec::new() });
                }
                e[slot] = Part { file_name: n.clone(), shape: s.clone() };
            } else {
                unknown.push(n.clone());
            }
        }
    } else {
        for (n, s) in &listing {
            plan.insert(n.clone(), vec![Part { file_name: n.clone(), shape: s.clone() }]);
        }
    }
    // Shapes under official names (q/k/v parts stacked along dim 0).
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    for (name, parts) in &plan {
        if parts.iter().any(|p| p.file_name.is_empty()) {
            return Err(werr(format!("`{name}`: the -hf layout lacks one of its query/key/value parts")));
        }
        let mut s = parts[0].shape.clone();
        if parts.len() == 3 {
            if parts.iter().any(|p| p.shape != parts[0].shape) || s.is_empty() {
                return Err(werr(format!("`{name}`: query/key/value parts differ in shape")));
            }
            s[0] *= 3;
        }
        shapes.insert(name.clone(), s);
    }
    let inferred = DepthConfig::infer(&shapes)
        .map_err(|m| werr(m + " (pass the official depth_anything_v2_vits/vitb/vitl.pth)"));
    // A transformers folder's config.json describes the model (also sizes no release has).
    let hf_json = path.is_dir().then(|| path.join("config.json")).filter(|p| p.is_file());
    let cfg = match (cfg, hf_json) {
        (Some(c), _) => c,
        (None, Some(j)) => {
            let text = std::fs::read_to_string(&j)
                .map_err(|e| DepthError::Weights { path: j.display().to_string(), msg: e.to_string() })?;
            DepthConfig::from_hf_json(&text)
                .map_err(|msg| DepthError::Weights { path: j.display().to_string(), msg })?
        }
        (None, None) => inferred?,
    };
    if let Some(want) = encoder {
        if cfg.encoder != Some(want) {
            let have = cfg
                .encoder
                .map(|e| format!("{e} weights"))
                .unwrap_or_else(|| format!("weights of {}", cfg.describe()));
            return Err(werr(format!(
                "--encoder {want} was given but these are {have} (drop --encoder, or pass the {want} checkpoint)"
            )));
        }
    }
    crate::limits::MODEL_PARAMS.check(cfg.params() as u64)?;
    let mut found: Vec<(String, Vec<usize>)> = shapes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    found.extend(unknown.iter().map(|n| (n.clone(), Vec::new())));
    let expected = cfg.expected();
    check_keys(
        &file,
        found.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        &expected,
        &["pretrained.mask_token"],
    )?;
    let mut tensors = HashMap::with_capacity(expected.len());
    let pth_index: HashMap<String, usize> = match &source {
        Source::Pth(p) => p.tensors.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect(),
        Source::Safetensors(_) => HashMap::new(),
    };
    for (name, shape) in &expected {
        let Some(parts) = plan.get(name) else { continue };
        let mut data = Vec::with_capacity(shape.iter().product());
        for part in parts {
            let t = match &mut source {
                Source::Pth(p) => {
                    let i = pth_index[&part.file_name];
                    p.read(i, &part.file_name, HostDType::F32)?
                }
                Source::Safetensors(s) => s.read(&part.file_name, HostDType::F32)?,
            };
            data.extend(t.data.to_f32());
        }
        tensors.insert(
            name.clone(),
            HostTensor { name: name.clone(), shape: shape.clone(), data: HostData::F32(data) },
        );
    }
    Ok(HostWeights { path: file, cfg, tensors, hf_layout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_official_ones() {
        // Every -hf key of the published vits table maps to its official key (q/k/v handled apart).
        let tsv = [
            ("backbone.embeddings.position_embeddings", "pretrained.pos_embed"),
            ("backbone.embeddings.patch_embeddings.projection.weight", "pretrained.patch_embed.proj.weight"),
            ("backbone.encoder.layer.3.layer_scale2.lambda1", "pretrained.blocks.3.ls2.gamma"),
            ("backbone.encoder.layer.0.attention.output.dense.bias", "pretrained.blocks.0.attn.proj.bias"),
            ("backbone.encoder.layer.11.mlp.fc2.weight", "pretrained.blocks.11.mlp.fc2.weight"),
            ("backbone.layernorm.bias", "pretrained.norm.bias"),
            ("neck.reassemble_stage.layers.3.resize.weight", "depth_head.resize_layers.3.weight"),
            ("neck.convs.0.weight", "depth_head.scratch.layer1_rn.weight"),
            ("neck.fusion_stage.layers.0.projection.bias", "depth_head.scratch.refinenet4.out_conv.bias"),
            (
                "neck.fusion_stage.layers.3.residual_layer2.convolution1.weight",
                "depth_head.scratch.refinenet1.resConfUnit2.conv1.weight",
            ),
            ("head.conv3.bias", "depth_head.scratch.output_conv2.2.bias"),
        ];
        for (hf, off) in tsv {
            assert_eq!(official_name(hf).as_deref(), Some(off), "{hf}");
        }
        assert_eq!(official_name("backbone.encoder.layer.0.attention.attention.query.weight"), None);
        assert_eq!(official_name("decoder.x"), None);
    }
}

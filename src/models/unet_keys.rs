//! Expected parameter names and shapes of `UNetSpatioTemporalConditionModel`, in PyTorch registration
//! order (`named_parameters()` / `state_dict()`), computed from any valid [`UNetConfig`].
//!
//! For the SVD configuration this reproduces `tests/fixtures/spec/unet_state_dict.tsv` exactly (1,508 keys
//! with the trajectory branch, 1,428 without). The trajectory keys, filtered in this order, are the order of
//! the official `trajattn_temp.pth` (docs/reference/trajectory-attention.md §3).

use super::config::{ConfigError, DownBlockKind, UNetConfig, UpBlockKind};

/// `(name, shape)` in registration order.
pub type KeyList = Vec<(String, Vec<usize>)>;

struct Keys {
    out: KeyList,
}

impl Keys {
    fn push(&mut self, name: String, shape: &[usize]) {
        self.out.push((name, shape.to_vec()));
    }
    fn linear(&mut self, p: &str, out: usize, inp: usize, bias: bool) {
        self.push(format!("{p}.weight"), &[out, inp]);
        if bias {
            self.push(format!("{p}.bias"), &[out]);
        }
    }
    fn norm(&mut self, p: &str, c: usize) {
        self.push(format!("{p}.weight"), &[c]);
        self.push(format!("{p}.bias"), &[c]);
    }
    fn conv(&mut self, p: &str, out: usize, inp: usize, kernel: &[usize]) {
        let mut shape = vec![out, inp];
        shape.extend_from_slice(kernel);
        self.push(format!("{p}.weight"), &shape);
        self.push(format!("{p}.bias"), &[out]);
    }
    /// diffusers `TimestepEmbedding(in, hidden, out)`.
    fn timestep_embedding(&mut self, p: &str, inp: usize, hidden: usize, out: usize) {
        self.linear(&format!("{p}.linear_1"), hidden, inp, true);
        self.linear(&format!("{p}.linear_2"), out, hidden, true);
    }
    /// diffusers `Attention(query_dim=q, cross_attention_dim=kv, heads·dim_head=inner)`, no q/k/v bias.
    fn attention(&mut self, p: &str, q: usize, kv: usize, inner: usize) {
        self.linear(&format!("{p}.to_q"), inner, q, false);
        self.linear(&format!("{p}.to_k"), inner, kv, false);
        self.linear(&format!("{p}.to_v"), inner, kv, false);
        self.linear(&format!("{p}.to_out.0"), q, inner, true);
    }
    /// diffusers `FeedForward(dim, dim_out, mult=4, activation="geglu")`.
    fn feed_forward(&mut self, p: &str, dim: usize, dim_out: usize) {
        let hidden = dim * 4;
        self.linear(&format!("{p}.net.0.proj"), hidden * 2, dim, true);
        self.linear(&format!("{p}.net.2"), dim_out, hidden, true);
    }
    /// `SpatioTemporalResBlock(c_in, c_out, temb)`.
    fn st_resblock(&mut self, p: &str, c_in: usize, c: usize, temb: usize) {
        let s = format!("{p}.spatial_res_block");
        self.norm(&format!("{s}.norm1"), c_in);
        self.conv(&format!("{s}.conv1"), c, c_in, &[3, 3]);
        self.linear(&format!("{s}.time_emb_proj"), c, temb, true);
        self.norm(&format!("{s}.norm2"), c);
        self.conv(&format!("{s}.conv2"), c, c, &[3, 3]);
        if c_in != c {
            self.conv(&format!("{s}.conv_shortcut"), c, c_in, &[1, 1]);
        }
        let t = format!("{p}.temporal_res_block");
        self.norm(&format!("{t}.norm1"), c);
        self.conv(&format!("{t}.conv1"), c, c, &[3, 1, 1]);
        self.linear(&format!("{t}.time_emb_proj"), c, temb, true);
        self.norm(&format!("{t}.norm2"), c);
        self.conv(&format!("{t}.conv2"), c, c, &[3, 1, 1]);
        self.push(format!("{p}.time_mixer.mix_factor"), &[1]);
    }
    /// `TransformerSpatioTemporalModel(heads, c / heads, in_channels=c, num_layers, cross)`.
    fn st_transformer(&mut self, p: &str, c: usize, heads: usize, layers: usize, cross: usize, traj: bool) {
        let inner = heads * (c / heads.max(1));
        self.norm(&format!("{p}.norm"), c);
        self.linear(&format!("{p}.proj_in"), inner, c, true);
        for l in 0..layers {
            let b = format!("{p}.transformer_blocks.{l}");
            self.norm(&format!("{b}.norm1"), inner);
            self.attention(&format!("{b}.attn1"), inner, inner, inner);
            self.norm(&format!("{b}.norm2"), inner);
            self.attention(&format!("{b}.attn2"), inner, cross, inner);
            self.norm(&format!("{b}.norm3"), inner);
            self.feed_forward(&format!("{b}.ff"), inner, inner);
        }
        for l in 0..layers {
            let b = format!("{p}.temporal_transformer_blocks.{l}");
            self.norm(&format!("{b}.norm_in"), inner);
            self.feed_forward(&format!("{b}.ff_in"), inner, inner);
            self.norm(&format!("{b}.norm1"), inner);
            self.attention(&format!("{b}.attn1"), inner, inner, inner);
            if traj {
                self.attention(&format!("{b}.attn_trajectory"), inner, inner, inner);
            }
            self.norm(&format!("{b}.norm2"), inner);
            self.attention(&format!("{b}.attn2"), inner, cross, inner);
            self.norm(&format!("{b}.norm3"), inner);
            self.feed_forward(&format!("{b}.ff"), inner, inner);
        }
        self.timestep_embedding(&format!("{p}.time_pos_embed"), c, c * 4, c);
        self.push(format!("{p}.time_mixer.mix_factor"), &[1]);
        self.linear(&format!("{p}.proj_out"), c, inner, true);
    }
}

/// Expected UNet parameters `(name, shape)` in registration order. `with_trajectory` adds the
/// `attn_trajectory` module of every temporal transformer block (official `using_traj_attn=True`).
///
/// The configuration should have passed [`UNetConfig::validate`] (every constructor in
/// [`super::config`] does); shapes of an invalid configuration are meaningless but this never panics.
pub fn expected_unet_keys(cfg: &UNetConfig, with_trajectory: bool) -> KeyList {
    let mut k = Keys { out: Vec::with_capacity(1600) };
    let n = cfg.n_blocks();
    let boc = &cfg.block_out_channels;
    let c0 = boc.first().copied().unwrap_or(0);
    let temb = cfg.time_embed_dim();
    let get = |v: &Vec<usize>, i: usize| v.get(i).copied().unwrap_or(0);

    k.conv("conv_in", c0, cfg.in_channels, &[3, 3]);
    k.timestep_embedding("time_embedding", c0, temb, temb);
    k.timestep_embedding("add_embedding", cfg.projection_class_embeddings_input_dim, temb, temb);

    // Down blocks: attentions, then resnets, then downsamplers (ModuleList registration order).
    let mut c_prev = c0;
    for i in 0..n {
        let c = get(boc, i);
        let p = format!("down_blocks.{i}");
        let layers = get(&cfg.layers_per_block, i);
        if cfg.down_block_types.get(i) == Some(&DownBlockKind::CrossAttn) {
            for j in 0..layers {
                k.st_transformer(
                    &format!("{p}.attentions.{j}"),
                    c,
                    get(&cfg.num_attention_heads, i),
                    get(&cfg.transformer_layers_per_block, i),
                    get(&cfg.cross_attention_dim, i),
                    with_trajectory,
                );
            }
        }
        for j in 0..layers {
            let c_in = if j == 0 { c_prev } else { c };
            k.st_resblock(&format!("{p}.resnets.{j}"), c_in, c, temb);
        }
        if i + 1 < n {
            k.conv(&format!("{p}.downsamplers.0.conv"), c, c, &[3, 3]);
        }
        c_prev = c;
    }

    // Up blocks use the reversed per-block lists; each has layers_per_block + 1 resnets.
    let rev = |v: &Vec<usize>, i: usize| if i < n { get(v, n - 1 - i) } else { 0 };
    let mut out_c = rev(boc, 0);
    for i in 0..n {
        let prev_out = out_c;
        out_c = rev(boc, i);
        let in_c = rev(boc, (i + 1).min(n.saturating_sub(1)));
        let layers = rev(&cfg.layers_per_block, i) + 1;
        let p = format!("up_blocks.{i}");
        if cfg.up_block_types.get(i) == Some(&UpBlockKind::CrossAttn) {
            for j in 0..layers {
                k.st_transformer(
                    &format!("{p}.attentions.{j}"),
                    out_c,
                    rev(&cfg.num_attention_heads, i),
                    rev(&cfg.transformer_layers_per_block, i),
                    rev(&cfg.cross_attention_dim, i),
                    with_trajectory,
                );
            }
        }
        for j in 0..layers {
            let skip = if j + 1 == layers { in_c } else { out_c };
            let res_in = if j == 0 { prev_out } else { out_c };
            k.st_resblock(&format!("{p}.resnets.{j}"), res_in + skip, out_c, temb);
        }
        if i + 1 < n {
            k.conv(&format!("{p}.upsamplers.0.conv"), out_c, out_c, &[3, 3]);
        }
    }

    // Mid block (registered after the up blocks): attentions.0, then resnets.0 and resnets.1.
    let cm = rev(boc, 0);
    k.st_transformer(
        "mid_block.attentions.0",
        cm,
        rev(&cfg.num_attention_heads, 0),
        rev(&cfg.transformer_layers_per_block, 0),
        rev(&cfg.cross_attention_dim, 0),
        with_trajectory,
    );
    k.st_resblock("mid_block.resnets.0", cm, cm, temb);
    k.st_resblock("mid_block.resnets.1", cm, cm, temb);

    k.norm("conv_norm_out", c0);
    k.conv("conv_out", cfg.out_channels, c0, &[3, 3]);
    k.out
}

/// Is this a parameter of the trajectory branch?
pub fn is_trajectory_key(name: &str) -> bool {
    name.contains("trajectory")
}

/// The trajectory parameters in registration order: index `i` of the official checkpoint is entry `i`.
pub fn trajectory_keys(cfg: &UNetConfig) -> KeyList {
    expected_unet_keys(cfg, true).into_iter().filter(|(k, _)| is_trajectory_key(k)).collect()
}

/// Total number of scalar parameters of a key list.
pub fn param_count(keys: &KeyList) -> usize {
    keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
}

/// Refuses a configuration whose tensors (each, and all together) exceed the resource limits, before anything is
/// allocated for it. Field-level checks are [`UNetConfig::validate`]'s (run by every parser); this one needs the
/// parameter list, so it lives here and the loaders (`models::unet`) run it.
pub fn check_model_size(cfg: &UNetConfig) -> Result<(), ConfigError> {
    use crate::limits::{product, MODEL_PARAMS, TENSOR_ELEMS};
    let field_err = |field: &str, msg: String| ConfigError::Field { field: field.to_string(), msg };
    let mut total: u64 = 0;
    for (name, shape) in expected_unet_keys(cfg, true) {
        let n = product(&name, &shape).map_err(|e| field_err("block_out_channels", e.to_string()))?;
        TENSOR_ELEMS.check(n as u64).map_err(|e| field_err("block_out_channels", format!("{name}: {e}")))?;
        total = total.saturating_add(n as u64);
    }
    MODEL_PARAMS.check(total).map_err(|e| field_err("layers_per_block", e.to_string()))?;
    Ok(())
}

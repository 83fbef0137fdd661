//! Names and shapes of the VAE's device weights (what the memory plans reserve on a dry device).

use crate::models::config::VaeConfig;

/// Names and shapes of the weights a VAE of `cfg` holds on the device (attention projections fused into
/// `to_qkv`, as [`super::load_all`] uploads them).
pub fn weight_shapes(c: &VaeConfig) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut wb = |p: String, w: Vec<usize>| {
        out.push((format!("{p}.bias"), vec![w[0]]));
        out.push((format!("{p}.weight"), w));
    };
    fn resnet(wb: &mut dyn FnMut(String, Vec<usize>), p: &str, cin: usize, co: usize) {
        wb(format!("{p}.norm1"), vec![cin]);
        wb(format!("{p}.conv1"), vec![co, cin, 3, 3]);
        wb(format!("{p}.norm2"), vec![co]);
        wb(format!("{p}.conv2"), vec![co, co, 3, 3]);
        if cin != co {
            wb(format!("{p}.conv_shortcut"), vec![co, cin, 1, 1]);
        }
    }
    fn attn(wb: &mut dyn FnMut(String, Vec<usize>), p: &str, c: usize) {
        wb(format!("{p}.group_norm"), vec![c]);
        wb(format!("{p}.to_qkv"), vec![3 * c, c]);
        wb(format!("{p}.to_out.0"), vec![c, c]);
    }
    let n = c.block_out_channels.len();
    let (c0, top, lc) = (c.block_out_channels[0], c.block_out_channels[n - 1], c.latent_channels);
    wb("encoder.conv_in".into(), vec![c0, c.in_channels, 3, 3]);
    let mut cin = c0;
    for (i, &co) in c.block_out_channels.iter().enumerate() {
        for j in 0..c.layers_per_block {
            resnet(
                &mut wb,
                &format!("encoder.down_blocks.{i}.resnets.{j}"),
                if j == 0 { cin } else { co },
                co,
            );
        }
        if i + 1 < n {
            wb(format!("encoder.down_blocks.{i}.downsamplers.0.conv"), vec![co, co, 3, 3]);
        }
        cin = co;
    }
    resnet(&mut wb, "encoder.mid_block.resnets.0", top, top);
    attn(&mut wb, "encoder.mid_block.attentions.0", top);
    resnet(&mut wb, "encoder.mid_block.resnets.1", top, top);
    wb("encoder.conv_norm_out".into(), vec![top]);
    wb("encoder.conv_out".into(), vec![2 * lc, top, 3, 3]);
    wb("quant_conv".into(), vec![2 * lc, 2 * lc, 1, 1]);
    wb("decoder.conv_in".into(), vec![top, lc, 3, 3]);
    let mut mixers = Vec::new();
    let mut st = |wb: &mut dyn FnMut(String, Vec<usize>), p: &str, cin: usize, co: usize| {
        resnet(wb, &format!("{p}.spatial_res_block"), cin, co);
        let t = format!("{p}.temporal_res_block");
        wb(format!("{t}.norm1"), vec![co]);
        wb(format!("{t}.conv1"), vec![co, co, 3, 1, 1]);
        wb(format!("{t}.norm2"), vec![co]);
        wb(format!("{t}.conv2"), vec![co, co, 3, 1, 1]);
        mixers.push(format!("{p}.time_mixer.mix_factor"));
    };
    for j in 0..c.layers_per_block {
        st(&mut wb, &format!("decoder.mid_block.resnets.{j}"), top, top);
    }
    attn(&mut wb, "decoder.mid_block.attentions.0", top);
    let mut prev = top;
    for i in 0..n {
        let co = c.block_out_channels[n - 1 - i];
        for j in 0..c.layers_per_block + 1 {
            st(&mut wb, &format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { co }, co);
        }
        if i + 1 < n {
            wb(format!("decoder.up_blocks.{i}.upsamplers.0.conv"), vec![co, co, 3, 3]);
        }
        prev = co;
    }
    wb("decoder.conv_norm_out".into(), vec![c0]);
    wb("decoder.conv_out".into(), vec![c.out_channels, c0, 3, 3]);
    wb("decoder.time_conv_out".into(), vec![c.out_channels, c.out_channels, 3, 1, 1]);
    out.extend(mixers.into_iter().map(|m| (m, vec![1])));
    out
}

/// Names and shapes of the tensors in a VAE weights file of `cfg` (diffusers' names: the attention
/// projections `to_q`, `to_k`, `to_v` apart, `[C, C]` each).
pub fn file_shapes(c: &VaeConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (name, shape) in weight_shapes(c) {
        match name.strip_suffix(".to_qkv.weight").or(name.strip_suffix(".to_qkv.bias")) {
            Some(p) => {
                let kind = if name.ends_with(".weight") { "weight" } else { "bias" };
                let mut one = shape.clone();
                one[0] /= 3;
                for m in ["to_q", "to_k", "to_v"] {
                    out.push((format!("{p}.{m}.{kind}"), one.clone()));
                }
            }
            None => out.push((name, shape)),
        }
    }
    out
}

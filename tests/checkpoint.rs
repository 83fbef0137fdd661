//! Checkpoint reading: expected UNet keys against the spec's dumps of the reference classes, the restricted
//! `.pth` reader against files written by torch 2.1.0 (tests/reference/checkpoint_fixtures.py), safetensors
//! validation, and corrupt / hostile inputs (every one must be an `Err`, never a panic).

use std::path::{Path, PathBuf};

use trajattn::checkpoint::{
    pth, write_safetensors, CheckpointError, HostDType, HostData, HostTensor, SafetensorsFile,
};
use trajattn::models::config::UNetConfig;
use trajattn::models::unet;
use trajattn::models::unet_keys::{expected_unet_keys, param_count, trajectory_keys};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn parse_shape(s: &str) -> Vec<usize> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.is_empty() {
        return vec![];
    }
    inner.split(',').map(|x| x.trim().parse().unwrap()).collect()
}

/// Rows of a spec TSV: (key column, shape column, optional extra column).
fn tsv(path: &str, key_col: usize, shape_col: usize) -> Vec<(String, Vec<usize>, String)> {
    let text = std::fs::read_to_string(fixture(path)).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[key_col].to_string(), parse_shape(cols[shape_col]), cols.last().unwrap().to_string())
        })
        .collect()
}

#[test]
fn svd_unet_keys_match_the_reference_state_dict_in_order() {
    let rows = tsv("spec/unet_state_dict.tsv", 0, 1);
    let ours = expected_unet_keys(&UNetConfig::svd_xt(), true);
    assert_eq!(ours.len(), rows.len(), "key count with the trajectory branch");
    for (i, ((k, s), (rk, rs, _))) in ours.iter().zip(&rows).enumerate() {
        assert_eq!((k, s), (rk, rs), "row {i}");
    }
    let base: Vec<_> = rows.iter().filter(|r| r.2 == "base").map(|r| (r.0.clone(), r.1.clone())).collect();
    assert_eq!(expected_unet_keys(&UNetConfig::svd_xt(), false), base);
    // Parameter counts of docs/reference/svd-architecture.md §4.8.
    assert_eq!(param_count(&expected_unet_keys(&UNetConfig::svd(), false)), 1_524_623_082);
    assert_eq!(param_count(&trajectory_keys(&UNetConfig::svd_xt())), 49_574_080);
}

#[test]
fn trajectory_keys_follow_the_official_checkpoint_order() {
    let rows = tsv("spec/trajattn_checkpoint_order.tsv", 1, 2);
    let ours = trajectory_keys(&UNetConfig::svd_xt());
    assert_eq!(ours.len(), 80);
    for (i, ((k, s), (rk, rs, _))) in ours.iter().zip(&rows).enumerate() {
        assert_eq!((k, s), (rk, rs), "index {i}");
    }
    assert!(ours[75].0.starts_with("mid_block."), "mid block is registered last");
}

fn expected_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("checkpoint/expected.json")).unwrap()).unwrap()
}

fn flat(v: &serde_json::Value, out: &mut Vec<f64>, shape: &mut Vec<usize>, depth: usize) {
    match v {
        serde_json::Value::Array(a) => {
            if shape.len() == depth {
                shape.push(a.len());
            }
            for x in a {
                flat(x, out, shape, depth + 1);
            }
        }
        x => out.push(x.as_f64().unwrap()),
    }
}

fn assert_tensor(t: &HostTensor, want: &serde_json::Value) {
    let (mut vals, mut shape) = (vec![], vec![]);
    flat(want, &mut vals, &mut shape, 0);
    assert_eq!(t.shape, shape, "{}", t.name);
    let got = t.data.to_f32();
    assert_eq!(got.len(), vals.len());
    for (i, (g, w)) in got.iter().zip(&vals).enumerate() {
        // torch's tolist() prints the stored float32/float16 value exactly; compare bit for bit.
        assert_eq!(*g, *w as f32, "{} element {i}", t.name);
    }
}

#[test]
fn pth_list_with_strided_and_offset_views() {
    let exp = expected_json();
    let ts = pth::read_all(&fixture("checkpoint/list.pth"), HostDType::F32).unwrap();
    assert_eq!(ts.len(), 4);
    for (t, want) in ts.iter().zip(exp["list.pth"].as_array().unwrap()) {
        assert_tensor(t, want);
    }
    // f16 host precision rounds to nearest.
    let h = pth::read_all(&fixture("checkpoint/list.pth"), HostDType::F16).unwrap();
    match &h[0].data {
        HostData::F16(v) => assert_eq!(v[1], half::f16::from_f32(ts[0].data.to_f32()[1])),
        other => panic!("expected f16, got {other:?}"),
    }
}

#[test]
fn pth_named_dict_and_integer_keys() {
    let exp = expected_json();
    let f = pth::PthFile::open(&fixture("checkpoint/named.pth")).unwrap();
    assert_eq!(f.container, pth::Container::Named);
    let ts = pth::read_all(&fixture("checkpoint/named.pth"), HostDType::F32).unwrap();
    for t in &ts {
        assert_tensor(t, &exp["named.pth"][t.name.as_str()]);
    }
    let f = pth::PthFile::open(&fixture("checkpoint/int_keys.pth")).unwrap();
    assert_eq!(f.container, pth::Container::Sequence);
    let ts = pth::read_all(&fixture("checkpoint/int_keys.pth"), HostDType::F32).unwrap();
    for (t, want) in ts.iter().zip(exp["int_keys.pth"].as_array().unwrap()) {
        assert_tensor(t, want);
    }
}

#[test]
fn pth_half_storage_reads_and_double_storage_is_a_clear_error() {
    let exp = expected_json();
    let ts = pth::read_all(&fixture("checkpoint/half.pth"), HostDType::F32).unwrap();
    assert_tensor(&ts[0], &exp["half.pth"][0]);
    let ts = pth::read_all(&fixture("checkpoint/half.pth"), HostDType::F16).unwrap();
    assert!(matches!(ts[0].data, HostData::F16(_)));
    assert_tensor(&ts[0], &exp["half.pth"][0]);
    // The first tensor of mixed_dtypes.pth is float16; the second is float64, which no weights file of ours
    // uses: the whole file is refused with the storage type named.
    let e = pth::read_all(&fixture("checkpoint/mixed_dtypes.pth"), HostDType::F32).unwrap_err().to_string();
    assert!(e.contains("DoubleStorage") && e.contains("not supported"), "{e}");
}

#[test]
fn pickle_with_a_foreign_global_is_refused_without_running_it() {
    let err = pth::read_all(&fixture("checkpoint/evil.pth"), HostDType::F32).unwrap_err();
    assert!(matches!(err, CheckpointError::UnsafePickle { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("evil.pth") && msg.contains("system"), "{msg}");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trajattn-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn truncated_or_bit_flipped_pth_files_never_panic() {
    let bytes = std::fs::read(fixture("checkpoint/list.pth")).unwrap();
    let p = tmp("cut.pth");
    // Every truncation is an error (the zip directory sits at the end).
    for cut in (0..bytes.len()).step_by(37) {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(pth::read_all(&p, HostDType::F32).is_err(), "cut at {cut}");
    }
    // Single-byte corruptions anywhere: an error or (if the byte was inert) a successful read; no panic.
    let mut state = 12345u64;
    for _ in 0..300 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let i = (state >> 33) as usize % bytes.len();
        let mut b = bytes.clone();
        b[i] ^= 1 << ((state >> 20) % 8);
        std::fs::write(&p, &b).unwrap();
        let _ = pth::read_all(&p, HostDType::F32);
    }
}

fn host(name: &str, shape: &[usize], seed: u32) -> HostTensor {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i as f32 + 0.37) * (seed as f32 + 1.3)).sin()).collect();
    HostTensor { name: name.into(), shape: shape.to_vec(), data: HostData::F32(data) }
}

#[test]
fn safetensors_round_trip_and_key_checks_name_every_problem() {
    let p = tmp("rt.safetensors");
    let ts = vec![host("a.weight", &[3, 5], 1), host("a.bias", &[3], 2), host("b", &[2, 2, 2], 3)];
    write_safetensors(&p, &ts).unwrap();
    let f = SafetensorsFile::open(&p).unwrap();
    for t in &ts {
        assert_eq!(&f.read(&t.name, HostDType::F32).unwrap(), t);
    }
    let expected = vec![
        ("a.weight".to_string(), vec![3, 5]),
        ("a.bias".to_string(), vec![4]),
        ("c".to_string(), vec![1]),
    ];
    let msg = f.check(&expected, &[]).unwrap_err().to_string();
    for part in [
        "rt.safetensors",
        "`a.bias` has shape [3], expected [4]",
        "missing tensor `c`",
        "unexpected tensor `b`",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    assert!(f.read("nope", HostDType::F32).unwrap_err().to_string().contains("nope"));
}

#[test]
fn truncated_and_garbage_safetensors_are_errors() {
    let p = tmp("t.safetensors");
    write_safetensors(&p, &[host("x", &[17], 4)]).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let q = tmp("t2.safetensors");
    for cut in [0, 4, 8, 20, bytes.len() - 1] {
        std::fs::write(&q, &bytes[..cut]).unwrap();
        let e = SafetensorsFile::open(&q).unwrap_err().to_string();
        assert!(e.contains("t2.safetensors"), "{e}");
    }
    let mut b = bytes.clone();
    b[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&q, &b).unwrap();
    assert!(SafetensorsFile::open(&q).is_err());
    let mut b = bytes;
    b[9] = b'!';
    std::fs::write(&q, &b).unwrap();
    assert!(SafetensorsFile::open(&q).is_err());
    assert!(SafetensorsFile::open(&tmp("missing.safetensors")).is_err());
}

#[test]
fn trajectory_weights_convert_to_safetensors_and_back() {
    // A small config whose trajectory branch has a few tensors; the .pth is our own positional list.
    let cfg = UNetConfig::from_json_str(
        r#"{"block_out_channels":[32,64],"num_attention_heads":[2,4],"layers_per_block":1,
            "down_block_types":["CrossAttnDownBlockSpatioTemporal","DownBlockSpatioTemporal"],
            "up_block_types":["UpBlockSpatioTemporal","CrossAttnUpBlockSpatioTemporal"],
            "cross_attention_dim":16,"addition_time_embed_dim":4,"projection_class_embeddings_input_dim":12,"num_frames":3}"#,
    )
    .unwrap();
    let keys = trajectory_keys(&cfg);
    assert!(!keys.is_empty() && keys.len().is_multiple_of(5), "{keys:?}");
    let ts: Vec<HostTensor> = keys.iter().enumerate().map(|(i, (k, s))| host(k, s, i as u32)).collect();
    let st = tmp("traj.safetensors");
    write_safetensors(&st, &ts).unwrap();
    let back = unet::load_trajectory_weights(&st, &cfg, HostDType::F32).unwrap();
    assert_eq!(back, ts);
    let out = tmp("traj2.safetensors");
    assert_eq!(unet::convert_trajectory_checkpoint_with_config(&st, &out, &cfg).unwrap(), keys.len());
    // A file for another configuration is rejected with the tensor named.
    let e = unet::load_trajectory_weights(&st, &UNetConfig::svd_xt(), HostDType::F32).unwrap_err();
    assert!(e.to_string().contains("attn_trajectory"), "{e}");
}

#[test]
fn unet_configs_parse_and_bad_ones_name_the_field() {
    let xt = UNetConfig::from_json_str(
        r#"{"_class_name":"UNetSpatioTemporalConditionModel","num_frames":25,"sample_size":96}"#,
    )
    .unwrap();
    assert_eq!(xt, UNetConfig::svd_xt());
    for (json, field) in [
        (r#"{"_class_name":"UNet2DConditionModel"}"#, "_class_name"),
        (r#"{"block_out_channels":[320,640,1280,1000]}"#, "block_out_channels"),
        (r#"{"num_attention_heads":[5,10,20]}"#, "num_attention_heads"),
        (r#"{"num_attention_heads":[3,10,20,20]}"#, "num_attention_heads"),
        (r#"{"projection_class_embeddings_input_dim":700}"#, "projection_class_embeddings_input_dim"),
        (
            r#"{"down_block_types":["CrossAttnDownBlock2D","CrossAttnDownBlockSpatioTemporal","CrossAttnDownBlockSpatioTemporal","DownBlockSpatioTemporal"]}"#,
            "down_block_types",
        ),
        (r#"{"layers_per_block":"two"}"#, "layers_per_block"),
        (r#"[1,2]"#, "<root>"),
    ] {
        let e = UNetConfig::from_json_str(json).unwrap_err().to_string();
        assert!(e.contains(field), "{json}: {e}");
    }
}

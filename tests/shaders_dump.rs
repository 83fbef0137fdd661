//! `trajattn shaders --dump`: the pipelines of a generation per kernel tier, written as WGSL that validates.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dump(kernels: &str, extra: &[&str]) -> (PathBuf, Vec<[String; 4]>) {
    let dir = std::env::temp_dir().join(format!("trajattn-dump-test-{kernels}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = std::env::temp_dir().join("trajattn-cli-test");
    let _ = std::fs::create_dir_all(&rt);
    let out = Command::new(env!("CARGO_BIN_EXE_trajattn"))
        .args(["shaders", "--dump"])
        .arg(&dir)
        .args(extra)
        .env("XDG_RUNTIME_DIR", &rt)
        .env("TRAJATTN_KERNELS", kernels)
        .env_remove("TRAJATTN_BACKEND")
        .env_remove("TRAJATTN_ADAPTER")
        .output()
        .expect("run trajattn");
    assert!(out.status.success(), "shaders --dump ({kernels}): {}", String::from_utf8_lossy(&out.stderr));
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let rows = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "manifest line {l:?} has {} fields", f.len());
            [f[0].to_string(), f[1].to_string(), f[2].to_string(), f[3].to_string()]
        })
        .collect();
    (dir, rows)
}

fn validate(dir: &Path, rows: &[[String; 4]]) {
    for r in rows {
        let path = dir.join(&r[2]);
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", r[2], e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", r[2]));
        assert!(module.entry_points.iter().any(|ep| ep.name == r[1]), "{}: no entry point {}", r[2], r[1]);
        for kv in r[3].split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("constant {kv:?} is not K=V"));
            assert!(v.parse::<f64>().is_ok(), "{kv}");
            assert!(
                module.overrides.iter().any(|(_, o)| o.name.as_deref() == Some(k)),
                "{}: no override {k}",
                r[2]
            );
        }
    }
}

fn entries(rows: &[[String; 4]]) -> Vec<&str> {
    rows.iter().map(|r| r[1].as_str()).collect()
}

#[test]
fn dump_lists_each_tiers_pipelines_and_its_wgsl_validates() {
    // Both tiers on the same adapter: the GPU tier always; sg8 only where subgroups are exactly 8 lanes.
    let (gdir, gpu) = dump("gpu", &["--dtype", "f32"]);
    validate(&gdir, &gpu);
    let g = entries(&gpu);
    // Generation = CLIP, VAE, UNet with the trajectory branch: every family shows up.
    for want in [
        "gemm_tiled_vec4",
        "im2col",
        "gn_finalize_wg",
        "temporal_gpu",
        "attn_fa2",
        "traj_attend_gpu",
        "traj_mean",
        "scale_input",
        "cfg_euler",
    ] {
        assert!(g.contains(&want), "gpu tier lacks {want}: {g:?}");
    }
    assert!(!g.iter().any(|e| e.ends_with("_sg8")), "gpu tier must not use sg8 kernels: {g:?}");
    // Nor the one-row-per-invocation kernels AMD's compiler flagged (scratch, spills, 3 waves/SIMD).
    for old in ["matmul", "matmul_vec4", "temporal", "traj_attend"] {
        assert!(!g.contains(&old), "gpu tier still selects {old}: {g:?}");
    }
    assert!(gpu.iter().all(|r| r[2].ends_with(".f32.wgsl")), "--dtype f32: every pipeline f32");

    let info = Command::new(env!("CARGO_BIN_EXE_trajattn")).args(["info", "--json"]).output().unwrap();
    let adapters: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let first = &adapters[0];
    let eight =
        first["subgroup"] == true && first["subgroup_min_size"] == 8 && first["subgroup_max_size"] == 8;
    if !eight || first["shader_f16"] != true {
        eprintln!("sg8 half skipped: the first adapter has no 8-lane subgroups or no f16");
        return;
    }
    let (sdir, sg8) = dump("sg8", &["--dtype", "f16", "--shape", "48x64x3"]);
    validate(&sdir, &sg8);
    let s = entries(&sg8);
    for want in ["matmul_sg8", "attn_sg8", "traj_attend_sg8", "im2col", "gn_finalize_wg", "traj_mean"] {
        assert!(s.contains(&want), "sg8 tier lacks {want}: {s:?}");
    }
    assert!(sg8.iter().any(|r| r[2].ends_with(".f16.wgsl")), "--dtype f16 gives f16 pipelines");
    // The VAE encoder stays f32 (force_upcast), as in generation.
    assert!(sg8.iter().any(|r| r[2].ends_with(".f32.wgsl")));
    let _ = std::fs::remove_dir_all(gdir);
    let _ = std::fs::remove_dir_all(sdir);
}

#[test]
fn dump_refuses_bad_arguments() {
    let dir = std::env::temp_dir().join(format!("trajattn-dump-bad-{}", std::process::id()));
    for args in [
        &["--shape", "50x64x4"][..],
        &["--shape", "64x64"],
        &["--decode-chunk", "0"],
        &["--adapter", "no-such"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_trajattn"))
            .args(["shaders", "--dump"])
            .arg(&dir)
            .args(args)
            .env_remove("TRAJATTN_ADAPTER")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"), "{args:?}");
    }
}

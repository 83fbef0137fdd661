//! Every WGSL file parses and validates with naga, in every dtype expansion.

use trajattn_kernels::shaders::ALL;
use trajattn_kernels::DType;

#[test]
fn every_shader_validates_in_every_dtype() {
    assert!(!ALL.is_empty());
    for sh in ALL {
        let mut dtypes = vec![DType::F32];
        if sh.has_dtype_alias() {
            dtypes.push(DType::F16);
        }
        for d in dtypes {
            let src = sh.source(d).unwrap_or_else(|e| panic!("{} ({d}): {e}", sh.name));
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{} ({d}): {}", sh.name, e.emit_to_string(&src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} ({d}): {e:?}", sh.name));
        }
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(ALL.iter().any(|s| s.name == stem), "shaders/{stem}.wgsl is not in shaders::ALL");
        }
    }
}

#[test]
fn includes_expand_once_and_unknown_ones_are_errors() {
    use trajattn_kernels::shaders::expand_includes;
    let twice =
        expand_includes("t", "#include \"activation\"\n#include \"activation\"\nfn f() {}\n").unwrap();
    assert_eq!(twice.matches("fn erfc_pos").count(), 1, "an include is expanded once per file");
    let err = expand_includes("t", "#include \"nope\"\n").unwrap_err().to_string();
    assert!(err.contains("unknown include") && err.contains("nope"), "{err}");
    assert!(expand_includes("t", "#include activation\n").is_err(), "an unquoted name is malformed");
    for sh in trajattn_kernels::shaders::ALL {
        let src = sh.source(DType::F32).unwrap();
        assert!(
            !src.lines().any(|l| l.trim_start().starts_with("#include")),
            "{}: an include line survived expansion",
            sh.name
        );
    }
}

#[test]
fn every_include_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/include");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            trajattn_kernels::shaders::INCLUDES.iter().any(|i| i.name == stem),
            "shaders/include/{stem}.wgsl is not in shaders::INCLUDES"
        );
    }
}

//! The weight-free memory plan against the real graph: the plan replays the graph's allocation order, so the
//! most bytes alive at one point must be the same in both, and the plan's placement must cover what the graph's
//! recording really allocated for its arenas.

use std::path::Path;

use trajattn::graph::unet_plan::{param_bytes, plan_unet};
use trajattn::models::unet::{GraphOptions, UNet, UNetGraph, UNetShape};
use trajattn::models::unet_io::UNetInputs;
use trajattn_kernels::{DType, Gpu};

#[test]
fn plan_matches_the_real_graph_on_the_fixture_models() {
    let gpu = Gpu::shared().unwrap();
    for case in ["a", "b", "c"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet").join(case);
        let inp = UNetInputs::read(&dir.join("inputs.safetensors")).unwrap();
        let unet = UNet::load_dir(&gpu, &dir.join("unet"), Some(&dir.join("trajattn_temp.pth")), DType::F32)
            .unwrap();
        let s = &inp.sample_shape;
        let shape = UNetShape { batch: s[0], frames: s[1], height: s[3], width: s[4] };
        for traj in [None, inp.trajectories.clone()] {
            let n = traj.as_ref().map(|t| t.n);
            let g = UNetGraph::build(&gpu, &unet, shape, GraphOptions::default(), traj).unwrap();
            let real = g.arena_stats();
            let p = plan_unet(&unet.cfg, s[0], s[1], s[3], s[4], 4, n);
            eprintln!(
                "case {case} traj {:?}: real peak live {} B, arenas {} B in {}; planned live {} B, placement {} B",
                n,
                real.peak_live_bytes,
                real.allocated_bytes,
                real.buffers,
                p.peak_live_bytes,
                p.peak_activation_bytes
            );
            assert_eq!(real.peak_live_bytes, p.peak_live_bytes, "case {case}: live peak, graph vs plan");
            assert!(
                real.allocated_bytes <= p.peak_activation_bytes,
                "case {case}: the graph allocated {} B, more than the plan's {} B",
                real.allocated_bytes,
                p.peak_activation_bytes
            );
            assert_eq!(
                param_bytes(&unet.cfg, true, 4),
                unet.weight_bytes(),
                "case {case}: planned parameter bytes vs uploaded"
            );
        }
    }
}

//! Drag, mask, sparse and flow trajectories (our encodings of the paper's controls,
//! docs/reference/trajectory-sources.md §10).

use trajattn::trajectory::build::{self, Drag, DragSpec};
use trajattn::trajectory::folder::{self, Trajectories};

fn spec(drags: Vec<Drag>, static_background: bool) -> DragSpec {
    DragSpec { width: 64, height: 40, frames: 5, grid_step: 4, static_background, drags }
}

fn pos(t: &Trajectories, f: usize, i: usize) -> [f64; 2] {
    [t.coords[2 * (f * t.n + i)], t.coords[2 * (f * t.n + i) + 1]]
}

#[test]
fn dragged_disk_follows_the_path_and_the_rest_stays() {
    let d = Drag { path: vec![[20.0, 20.0], [40.0, 20.0], [40.0, 30.0]], radius: 6.0 };
    let t = build::drags(&spec(vec![d], true)).unwrap();
    assert_eq!(t.n, 16 * 10, "every grid point of the 64×40 frame at step 4");
    assert!(t.valid.iter().all(|&v| v));
    let mut moved = 0;
    for i in 0..t.n {
        let p0 = pos(&t, 0, i);
        let inside = (p0[0] - 20.0).powi(2) + (p0[1] - 20.0).powi(2) <= 36.0;
        let end = pos(&t, 4, i);
        if inside {
            moved += 1;
            // Path length 30: the end is the last key point, frame 2 is half way along (15 px → (35, 20)).
            assert_eq!([end[0] - p0[0], end[1] - p0[1]], [20.0, 10.0]);
            let mid = pos(&t, 2, i);
            assert!((mid[0] - p0[0] - 15.0).abs() < 1e-9 && (mid[1] - p0[1]).abs() < 1e-9);
        } else {
            assert_eq!(end, p0, "undragged points stay");
        }
    }
    assert!(moved >= 5, "{moved} points in the disk");
    let only = build::drags(&spec(vec![Drag { path: vec![[20.0, 20.0], [30.0, 20.0]], radius: 6.0 }], false))
        .unwrap();
    assert_eq!(only.n, moved);
}

#[test]
fn bad_drags_are_refused() {
    let out = Drag { path: vec![[20.0, 20.0], [70.0, 20.0]], radius: 6.0 };
    assert!(build::drags(&spec(vec![out], true)).unwrap_err().to_string().contains("outside"));
    let short = Drag { path: vec![[20.0, 20.0]], radius: 6.0 };
    assert!(build::drags(&spec(vec![short], true)).unwrap_err().to_string().contains("at least 2"));
    let tiny = Drag { path: vec![[21.0, 21.0], [30.0, 20.0]], radius: 0.5 };
    assert!(build::drags(&spec(vec![tiny], false)).unwrap_err().to_string().contains("radius"));
    assert!(build::drags(&spec(vec![], true)).is_err());
}

#[test]
fn mask_sparse_and_flow() {
    // Flow: frame f moves everything by (f, −f/2); a 9×6 frame, grid step 2.
    let (fr, w, h) = (3, 9, 6);
    let mut flow = vec![0.0; fr * w * h * 2];
    for f in 0..fr {
        for p in 0..w * h {
            flow[2 * (f * w * h + p)] = f as f64;
            flow[2 * (f * w * h + p) + 1] = -(f as f64) / 2.0;
        }
    }
    let t = build::from_flow(&flow, fr, w, h, 2).unwrap();
    assert_eq!(t.n, 5 * 3);
    assert_eq!(pos(&t, 2, 1), [4.0, -1.0]);
    assert!(!t.valid[2 * t.n + 1], "left the frame at the top");
    // Grid point (8, 2) is trajectory 9; in frame 2 it is at (10, 1): outside the 9-wide frame.
    assert_eq!(pos(&t, 2, 9), [10.0, 1.0]);
    assert!(!t.valid[2 * t.n + 9]);
    assert!(t.valid[2 * t.n + 6], "(0, 2) → (2, 1) stays inside");
    let m: Vec<bool> = (0..w * h).map(|i| i % w < 4).collect();
    let masked = build::apply_mask(&t, &m, w, h).unwrap();
    for i in 0..t.n {
        let inside = pos(&t, 0, i)[0] < 4.0;
        for f in 0..fr {
            assert_eq!(masked.valid[f * t.n + i], inside && t.valid[f * t.n + i]);
        }
    }
    assert!(build::apply_mask(&t, &m[1..], w, h).is_err());
    let s = build::sparse(&t, 4).unwrap();
    assert_eq!(s.n, 3 * 2, "x in 0, 4, 8 and y in 0, 4");
    assert!(build::from_flow(&flow[1..], fr, w, h, 2).is_err());
    let dir = std::env::temp_dir().join(format!("trajattn-build-{}", std::process::id()));
    folder::write_tracks(&dir, &s).unwrap();
    let back = folder::read(&dir, fr).unwrap();
    assert_eq!(back.valid, s.valid);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Camera-path trajectories against the reference facts (docs/reference/trajectory-sources.md §4),
//! and the trajectory folder / .npy round trip.

use trajattn::trajectory::camera::{self, CameraMode, CameraPath, Intrinsics};
use trajattn::trajectory::{folder, npy};

#[test]
fn first_camera_matrix_is_the_specs() {
    let v0 = camera::look_at([0.0, 0.0, 200.0]);
    let want = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 200.0], [0.0, 0.0, 0.0, 1.0]];
    for (r, w) in v0.iter().zip(&want) {
        for (a, b) in r.iter().zip(w) {
            assert!((a - b).abs() < 1e-12, "{v0:?}");
        }
    }
}

#[test]
fn spec_example_horizontal_orbit() {
    // Horizontal, +0.5°/frame, frame 24: pixel (612, 388) at depth 100 → (649.8, 378.8); at depth 1000 → (563.4, 382.1).
    let path = CameraPath::new(CameraMode::Horizontal, 0.5);
    let t = &path.relative_transforms()[24];
    let k = Intrinsics::official(1024, 576);
    for (z, want) in [(100.0, [649.8, 378.8]), (1000.0, [563.4, 382.1])] {
        let (p, d) = k.reproject(612.0, 388.0, z, t);
        assert!(d > 0.0);
        assert!(
            (p[0] - want[0]).abs() < 0.05 && (p[1] - want[1]).abs() < 0.05,
            "depth {z}: {p:?} vs {want:?}"
        );
    }
    // Frame 0 is the identity.
    let (p, d) = k.reproject(612.0, 388.0, 100.0, &path.relative_transforms()[0]);
    assert!((p[0] - 612.0).abs() < 1e-9 && (p[1] - 388.0).abs() < 1e-9 && (d - 100.0).abs() < 1e-9);
}

#[test]
fn ground_plane_loses_most_trajectories_to_the_neighbour_rule() {
    // The spec measured with its port of the official code: a plane with depth 1000 − y is 98 % invalid in
    // frame 1 of horizontal +0.5°; that is what the official camera files contain.
    let (w, h) = (1024, 576);
    let inv: Vec<f32> = (0..w * h).map(|i| 10000.0 / (1000.0 - (i / w) as f32)).collect();
    let mut path = CameraPath::new(CameraMode::Horizontal, 0.5);
    path.frames = 2;
    let g = camera::camera_trajectories(&inv, w, h, &path, &Intrinsics::official(w, h)).unwrap();
    assert!(g.valid[..w * h].iter().all(|&v| v), "frame 0 is all visible");
    let invalid = g.valid[w * h..].iter().filter(|&&v| !v).count() as f64 / (w * h) as f64;
    assert!((0.95..0.995).contains(&invalid), "frame 1 invalid fraction {invalid}");
    // Frame 0 holds the identity grid.
    assert_eq!((g.coords[2 * (5 * w + 7)], g.coords[2 * (5 * w + 7) + 1]), (7.0, 5.0));
}

#[test]
fn zoom_and_vertical_paths_move_points_the_expected_way() {
    let k = Intrinsics::official(1024, 576);
    // Zoom in: the camera moves toward the scene, points spread away from the centre.
    let zin = CameraPath::new(CameraMode::ZoomIn, 2.0).relative_transforms();
    let (p, _) = k.reproject(800.0, 100.0, 300.0, &zin[24]);
    assert!(p[0] > 800.0 && p[1] < 100.0, "{p:?}");
    // Zoom out: they gather toward the centre.
    let zout = CameraPath::new(CameraMode::ZoomOut, 1.0).relative_transforms();
    let (p, _) = k.reproject(800.0, 100.0, 300.0, &zout[24]);
    assert!(p[0] < 800.0 && p[1] > 100.0, "{p:?}");
    // Vertical orbit moves along y only for points on the centre column.
    let v = CameraPath::new(CameraMode::Vertical, 0.5).relative_transforms();
    let (p, _) = k.reproject(512.0, 100.0, 100.0, &v[10]);
    assert!((p[0] - 512.0).abs() < 1e-6 && (p[1] - 100.0).abs() > 1.0, "{p:?}");
}

#[test]
fn bad_depth_is_refused() {
    let path = CameraPath::new(CameraMode::Horizontal, 0.5);
    let k = Intrinsics::official(8, 4);
    let e = camera::camera_trajectories(&[1.0; 31], 8, 4, &path, &k).unwrap_err().to_string();
    assert!(e.contains("31") && e.contains("32"), "{e}");
    let mut d = vec![1.0f32; 32];
    d[9] = f32::NAN;
    let e = camera::camera_trajectories(&d, 8, 4, &path, &k).unwrap_err().to_string();
    assert!(e.contains("x 1, y 1"), "{e}");
    // Zeros are clamped as the reference does (1e-5 → depth 1e4), not refused.
    assert!(camera::camera_trajectories(&[0.0; 32], 8, 4, &path, &k).is_ok());
}

#[test]
fn folder_round_trip_and_frame_check() {
    let dir = std::env::temp_dir().join(format!("trajattn-folder-{}", std::process::id()));
    let (w, h) = (13, 7);
    let inv: Vec<f32> = (0..w * h).map(|i| 1.0 + (i % 5) as f32).collect();
    let mut path = CameraPath::new(CameraMode::Horizontal, 1.5);
    path.frames = 4;
    let g = camera::camera_trajectories(&inv, w, h, &path, &Intrinsics::official(w, h)).unwrap();
    folder::write_grid(&dir, &g).unwrap();
    let t = folder::read(&dir, 4).unwrap();
    assert_eq!((t.frames, t.n), (4, w * h));
    assert_eq!(t.coords, g.coords);
    assert_eq!(t.valid, g.valid);
    let e = folder::read(&dir, 5).unwrap_err().to_string();
    assert!(e.contains("5 frames") || e.contains("frame axis"), "{e}");
    // A truncated file is an error, not a panic.
    let bytes = std::fs::read(dir.join(folder::COORDS)).unwrap();
    std::fs::write(dir.join(folder::COORDS), &bytes[..bytes.len() / 2]).unwrap();
    assert!(folder::read(&dir, 4).unwrap_err().to_string().contains("truncated"));
    assert!(npy::parse(std::path::Path::new("x"), b"not numpy at all").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trajectories_land_where_the_renderer_projects_the_scene() {
    use trajattn::trajectory::synthetic;
    // The official K scaled to 256×144; the scene rendered with exact depth from camera 0.
    let (w, h) = (256, 144);
    let k = Intrinsics { focal: 65.0, cx: 128.0, cy: 72.0 };
    let scene = synthetic::demo_scene();
    for (mode, deg) in
        [(CameraMode::Horizontal, 0.8), (CameraMode::Vertical, -0.6), (CameraMode::ZoomOut, 1.5)]
    {
        let mut path = CameraPath::new(mode, deg);
        path.frames = 6;
        let centers = path.centers();
        let r = synthetic::render(&scene, centers[0], &k, w, h);
        let g = camera::camera_trajectories(&synthetic::inverse_depth(&r.depth), w, h, &path, &k).unwrap();
        let mut worst = 0.0f64;
        for (t, c) in centers.iter().enumerate() {
            for (i, p) in r.points.iter().enumerate() {
                if !p[0].is_finite() {
                    continue;
                }
                let (want, d) = synthetic::project(*p, *c, &k);
                assert!(d > 0.0);
                let o = 2 * (t * w * h + i);
                worst = worst.max((g.coords[o] - want[0]).abs().max((g.coords[o + 1] - want[1]).abs()));
            }
        }
        // Depth passes through f32 (10000/z and back): ≤ 1e-6 relative, i.e. well under 0.01 px here.
        assert!(worst < 1e-2, "{mode:?}: worst deviation {worst} px");
    }
}

#[test]
fn pose_files_reproduce_the_official_path_and_refuse_bad_poses() {
    use trajattn::trajectory::poses;
    let dir = std::env::temp_dir().join(format!("trajattn-poses-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut path = CameraPath::new(CameraMode::Horizontal, 0.7);
    path.frames = 5;
    // The official orbit written as position + look-at poses, with the first one as a matrix.
    let mut frames: Vec<String> = path.centers()[1..]
        .iter()
        .map(|c| format!("{{\"position\": [{}, {}, {}], \"look_at\": [0, 0, 0]}}", c[0], c[1], c[2]))
        .collect();
    frames.insert(0, "{\"world_to_camera\": [[-1,0,0,0],[0,1,0,0],[0,0,-1,200],[0,0,0,1]]}".into());
    let file = dir.join("poses.json");
    std::fs::write(&file, format!("{{\"frames\": [{}]}}", frames.join(","))).unwrap();
    let views = poses::read(&file).unwrap();
    let ts = camera::relative_to_first(&views);
    let (w, h) = (31, 17);
    let inv: Vec<f32> = (0..w * h).map(|i| 2.0 + (i % 7) as f32 * 0.5).collect();
    let k = Intrinsics::official(w, h);
    let a = camera::trajectories_for_transforms(&inv, w, h, &ts, &k).unwrap();
    let b = camera::camera_trajectories(&inv, w, h, &path, &k).unwrap();
    let worst = a.coords.iter().zip(&b.coords).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-9, "pose file vs built-in path: {worst}");
    // A scaled matrix is not a rigid pose.
    std::fs::write(&file, r#"{"frames": [{"world_to_camera": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}"#)
        .unwrap();
    assert!(poses::read(&file).unwrap_err().to_string().contains("rigid"));
    std::fs::write(&file, r#"{"frames": [{"position": [0,0,1], "look_at": [0,0,1]}]}"#).unwrap();
    assert!(poses::read(&file).unwrap_err().to_string().contains("coincide"));
    std::fs::write(&file, r#"{"frames": [{"position": [0,0,1]}]}"#).unwrap();
    assert!(poses::read(&file).unwrap_err().to_string().contains("frame 0"));
    std::fs::write(&file, "not json").unwrap();
    assert!(poses::read(&file).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn warping_without_motion_keeps_the_image_and_dilation_is_a_5x5_box() {
    use trajattn::trajectory::warp;
    let (w, h) = (23, 13);
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 11) as u8, (y * 19) as u8, ((x + y) * 7) as u8]);
    }
    let inv: Vec<f32> = (0..w * h).map(|i| 1.0 + (i % 9) as f32).collect();
    let k = Intrinsics::official(w, h);
    let id = camera::relative_to_first(&[camera::look_at([0.0, 0.0, 200.0]); 2]);
    let out = warp::warp_frames(&img, &inv, &id, &k);
    assert_eq!(out.len(), 1);
    let wf = &out[0];
    for (x, y, p) in wf.image.enumerate_pixels() {
        let hole = wf.mask.get_pixel(x, y).0 == [255; 3];
        assert!(hole || p == img.get_pixel(x, y), "({x}, {y}) moved without motion");
        if hole {
            assert_eq!(p.0, [0; 3]);
        }
    }
    assert!(wf.flow.iter().all(|v| v.abs() < 1e-9), "no motion, no flow");
    let kept = wf.mask.pixels().filter(|p| p.0 == [0; 3]).count();
    assert!(kept > w * h / 2, "only {kept} pixels kept: the check above would be vacuous");
    let mut m = vec![false; 9 * 7];
    m[3 * 9 + 4] = true;
    let d = warp::dilate5(&m, 9, 7);
    for y in 0..7 {
        for x in 0..9 {
            assert_eq!(d[y * 9 + x], (2..=6).contains(&x) && (1..=5).contains(&y), "({x}, {y})");
        }
    }
}

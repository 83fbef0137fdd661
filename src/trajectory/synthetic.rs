//! A synthetic scene with exact depth: textured planes and spheres ray-cast through the same pinhole camera as
//! the trajectory code. Used by tests (trajectories must land where the renderer projects the same 3-D points)
//! and by the demo, so both need no weights and no depth network.

use super::camera::{invert_rigid, look_at, Intrinsics};
use image::{Rgb, RgbImage};

/// A surface of the scene.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Points with `n·p = d` (n unit length).
    Plane { n: [f64; 3], d: f64 },
    /// A ball.
    Sphere { c: [f64; 3], r: f64 },
}

/// A surface with a procedural texture (checker of two colours with `scale`-unit cells).
#[derive(Clone, Copy, Debug)]
pub struct Object {
    /// Geometry.
    pub shape: Shape,
    /// First colour.
    pub a: [u8; 3],
    /// Second colour.
    pub b: [u8; 3],
    /// Checker cell size in world units.
    pub scale: f64,
}

/// The demo scene in world units, seen from the first camera of the official paths (at (0, 0, 200), looking at
/// the origin): a back wall, a floor and three balls at different depths.
pub fn demo_scene() -> Vec<Object> {
    vec![
        Object {
            shape: Shape::Plane { n: [0.0, 0.0, 1.0], d: -500.0 },
            a: [70, 90, 140],
            b: [200, 210, 230],
            scale: 70.0,
        },
        Object {
            shape: Shape::Plane { n: [0.0, -1.0, 0.0], d: -70.0 },
            a: [90, 120, 60],
            b: [170, 190, 120],
            scale: 40.0,
        },
        Object {
            shape: Shape::Sphere { c: [-60.0, 30.0, -20.0], r: 30.0 },
            a: [220, 60, 50],
            b: [250, 200, 60],
            scale: 9.0,
        },
        Object {
            shape: Shape::Sphere { c: [55.0, 20.0, -140.0], r: 45.0 },
            a: [40, 160, 200],
            b: [240, 240, 240],
            scale: 14.0,
        },
        Object {
            shape: Shape::Sphere { c: [-10.0, -60.0, -330.0], r: 80.0 },
            a: [150, 80, 190],
            b: [250, 170, 90],
            scale: 25.0,
        },
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn hit(shape: &Shape, o: [f64; 3], d: [f64; 3]) -> Option<f64> {
    match *shape {
        Shape::Plane { n, d: dd } => {
            let den = dot(n, d);
            if den.abs() < 1e-12 {
                return None;
            }
            let t = (dd - dot(n, o)) / den;
            (t > 1e-9).then_some(t)
        }
        Shape::Sphere { c, r } => {
            let oc = [o[0] - c[0], o[1] - c[1], o[2] - c[2]];
            // |o + t·d − c|² = r² with a direction of any length.
            let a = dot(d, d);
            let b = dot(oc, d);
            let cc = dot(oc, oc) - r * r;
            let disc = b * b - a * cc;
            if disc < 0.0 {
                return None;
            }
            let s = disc.sqrt();
            [(-b - s) / a, (-b + s) / a].into_iter().find(|&t| t > 1e-9)
        }
    }
}

/// A rendering: colours, camera depth (along the optical axis) and the world point of every pixel.
pub struct Render {
    /// Colour image.
    pub image: RgbImage,
    /// `(H, W)` depth along the optical axis (the official code's z).
    pub depth: Vec<f64>,
    /// `(H, W)` world position of the surface seen at each pixel centre.
    pub points: Vec<[f64; 3]>,
}

/// Ray-casts `scene` from a camera at `center` (looking at the origin) with intrinsics `k`, `w × h` pixels.
pub fn render(scene: &[Object], center: [f64; 3], k: &Intrinsics, w: usize, h: usize) -> Render {
    let v = look_at(center);
    let cam_to_world = invert_rigid(&v);
    let mut image = RgbImage::new(w as u32, h as u32);
    let mut depth = vec![1e4; w * h];
    let mut points = vec![[f64::INFINITY; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            // Camera-space direction with unit depth, then to world.
            let dc = [(x as f64 - k.cx) / k.focal, (y as f64 - k.cy) / k.focal, 1.0];
            let dw = [
                cam_to_world[0][0] * dc[0] + cam_to_world[0][1] * dc[1] + cam_to_world[0][2] * dc[2],
                cam_to_world[1][0] * dc[0] + cam_to_world[1][1] * dc[1] + cam_to_world[1][2] * dc[2],
                cam_to_world[2][0] * dc[0] + cam_to_world[2][1] * dc[1] + cam_to_world[2][2] * dc[2],
            ];
            // With a unit-depth direction the ray parameter t is the camera depth itself.
            let best = scene
                .iter()
                .filter_map(|o| hit(&o.shape, center, dw).map(|t| (t, o)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((t, o)) = best {
                let p = [center[0] + t * dw[0], center[1] + t * dw[1], center[2] + t * dw[2]];
                let cell = |v: f64| (v / o.scale).floor() as i64;
                let c = if (cell(p[0]) + cell(p[1]) + cell(p[2])).rem_euclid(2) == 0 { o.a } else { o.b };
                // Simple shading by depth so the 3-D structure reads in the preview.
                let shade = (1.15 - t / 1200.0).clamp(0.5, 1.0);
                let px = Rgb([
                    (c[0] as f64 * shade) as u8,
                    (c[1] as f64 * shade) as u8,
                    (c[2] as f64 * shade) as u8,
                ]);
                image.put_pixel(x as u32, y as u32, px);
                depth[y * w + x] = t;
                points[y * w + x] = p;
            }
        }
    }
    Render { image, depth, points }
}

/// Projects a world point into the camera at `center`: pixel position and depth.
pub fn project(p: [f64; 3], center: [f64; 3], k: &Intrinsics) -> ([f64; 2], f64) {
    let v = look_at(center);
    let q: Vec<f64> = (0..3).map(|i| v[i][0] * p[0] + v[i][1] * p[1] + v[i][2] * p[2] + v[i][3]).collect();
    ([k.focal * q[0] / q[2] + k.cx, k.focal * q[1] / q[2] + k.cy], q[2])
}

/// The relative inverse depth the official pipeline expects (`10000 / z`, so its conversion gives back z).
pub fn inverse_depth(depth: &[f64]) -> Vec<f32> {
    depth.iter().map(|&z| (10000.0 / z) as f32).collect()
}

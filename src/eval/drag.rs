//! Drag adherence (docs/reference/evaluation.md §5): each dragged region is tracked through the generated frames by
//! matching its first-frame appearance, and its tracked centre is compared with the centre its drag asked for; the
//! regions held still are tracked the same way and their drift from where they started is reported.
//!
//! The regions come either from a drag file (the disks `trajattn drag` moves, still drags included) or, for any
//! trajectory folder, from its tracks: points that move together by the same displacement in every frame form one
//! dragged region (what the drag builder writes for each drag).

use crate::trajectory::build::{along, DragSpec};
use crate::trajectory::folder::Trajectories;
use image::{Rgb, RgbImage};
use std::path::Path;
use thiserror::Error;

/// Errors of a drag evaluation.
#[derive(Debug, Error)]
pub enum EvalError {
    /// The frames and the regions do not fit together.
    #[error("{0}")]
    Invalid(String),
    /// Writing a preview failed.
    #[error("writing the preview {path}")]
    Write {
        path: String,
        #[source]
        source: image::ImageError,
    },
}

fn invalid(msg: impl Into<String>) -> EvalError {
    EvalError::Invalid(msg.into())
}

/// A region and where it was asked to be in every frame.
#[derive(Clone, Debug)]
pub struct Region {
    /// Radius of the disk matched around the region's centre, in pixels.
    pub radius: f64,
    /// Requested centre per frame (frame 0 first: the region's centre in the first frame).
    pub requested: Vec<[f64; 2]>,
    /// The region should not move (a drag whose path has length zero).
    pub still: bool,
}

/// How well one region followed its request.
#[derive(Clone, Debug)]
pub struct RegionReport {
    /// The region evaluated.
    pub region: Region,
    /// Tracked centre per frame.
    pub tracked: Vec<[f64; 2]>,
    /// Mean distance tracked ↔ requested over frames 1.. (pixels).
    pub mean: f64,
    /// Largest distance over frames 1.. (pixels).
    pub max: f64,
    /// Distance in the last frame (pixels).
    pub end: f64,
}

/// The result of [`evaluate`].
#[derive(Clone, Debug)]
pub struct DragReport {
    /// One entry per region, dragged ones first.
    pub regions: Vec<RegionReport>,
}

impl DragReport {
    fn stat(
        &self,
        still: bool,
        f: impl Fn(&RegionReport) -> f64,
        combine: fn(f64, f64) -> f64,
    ) -> Option<f64> {
        self.regions.iter().filter(|r| r.region.still == still).map(f).reduce(combine)
    }
    /// Mean path error over the dragged regions (each the mean over its frames).
    pub fn path_mean(&self) -> Option<f64> {
        let n = self.regions.iter().filter(|r| !r.region.still).count() as f64;
        self.stat(false, |r| r.mean, |a, b| a + b).map(|s| s / n)
    }
    /// Largest path error of any dragged region in any frame.
    pub fn path_max(&self) -> Option<f64> {
        self.stat(false, |r| r.max, f64::max)
    }
    /// Largest error at the end of a path.
    pub fn path_end(&self) -> Option<f64> {
        self.stat(false, |r| r.end, f64::max)
    }
    /// Largest drift of a region that should stay still.
    pub fn still_max(&self) -> Option<f64> {
        self.stat(true, |r| r.max, f64::max)
    }
    /// Mean drift of the still regions.
    pub fn still_mean(&self) -> Option<f64> {
        let n = self.regions.iter().filter(|r| r.region.still).count() as f64;
        self.stat(true, |r| r.mean, |a, b| a + b).map(|s| s / n)
    }
}

/// The regions of a drag file: each drag's disk with its requested centre per frame (uniform speed along the
/// path, as [`crate::trajectory::build::drags`] moves it). Drags whose path has length zero are still regions.
pub fn regions_from_spec(spec: &DragSpec) -> Result<Vec<Region>, EvalError> {
    if spec.frames < 2 {
        return Err(invalid(format!("a drag file needs at least 2 frames (got {})", spec.frames)));
    }
    let mut out = Vec::with_capacity(spec.drags.len());
    for (k, d) in spec.drags.iter().enumerate() {
        if d.path.is_empty() || !(d.radius.is_finite() && d.radius > 0.0) {
            return Err(invalid(format!("drag {k}: needs a path and a positive radius")));
        }
        if d.path.iter().flatten().any(|v| !v.is_finite()) {
            return Err(invalid(format!("drag {k}: path points must be finite")));
        }
        let requested: Vec<[f64; 2]> =
            (0..spec.frames).map(|f| along(&d.path, f as f64 / (spec.frames - 1) as f64)).collect();
        let still = requested.iter().all(|p| dist(*p, requested[0]) < 1e-9);
        out.push(Region { radius: d.radius, requested, still });
    }
    out.sort_by_key(|r| r.still);
    Ok(out)
}

/// Dragged regions recovered from tracks: points visible in every frame that move (by more than half a pixel at
/// some frame) and share the same displacement in every frame form a region (at least 3 points). Its centre is
/// their mean first-frame position, its radius the farthest point from it plus half the median point spacing.
/// Tracks do not say which regions were meant to stay still, so none are returned.
pub fn regions_from_tracks(t: &Trajectories) -> Vec<Region> {
    use std::collections::BTreeMap;
    let (f, n) = (t.frames, t.n);
    let pos = |fr: usize, i: usize| [t.coords[2 * (fr * n + i)], t.coords[2 * (fr * n + i) + 1]];
    let mut groups: BTreeMap<Vec<i64>, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        if !(0..f).all(|fr| t.valid[fr * n + i]) {
            continue;
        }
        let p0 = pos(0, i);
        let mut key = Vec::with_capacity(2 * f);
        let mut moved = false;
        for fr in 0..f {
            let p = pos(fr, i);
            let d = [p[0] - p0[0], p[1] - p0[1]];
            if !(d[0].is_finite() && d[1].is_finite()) {
                moved = false;
                break;
            }
            moved |= d[0].hypot(d[1]) > 0.5;
            // Displacements equal to 1/100 px are one drag.
            key.push((d[0] * 100.0).round() as i64);
            key.push((d[1] * 100.0).round() as i64);
        }
        if moved {
            groups.entry(key).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        if members.len() < 3 {
            continue;
        }
        let m = members.len() as f64;
        let c0 = members.iter().fold([0.0, 0.0], |a, &i| [a[0] + pos(0, i)[0] / m, a[1] + pos(0, i)[1] / m]);
        let far = members.iter().map(|&i| dist(pos(0, i), c0)).fold(0.0, f64::max);
        let mut nn: Vec<f64> = members
            .iter()
            .take(64)
            .map(|&i| {
                members
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| dist(pos(0, i), pos(0, j)))
                    .fold(f64::MAX, f64::min)
            })
            .collect();
        nn.sort_by(f64::total_cmp);
        let spacing = nn.get(nn.len() / 2).copied().unwrap_or(1.0);
        let requested = (0..f)
            .map(|fr| [c0[0] + key[2 * fr] as f64 / 100.0, c0[1] + key[2 * fr + 1] as f64 / 100.0])
            .collect();
        out.push(Region { radius: far + 0.5 * spacing, requested, still: false });
    }
    out
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Pixels of the first frame's disk (offsets from its integer centre) with their colours; sub-sampled so that at
/// most about 400 pixels are compared per candidate position.
struct Template {
    offsets: Vec<(i64, i64)>,
    colours: Vec<[f64; 3]>,
    centre: (i64, i64),
}

fn template(frame: &RgbImage, centre: [f64; 2], radius: f64) -> Template {
    let c = (centre[0].round() as i64, centre[1].round() as i64);
    let r = radius.max(1.0);
    let step = ((r * r * std::f64::consts::PI / 400.0).sqrt().ceil() as i64).max(1);
    let ri = r.ceil() as i64;
    let (mut offsets, mut colours) = (Vec::new(), Vec::new());
    for dy in (-ri..=ri).step_by(step as usize) {
        for dx in (-ri..=ri).step_by(step as usize) {
            if ((dx * dx + dy * dy) as f64) > r * r {
                continue;
            }
            let (x, y) = (c.0 + dx, c.1 + dy);
            if x < 0 || y < 0 || x >= frame.width() as i64 || y >= frame.height() as i64 {
                continue;
            }
            let p = frame.get_pixel(x as u32, y as u32).0;
            offsets.push((dx, dy));
            colours.push([p[0] as f64, p[1] as f64, p[2] as f64]);
        }
    }
    Template { offsets, colours, centre: c }
}

/// Mean squared colour difference of the template placed at `(cx, cy)`; `None` when less than half of it lies
/// inside the frame.
fn cost(frame: &RgbImage, t: &Template, cx: i64, cy: i64) -> Option<f64> {
    let (w, h) = (frame.width() as i64, frame.height() as i64);
    let (mut sum, mut n) = (0.0, 0usize);
    for ((dx, dy), c) in t.offsets.iter().zip(&t.colours) {
        let (x, y) = (cx + dx, cy + dy);
        if x < 0 || y < 0 || x >= w || y >= h {
            continue;
        }
        let p = frame.get_pixel(x as u32, y as u32).0;
        sum += (0..3).map(|k| (p[k] as f64 - c[k]).powi(2)).sum::<f64>();
        n += 1;
    }
    (2 * n >= t.offsets.len() && n > 0).then(|| sum / n as f64)
}

/// Sub-pixel offset of a parabola's minimum through three costs at -1, 0, +1.
fn parabola(a: f64, b: f64, c: f64) -> f64 {
    let den = a - 2.0 * b + c;
    if den > 1e-12 {
        (0.5 * (a - c) / den).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

/// Finds the template in a frame: the best integer position in `[x0, x1] × [y0, y1]`, refined to sub-pixel by
/// parabolas through the neighbouring costs. Returns the region's centre (the template's centre moved by the
/// same amount).
fn locate(frame: &RgbImage, t: &Template, centre: [f64; 2], bx: (i64, i64), by: (i64, i64)) -> [f64; 2] {
    let mut best: Option<(f64, i64, i64)> = None;
    for cy in by.0..=by.1 {
        for cx in bx.0..=bx.1 {
            if let Some(c) = cost(frame, t, cx, cy) {
                if best.is_none_or(|b| c < b.0) {
                    best = Some((c, cx, cy));
                }
            }
        }
    }
    let Some((c0, cx, cy)) = best else {
        return [f64::NAN, f64::NAN];
    };
    let at = |x, y| cost(frame, t, x, y).unwrap_or(c0);
    let sx = parabola(at(cx - 1, cy), c0, at(cx + 1, cy));
    let sy = parabola(at(cx, cy - 1), c0, at(cx, cy + 1));
    let off = [centre[0] - t.centre.0 as f64, centre[1] - t.centre.1 as f64];
    [cx as f64 + sx + off[0], cy as f64 + sy + off[1]]
}

/// Tracks every region through `frames` and compares it with its request. The search for a region covers the box
/// around its start, every requested position and its previous tracked position, widened by twice its radius (so a
/// region that did not move is found where it stayed, not near where it was asked to go).
pub fn evaluate(frames: &[RgbImage], regions: &[Region]) -> Result<DragReport, EvalError> {
    let Some(first) = frames.first() else {
        return Err(invalid("no frames to evaluate"));
    };
    let (w, h) = (first.width(), first.height());
    if let Some(f) = frames.iter().position(|f| f.dimensions() != (w, h)) {
        return Err(invalid(format!("frame {f} is {:?}, frame 0 is {w}×{h}", frames[f].dimensions())));
    }
    let mut reports = Vec::with_capacity(regions.len());
    for (k, r) in regions.iter().enumerate() {
        if r.requested.len() != frames.len() {
            return Err(invalid(format!(
                "region {k} has requests for {} frames, the video has {}",
                r.requested.len(),
                frames.len()
            )));
        }
        if !(r.radius.is_finite() && r.radius > 0.0) || r.requested.iter().flatten().any(|v| !v.is_finite()) {
            return Err(invalid(format!("region {k}: radius and positions must be finite, radius > 0")));
        }
        let start = r.requested[0];
        let t = template(first, start, r.radius);
        if t.offsets.is_empty() {
            return Err(invalid(format!(
                "region {k} at ({:.1}, {:.1}) lies outside the frame",
                start[0], start[1]
            )));
        }
        let mut tracked = vec![start];
        for frame in &frames[1..] {
            let prev = *tracked.last().unwrap_or(&start);
            let pts = r.requested.iter().chain([&prev]);
            let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
            for p in pts {
                for a in 0..2 {
                    lo[a] = lo[a].min(p[a]);
                    hi[a] = hi[a].max(p[a]);
                }
            }
            let pad = 2.0 * r.radius;
            let clamp = |v: f64, n: u32| (v.round() as i64).clamp(0, n as i64 - 1);
            let bx = (clamp(lo[0] - pad, w), clamp(hi[0] + pad, w));
            let by = (clamp(lo[1] - pad, h), clamp(hi[1] + pad, h));
            let p = locate(frame, &t, start, bx, by);
            tracked.push(if p[0].is_finite() { p } else { prev });
        }
        let errs: Vec<f64> = tracked.iter().zip(&r.requested).map(|(a, b)| dist(*a, *b)).collect();
        let tail = &errs[1..];
        let mean = if tail.is_empty() { 0.0 } else { tail.iter().sum::<f64>() / tail.len() as f64 };
        reports.push(RegionReport {
            region: r.clone(),
            mean,
            max: tail.iter().cloned().fold(0.0, f64::max),
            end: *errs.last().unwrap_or(&0.0),
            tracked,
        });
    }
    Ok(DragReport { regions: reports })
}

/// Reads a video's frames: a folder holding `frames/frame_NNN.png` (what `generate` writes), a folder of PNG
/// files (sorted by name), or an animated GIF.
pub fn read_frames(path: &Path) -> Result<Vec<RgbImage>, String> {
    if path.is_file() {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dec = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: not a GIF video: {e}", path.display()))?;
        use image::AnimationDecoder;
        let frames = dec.into_frames().collect_frames().map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(frames
            .into_iter()
            .map(|f| image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8())
            .collect());
    }
    let dir = if path.join("frames").is_dir() { path.join("frames") } else { path.to_path_buf() };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("{}: no PNG frames found", dir.display()));
    }
    names
        .iter()
        .map(|p| crate::image_input::open_rgb(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}

const REQUESTED: Rgb<u8> = Rgb([255, 230, 40]);
const TRACKED: Rgb<u8> = Rgb([40, 255, 120]);

/// Side by side per frame, enlarged `scale` times: the generated frame, and the same frame with every region's
/// requested path (yellow, current target as a dot) and tracked positions so far (green).
pub fn preview_frames(frames: &[RgbImage], report: &DragReport, scale: u32) -> Vec<RgbImage> {
    let s = scale.max(1);
    let sc = |p: [f64; 2]| [(p[0] + 0.5) * s as f64 - 0.5, (p[1] + 0.5) * s as f64 - 0.5];
    frames
        .iter()
        .enumerate()
        .map(|(f, img)| {
            let big =
                image::imageops::resize(img, img.width() * s, img.height() * s, image::imageops::Nearest);
            let mut right = big.clone();
            for r in &report.regions {
                for seg in r.region.requested.windows(2) {
                    crate::trajectory::preview::line(&mut right, sc(seg[0]), sc(seg[1]), REQUESTED);
                }
                for seg in r.tracked[..=f.min(r.tracked.len() - 1)].windows(2) {
                    crate::trajectory::preview::line(&mut right, sc(seg[0]), sc(seg[1]), TRACKED);
                }
                crate::trajectory::preview::dot(&mut right, sc(r.region.requested[f]), REQUESTED);
                crate::trajectory::preview::dot(&mut right, sc(r.tracked[f]), TRACKED);
            }
            let gap = 4 * s;
            let mut both = RgbImage::from_pixel(2 * big.width() + gap, big.height(), Rgb([0, 0, 0]));
            image::imageops::replace(&mut both, &big, 0, 0);
            image::imageops::replace(&mut both, &right, (big.width() + gap) as i64, 0);
            both
        })
        .collect()
}

/// Writes [`preview_frames`] as an animated GIF.
pub fn write_preview(
    frames: &[RgbImage],
    report: &DragReport,
    scale: u32,
    gif: &Path,
) -> Result<(), EvalError> {
    let imgs = preview_frames(frames, report, scale);
    crate::video::write_gif(&imgs, gif, 250)
        .map_err(|source| EvalError::Write { path: gif.display().to_string(), source })
}

/// A short text summary (one line per region, then the totals).
pub fn summary(report: &DragReport) -> String {
    let mut s = String::new();
    for (k, r) in report.regions.iter().enumerate() {
        let [x, y] = r.region.requested[0];
        let what = if r.region.still { "still  " } else { "dragged" };
        s += &format!(
            "  region {k} ({what}, from ({x:.1}, {y:.1}), radius {:.1}): mean {:.2} px, max {:.2} px, last frame \
             {:.2} px\n",
            r.region.radius, r.mean, r.max, r.end
        );
    }
    if let (Some(m), Some(x), Some(e)) = (report.path_mean(), report.path_max(), report.path_end()) {
        s += &format!("  path error: mean {m:.2} px, max {x:.2} px, end of path {e:.2} px\n");
    }
    if let (Some(m), Some(x)) = (report.still_mean(), report.still_max()) {
        s += &format!("  still regions: mean drift {m:.2} px, max {x:.2} px\n");
    }
    s
}

//! Memory plan of the UNet graph without weights or a device: a shape-only replay of the allocation order of
//! `models::unet` (the same scopes, chunk budgets and drops), fed to the lifetime planner.
//!
//! `tests/plan.rs` checks this replay against the live-byte peak of the real graph's arena on the fixture
//! models, so the two cannot drift apart unnoticed.

use std::cell::RefCell;
use std::rc::Rc;

use crate::graph::plan::{self, Lifetime};
use crate::models::config::{DownBlockKind, UNetConfig, UpBlockKind};
use crate::models::unet_keys::expected_unet_keys;
use trajattn_kernels::ops::trajectory_attention::Geometry;

/// Element budget of one chunk (same as the graph's).
const CHUNK_ELEMS: usize = 1 << 24;

/// The figures `trajattn plan` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UNetPlan {
    /// Device bytes of the weights (attn2's query and key projections are never uploaded).
    pub param_bytes: u64,
    /// Bytes of the offset placement of all intermediates in arenas (an upper bound of what the graph
    /// allocates for them).
    pub peak_activation_bytes: u64,
    /// Lower bound: the most intermediate bytes alive at one point.
    pub peak_live_bytes: u64,
    /// Inputs, conditioning constants and the output (alive for the whole generation).
    pub persistent_bytes: u64,
    /// `param_bytes + peak_activation_bytes + persistent_bytes`.
    pub peak_total_bytes: u64,
    /// The largest intermediates: (name, shape, bytes).
    pub largest: Vec<(String, Vec<usize>, u64)>,
    /// What is alive at the live peak, largest first: (name, shape, bytes).
    pub alive_at_peak: Vec<(String, Vec<usize>, u64)>,
}

struct SimState {
    step: usize,
    lifetimes: Vec<Lifetime>,
    named: Vec<(String, Vec<usize>, u64)>,
    alive: Vec<bool>,
    /// Tensors a dispatch may bind together (kept in different arenas by the graph): a tensor conflicts with
    /// every live tensor born since the current block began and with the block's inputs.
    conflicts: Vec<(usize, usize)>,
    scope: usize,
    inputs: Vec<usize>,
}

#[derive(Clone)]
struct Sim {
    st: Rc<RefCell<SimState>>,
    elem: u64,
}

struct T {
    id: usize,
    shape: Vec<usize>,
    st: Rc<RefCell<SimState>>,
}

impl Drop for T {
    fn drop(&mut self) {
        let mut st = self.st.borrow_mut();
        st.step += 1;
        let s = st.step;
        st.lifetimes[self.id].last = s;
        st.alive[self.id] = false;
    }
}

impl Sim {
    /// Starts a block (or a single op) reading `inputs` (plus the tensors marked as read everywhere).
    fn begin(&self, inputs: &[&T]) {
        let mut st = self.st.borrow_mut();
        st.scope = st.step + 1;
        st.inputs.truncate(1);
        st.inputs.extend(inputs.iter().map(|t| t.id));
    }

    fn t(&self, name: &str, shape: &[usize]) -> T {
        let mut st = self.st.borrow_mut();
        st.step += 1;
        let bytes = shape.iter().product::<usize>() as u64 * self.elem;
        let id = st.lifetimes.len();
        let s = st.step;
        let together: Vec<usize> = (0..id)
            .filter(|&j| st.alive[j] && (st.lifetimes[j].first >= st.scope || st.inputs.contains(&j)))
            .collect();
        st.conflicts.extend(together.into_iter().map(|j| (id, j)));
        st.alive.push(true);
        st.lifetimes.push(Lifetime { bytes, first: s, last: s });
        st.named.push((name.to_string(), shape.to_vec(), bytes));
        T { id, shape: shape.to_vec(), st: self.st.clone() }
    }
}

struct Walk<'a> {
    sim: Sim,
    cfg: &'a UNetConfig,
    b: usize,
    f: usize,
    trajectories: Option<usize>,
}

impl Walk<'_> {
    // Reassignments mirror the graph's: the new tensor is allocated before the old one is released.
    #[allow(unused_assignments)]
    fn resnet(&self, x: &T, cout: usize) -> T {
        let s = &self.sim;
        let [n, cin, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        s.begin(&[x]);
        let mut t = s.t("resnet.norm1", &[n, cin, h, w]);
        t = s.t("resnet.conv1", &[n, cout, h, w]);
        let tp = s.t("resnet.time_emb_proj", &[n, cout]);
        t = s.t("resnet.add_temb", &[n, cout, h, w]);
        drop(tp);
        t = s.t("resnet.norm2", &[n, cout, h, w]);
        t = s.t("resnet.conv2", &[n, cout, h, w]);
        if cin != cout {
            let _sc = s.t("resnet.conv_shortcut", &[n, cout, h, w]);
        }
        let sp = t;
        let mut u = s.t("temporal.norm1", &[n, cout, h, w]);
        u = s.t("temporal.conv1", &[n, cout, h, w]);
        let tp = s.t("temporal.time_emb_proj", &[n, cout]);
        u = s.t("temporal.add_temb", &[n, cout, h, w]);
        drop(tp);
        u = s.t("temporal.norm2", &[n, cout, h, w]);
        u = s.t("temporal.conv2", &[n, cout, h, w]);
        let y = s.t("resnet.blend", &[n, cout, h, w]);
        drop((sp, u));
        y
    }

    /// `res += ff(LN(res))`, one chunk of rows (as the graph: the chunk's tensors are reused chunk after chunk).
    fn feed_forward(&self, res: &T, rows: usize, c: usize) {
        let chunk = (CHUNK_ELEMS / (8 * c)).clamp(1, rows.max(1));
        let nr = chunk.min(rows);
        let s = &self.sim;
        s.begin(&[res]);
        let n = s.t("ff.norm", &[nr, c]);
        s.begin(&[&n]);
        let g = s.t("ff.proj", &[nr, 8 * c]);
        drop(n);
        s.begin(&[&g, res]);
        let a = s.t("ff.geglu", &[nr, 4 * c]);
        drop(g);
        drop(a);
    }

    /// `res += attention(norm)`, one chunk of sequences.
    fn attention(&self, res: &T, norm: &T, seqs: usize, len: usize, c: usize) {
        let chunk = (CHUNK_ELEMS / (3 * c * len).max(1)).clamp(1, seqs.max(1));
        let ns = chunk.min(seqs);
        self.sim.begin(&[norm]);
        let qkv = self.sim.t("attn.qkv", &[ns * len, 3 * c]);
        self.sim.begin(&[&qkv, res]);
        let a = self.sim.t("attn.out", &[ns * len, c]);
        drop(qkv);
        drop(a);
    }

    // Each op begins a scope naming what it reads, so the replay's conflicts are the graph's: a tensor and the
    // tensors its op binds with it.
    fn transformer(&self, x: &T, heads: usize) -> T {
        let s = &self.sim;
        let [bf, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let hw = h * w;
        let rows = bf * hw;
        s.begin(&[x]);
        let n = s.t("transformer.norm", &[bf, c, h, w]);
        s.begin(&[&n]);
        let t = s.t("transformer.tokens", &[rows, c]);
        drop(n);
        s.begin(&[&t]);
        let mut hs = s.t("transformer.proj_in", &[rows, c]);
        drop(t);
        s.begin(&[&hs]);
        let n = s.t("spatial.norm1", &[rows, c]);
        self.attention(&hs, &n, bf, hw, c);
        drop(n);
        self.feed_forward(&hs, rows, c);
        s.begin(&[&hs]);
        let mix = s.t("transformer.mix", &[rows, c]);
        s.begin(&[&mix]);
        let tm = s.t("temporal.sequences", &[rows, c]);
        drop(mix);
        self.feed_forward(&tm, rows, c);
        s.begin(&[&tm]);
        let n = s.t("temporal.norm1", &[rows, c]);
        self.attention(&tm, &n, self.b * hw, self.f, c);
        if let Some(m) = self.trajectories.map(|nt| (8 * (hw / 4)).min(nt)).filter(|&m| m > 0) {
            // One group of heads at a time (as the graph, on an adapter allowing at least the group budget per
            // binding): the group's Q/K/V blocks and attention rows, reused group after group, then the means of
            // all heads; the group scratch is dead before the output.
            let g = Geometry { b: self.b, h, w, f: self.f, c, heads, m, seq_len: 1 };
            let group = g.heads_per_group(s.elem, u64::MAX);
            s.begin(&[&n]);
            let qkv = s.t("trajectory.qkv_heads", &g.qkv_scratch_shape(group));
            s.begin(&[&qkv]);
            let att = s.t("trajectory.attention_heads", &g.att_scratch_shape(group));
            s.begin(&[&att]);
            let abar = s.t("trajectory.mean", &[rows, c]);
            drop((qkv, att));
            s.begin(&[&abar, &tm]);
            let out = s.t("trajectory.out", &[rows, c]);
            drop(abar);
            drop(out);
        }
        drop(n);
        self.feed_forward(&tm, rows, c);
        s.begin(&[&tm]);
        let back = s.t("temporal.back", &[rows, c]);
        drop(tm);
        hs = {
            s.begin(&[&hs, &back]);
            let nh = s.t("transformer.blend", &[rows, c]);
            drop(hs);
            nh
        };
        drop(back);
        s.begin(&[&hs]);
        let o = s.t("transformer.proj_out", &[rows, c]);
        drop(hs);
        s.begin(&[&o, x]);
        let y = s.t("transformer.out", &[bf, c, h, w]);
        drop(o);
        y
    }
}

/// Device bytes of the UNet's weights in a dtype of `elem` bytes (with the trajectory branch if asked).
pub fn param_bytes(cfg: &UNetConfig, trajectory: bool, elem: u64) -> u64 {
    expected_unet_keys(cfg, trajectory)
        .iter()
        .filter(|(k, _)| !(k.ends_with("attn2.to_q.weight") || k.ends_with("attn2.to_k.weight")))
        .map(|(_, s)| s.iter().product::<usize>() as u64 * elem)
        .sum()
}

/// Plans one UNet call of batch `b`, `f` frames at latent `h × w`, with `trajectories` (their count) or not.
pub fn plan_unet(
    cfg: &UNetConfig,
    b: usize,
    f: usize,
    h: usize,
    w: usize,
    elem: u64,
    trajectories: Option<usize>,
) -> UNetPlan {
    let st = Rc::new(RefCell::new(SimState {
        step: 0,
        lifetimes: Vec::new(),
        named: Vec::new(),
        alive: Vec::new(),
        conflicts: Vec::new(),
        scope: 0,
        // Slot 0: the embedding every res-block reads (set once it exists).
        inputs: vec![usize::MAX],
    }));
    let sim = Sim { st: st.clone(), elem };
    let bf = b * f;
    let walk = Walk { sim: sim.clone(), cfg, b, f, trajectories };
    let n = cfg.n_blocks();
    let ted = cfg.time_embed_dim();
    {
        let t1 = sim.t("time_embedding.linear_1", &[bf, ted]);
        let temb = sim.t("time_embedding", &[bf, ted]);
        drop(t1);
        let a1 = sim.t("add_embedding.linear_1", &[bf, ted]);
        drop(a1);
        let act = sim.t("emb_silu", &[bf, ted]);
        drop(temb);
        st.borrow_mut().inputs[0] = act.id;
        sim.begin(&[]);
        let mut x = Rc::new(sim.t("conv_in", &[bf, cfg.block_out_channels[0], h, w]));
        let mut skips = vec![x.clone()];
        let (mut hh, mut ww) = (h, w);
        for i in 0..n {
            let c = walk.cfg.block_out_channels[i];
            for _ in 0..cfg.layers_per_block[i] {
                x = Rc::new(walk.resnet(&x, c));
                if cfg.down_block_types[i] == DownBlockKind::CrossAttn {
                    x = Rc::new(walk.transformer(&x, cfg.num_attention_heads[i]));
                }
                skips.push(x.clone());
            }
            if i + 1 < n {
                hh = hh.div_ceil(2);
                ww = ww.div_ceil(2);
                sim.begin(&[&*x]);
                x = Rc::new(sim.t("downsample", &[bf, c, hh, ww]));
                skips.push(x.clone());
            }
        }
        let cm = cfg.block_out_channels[n - 1];
        let mut y = walk.resnet(&x, cm);
        drop(x);
        y = walk.transformer(&y, cfg.num_attention_heads[n - 1]);
        y = walk.resnet(&y, cm);
        for i in 0..n {
            let r = n - 1 - i;
            let c = cfg.block_out_channels[r];
            for _ in 0..cfg.layers_per_block[r] + 1 {
                let skip = skips.pop().expect("skip list matches the down path");
                let mut cs = y.shape.clone();
                cs[1] += skip.shape[1];
                sim.begin(&[&y, &*skip]);
                let cat = sim.t("up.concat", &cs);
                drop(skip);
                drop(y);
                y = walk.resnet(&cat, c);
                drop(cat);
                if cfg.up_block_types[i] == UpBlockKind::CrossAttn {
                    y = walk.transformer(&y, cfg.num_attention_heads[r]);
                }
            }
            if i + 1 < n {
                let mut us = y.shape.clone();
                us[2] *= 2;
                us[3] *= 2;
                sim.begin(&[&y]);
                let up = sim.t("upsample.nearest", &us);
                y = sim.t("upsample.conv", &us);
                drop(up);
            }
        }
        sim.begin(&[&y]);
        let g = sim.t("conv_norm_out", &y.shape.clone());
        drop(y);
        drop(g);
        drop(act);
    }
    let state = st.borrow();
    let p = trajattn_kernels::arena::place(&state.lifetimes, &state.conflicts, 256, u64::MAX)
        .expect("no arena limit");
    let mut events: Vec<(usize, i64)> = Vec::new();
    for t in &state.lifetimes {
        events.push((t.first, t.bytes as i64));
        events.push((t.last + 1, -(t.bytes as i64)));
    }
    events.sort();
    let (mut live, mut best, mut at) = (0i64, 0i64, 0usize);
    for (step, d) in events {
        live += d;
        if live > best {
            best = live;
            at = step;
        }
    }
    let mut alive_at_peak: Vec<(String, Vec<usize>, u64)> = state
        .lifetimes
        .iter()
        .zip(&state.named)
        .filter(|(t, _)| t.first <= at && at <= t.last)
        .map(|(_, n)| n.clone())
        .collect();
    alive_at_peak.sort_by_key(|b| std::cmp::Reverse(b.2));
    let mut largest = state.named.clone();
    largest.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    largest.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    largest.truncate(8);
    let c0 = cfg.block_out_channels[0];
    let cross = cfg.cross_attention_dim[0];
    let attn_blocks = cfg.down_block_types.iter().filter(|k| **k == DownBlockKind::CrossAttn).count()
        + cfg.up_block_types.iter().filter(|k| **k == UpBlockKind::CrossAttn).count()
        + 1;
    let cmax = *cfg.block_out_channels.iter().max().unwrap_or(&0);
    let persistent = elem
        * ((bf * cfg.in_channels * h * w)
            + bf * c0
            + bf * 3 * cfg.addition_time_embed_dim
            + b * cross
            + b * f * cfg.out_channels * h * w
            + attn_blocks * 3 * (2 * b * cmax + bf * cmax)) as u64;
    let param = param_bytes(cfg, trajectories.is_some(), elem);
    UNetPlan {
        param_bytes: param,
        peak_activation_bytes: p.total_bytes(),
        peak_live_bytes: plan::peak_live_bytes(&state.lifetimes),
        persistent_bytes: persistent,
        peak_total_bytes: param + p.total_bytes() + persistent,
        largest,
        alive_at_peak,
    }
}

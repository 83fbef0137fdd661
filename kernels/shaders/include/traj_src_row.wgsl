// Needs `p: Params` (traj_params), the `table` binding and `NONE` from the including file.
// Row of global token g = b·(M·F) + t inside the bound source rows, or NONE (invisible, or not bound here).
fn src_row(token: u32) -> u32 {
    let b = token / p.tokens;
    let r = table[token % p.tokens];
    if (r >= p.rows_per_b || b < p.b0) { return NONE; }
    let row = (b - p.b0) * p.rows_per_b + r;
    if (row >= p.rows_bound) { return NONE; }
    return row;
}
